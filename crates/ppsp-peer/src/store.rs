//! Verified chunk storage.
//!
//! A [`ChunkStore`] holds the chunks of one swarm. Nothing enters it or leaves it without
//! being checked against the hash its manifest lists: [`ChunkStore::put`] rejects a chunk
//! that does not match, and [`ChunkStore::get`] re-checks what it reads back from disk, so a
//! file changed under a seed is never served.
//!
//! Video-on-demand content lives in a file (the published file for a seed, the output file
//! for a leech). Live content lives in memory, in a window of the newest chunks.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ppsp_proto::ChunkMap;
use tokio::sync::watch;

use crate::error::Error;
use crate::manifest::{LiveChunk, Manifest, SignedLiveManifest, verify_chunk};

/// How many live chunks a peer keeps (and can serve) behind the live edge.
pub const LIVE_RETENTION: u64 = 256;

/// What [`ChunkStore::put`] did with a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The chunk verified and is now held.
    Stored,
    /// The chunk verified but was already held.
    Duplicate,
}

enum Inner {
    Vod {
        manifest: Arc<Manifest>,
        /// One per file of the manifest.
        files: Vec<Arc<File>>,
        have: ChunkMap,
        /// The files' paths, for messages and for checking that they are still there.
        paths: Vec<PathBuf>,
        /// Chunks found damaged or unreadable when read back.
        damaged: u64,
    },
    Live {
        latest: Option<SignedLiveManifest>,
        known: BTreeMap<u64, LiveChunk>,
        data: BTreeMap<u64, Bytes>,
        ended_at: Option<u64>,
    },
}

/// The chunks of one swarm, each verified.
pub struct ChunkStore {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    remove_on_drop: Option<PathBuf>,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("held", &self.held())
            .finish()
    }
}

impl Drop for ChunkStore {
    fn drop(&mut self) {
        if let Some(path) = &self.remove_on_drop {
            // Best effort: a scratch file left behind is harmless.
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Where each file of `manifest` lives under `root`: `root` itself for a single file,
/// `root/PATH` for each file of a directory (paths a manifest accepts cannot leave `root`).
pub fn content_paths(root: &Path, manifest: &Manifest) -> Vec<PathBuf> {
    if !manifest.is_directory() {
        return vec![root.to_path_buf()];
    }
    manifest
        .files()
        .iter()
        .map(|f| {
            f.path()
                .split('/')
                .fold(root.to_path_buf(), |p, c| p.join(c))
        })
        .collect()
}

/// Which chunks the files hold with the right hash; `valid` is how many bytes of each file
/// were there before it was sized (bytes past that are not checked).
fn verified_chunks(
    files: &[Arc<File>],
    manifest: &Manifest,
    valid: &[u64],
) -> std::io::Result<ChunkMap> {
    let mut have = ChunkMap::new(0, manifest.chunk_count());
    let mut buf = vec![0u8; manifest.chunk_size() as usize];
    for (i, span) in manifest.files().iter().enumerate() {
        let (Some(file), Some(valid)) = (files.get(i), valid.get(i)) else {
            continue;
        };
        for index in span.chunks() {
            let (Some(len), Some(hash)) = (manifest.chunk_len(index), manifest.hash(index)) else {
                continue;
            };
            let offset = span.offset_of(index);
            if offset + u64::from(len) > *valid {
                break;
            }
            let chunk = &mut buf[..len as usize];
            read_at(file, chunk, offset)?;
            if verify_chunk(hash, chunk) {
                have.insert(index);
            }
        }
    }
    Ok(have)
}

/// How the files of a store are opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// Read only; each file must already have its length.
    Seed,
    /// Read and write, created with their folders and sized; emptied first when `truncate`.
    Leech { truncate: bool },
}

/// The files of a store, as [`open_files`] found them.
struct Opened {
    files: Vec<Arc<File>>,
    paths: Vec<PathBuf>,
    /// The length each file had before it was sized.
    lengths: Vec<u64>,
}

/// Opens the files of `manifest` under `root`.
fn open_files(root: &Path, manifest: &Manifest, mode: OpenMode) -> Result<Opened, Error> {
    let paths = content_paths(root, manifest);
    let mut files = Vec::with_capacity(paths.len());
    let mut lengths = Vec::with_capacity(paths.len());
    for (path, span) in paths.iter().zip(manifest.files()) {
        let file = match mode {
            OpenMode::Seed => File::open(path),
            OpenMode::Leech { truncate } => {
                if let Some(parent) = path.parent()
                    && manifest.is_directory()
                {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(truncate)
                    .open(path)
            }
        }
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if len != span.length() {
            if mode == OpenMode::Seed {
                return Err(Error::InvalidArgument(format!(
                    "{} is {len} bytes, the manifest says {}",
                    path.display(),
                    span.length()
                )));
            }
            file.set_len(span.length())
                .map_err(|e| Error::io(format!("sizing {}", path.display()), e))?;
        }
        files.push(Arc::new(file));
        lengths.push(len);
    }
    Ok(Opened {
        files,
        paths,
        lengths,
    })
}

/// How much of the content `manifest` describes is already at `path` (a file, or a
/// directory for directory content): `None` when nothing is there, otherwise the number
/// of chunks that verify (a file of the wrong length counts none of its chunks).
///
/// This reads every file: call it from a blocking context.
///
/// # Errors
/// [`Error::Io`] when a file exists but cannot be read.
pub fn verify_existing(path: &Path, manifest: &Manifest) -> Result<Option<u64>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    if manifest.is_directory() != path.is_dir() {
        return Ok(Some(0));
    }
    let mut files = Vec::new();
    let mut valid = Vec::new();
    for (file_path, span) in content_paths(path, manifest).iter().zip(manifest.files()) {
        let Ok(file) = File::open(file_path) else {
            return Ok(Some(0));
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", file_path.display()), e))?
            .len();
        // Only files of the right length count, so a longer file is not taken as done.
        valid.push(if len == span.length() { len } else { 0 });
        files.push(Arc::new(file));
    }
    let have = verified_chunks(&files, manifest, &valid)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(Some(have.count()))
}

impl ChunkStore {
    fn with(inner: Inner, remove_on_drop: Option<PathBuf>) -> Self {
        Self {
            inner: Mutex::new(inner),
            changed: watch::Sender::new(0),
            remove_on_drop,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent (every update
        // is a single insert), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn vod(
        manifest: Arc<Manifest>,
        opened: Opened,
        have: ChunkMap,
        remove_on_drop: Option<PathBuf>,
    ) -> Self {
        Self::with(
            Inner::Vod {
                manifest,
                files: opened.files,
                have,
                paths: opened.paths,
                damaged: 0,
            },
            remove_on_drop,
        )
    }

    /// A seed's store: `path` holds the whole content `manifest` describes (the file, or
    /// the directory of a directory manifest).
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be opened, [`Error::InvalidArgument`] when its
    /// length differs.
    pub fn open_seed(path: &Path, manifest: Arc<Manifest>) -> Result<Self, Error> {
        let opened = open_files(path, &manifest, OpenMode::Seed)?;
        let have = ChunkMap::full(0, manifest.chunk_count());
        Ok(Self::vod(manifest, opened, have, None))
    }

    /// A leech's store writing into `path` (created or emptied, then sized to the
    /// content; a directory for directory content). With `scratch` it is deleted when the
    /// store is dropped.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be created.
    pub fn create_leech(
        path: &Path,
        manifest: Arc<Manifest>,
        scratch: bool,
    ) -> Result<Self, Error> {
        let opened = open_files(path, &manifest, OpenMode::Leech { truncate: true })?;
        let have = ChunkMap::new(0, manifest.chunk_count());
        Ok(Self::vod(
            manifest,
            opened,
            have,
            scratch.then(|| path.to_path_buf()),
        ))
    }

    /// A leech's store continuing in `path`: what the files already hold is read back
    /// chunk by chunk and each chunk whose hash matches the manifest is kept, so an
    /// interrupted download resumes where it stopped (and content that verifies in full is
    /// complete at once). Missing files are created; one of another length is resized
    /// first (what lies inside the new length is still checked).
    ///
    /// This reads every file: call it from a blocking context.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be opened, sized or read.
    pub fn resume_leech(path: &Path, manifest: Arc<Manifest>) -> Result<Self, Error> {
        let opened = open_files(path, &manifest, OpenMode::Leech { truncate: false })?;
        let have = verified_chunks(&opened.files, &manifest, &opened.lengths)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Self::vod(manifest, opened, have, None))
    }

    /// A live store (source or leech), empty until manifests and chunks arrive.
    pub fn live() -> Self {
        Self::with(
            Inner::Live {
                latest: None,
                known: BTreeMap::new(),
                data: BTreeMap::new(),
                ended_at: None,
            },
            None,
        )
    }

    /// Subscribes to changes (new chunks, new live manifests).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The current change counter (see [`ChunkStore::subscribe`]).
    pub fn version(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Waits until the change counter differs from `since`, or `timeout` passes.
    pub async fn wait_change(&self, since: u64, timeout: std::time::Duration) {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v != since)).await;
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The VoD manifest, if this is a VoD store.
    pub fn vod_manifest(&self) -> Option<Arc<Manifest>> {
        match &*self.lock() {
            Inner::Vod { manifest, .. } => Some(Arc::clone(manifest)),
            Inner::Live { .. } => None,
        }
    }

    /// The newest verified live manifest, if any.
    pub fn live_manifest(&self) -> Option<SignedLiveManifest> {
        match &*self.lock() {
            Inner::Live { latest, .. } => latest.clone(),
            Inner::Vod { .. } => None,
        }
    }

    /// Accepts a verified live manifest if it is newer than the one held and agrees with
    /// every chunk hash already known. Returns true when it was taken.
    pub fn offer_live_manifest(&self, signed: SignedLiveManifest) -> bool {
        let taken = {
            let mut inner = self.lock();
            let Inner::Live {
                latest,
                known,
                data,
                ended_at,
            } = &mut *inner
            else {
                return false;
            };
            let m = signed.manifest();
            if latest
                .as_ref()
                .is_some_and(|l| l.manifest().sequence >= m.sequence)
            {
                return false;
            }
            // A signed manifest that rewrites history is refused: chunks already known keep
            // their hash.
            let conflicts = m
                .chunks
                .iter()
                .enumerate()
                .any(|(i, c)| known.get(&(m.first + i as u64)).is_some_and(|k| k != c));
            if conflicts {
                return false;
            }
            for (i, c) in m.chunks.iter().enumerate() {
                known.insert(m.first + i as u64, *c);
            }
            if m.ended {
                *ended_at = Some(m.end());
            }
            let floor = m.end().saturating_sub(LIVE_RETENTION);
            known.retain(|k, _| *k >= floor);
            data.retain(|k, _| *k >= floor);
            *latest = Some(signed);
            true
        };
        if taken {
            self.bump();
        }
        taken
    }

    /// For live: one past the newest chunk known (the live edge), and whether the stream
    /// has ended there.
    pub fn live_edge(&self) -> Option<(u64, bool)> {
        match &*self.lock() {
            Inner::Live {
                latest, ended_at, ..
            } => latest
                .as_ref()
                .map(|l| (l.manifest().end(), ended_at.is_some())),
            Inner::Vod { .. } => None,
        }
    }

    /// Expected length and hash of chunk `index`, when known.
    pub fn expected(&self, index: u64) -> Option<(u32, [u8; 32])> {
        match &*self.lock() {
            Inner::Vod { manifest, .. } => {
                Some((manifest.chunk_len(index)?, *manifest.hash(index)?))
            }
            Inner::Live { known, .. } => known.get(&index).map(|c| (c.len, c.hash)),
        }
    }

    /// True when chunk `index` is held.
    pub fn has(&self, index: u64) -> bool {
        match &*self.lock() {
            Inner::Vod { have, .. } => have.contains(index),
            Inner::Live { data, .. } => data.contains_key(&index),
        }
    }

    /// Number of chunks held.
    pub fn held(&self) -> u64 {
        match &*self.lock() {
            Inner::Vod { have, .. } => have.count(),
            Inner::Live { data, .. } => data.len() as u64,
        }
    }

    /// True when a VoD store holds every chunk.
    pub fn is_complete(&self) -> bool {
        match &*self.lock() {
            Inner::Vod { have, .. } => have.is_full(),
            Inner::Live { .. } => false,
        }
    }

    /// The chunks held, as a map. For live it covers the retained window up to the edge.
    pub fn chunk_map(&self) -> ChunkMap {
        match &*self.lock() {
            Inner::Vod { have, .. } => have.clone(),
            Inner::Live { latest, data, .. } => {
                let end = latest.as_ref().map_or(0, |l| l.manifest().end());
                let first = data.keys().next().copied().unwrap_or(end).min(end);
                let mut map = ChunkMap::new(first, end - first);
                for k in data.keys() {
                    map.insert(*k);
                }
                map
            }
        }
    }

    /// Verifies `data` against the hash listed for chunk `index` and stores it.
    ///
    /// # Errors
    /// [`Error::CorruptChunk`] when it does not match (or no hash is known for it),
    /// [`Error::Io`] when writing fails.
    pub async fn put(&self, index: u64, data: Bytes) -> Result<PutOutcome, Error> {
        let (expected_len, hash) = self.expected(index).ok_or(Error::CorruptChunk { index })?;
        if data.len() as u64 != u64::from(expected_len) || !verify_chunk(&hash, &data) {
            return Err(Error::CorruptChunk { index });
        }
        let target = match &*self.lock() {
            Inner::Vod { have, .. } if have.contains(index) => return Ok(PutOutcome::Duplicate),
            Inner::Vod {
                manifest, files, ..
            } => {
                let file = manifest
                    .file_of(index)
                    .and_then(|i| files.get(i))
                    .ok_or(Error::CorruptChunk { index })?;
                Some((Arc::clone(file), manifest.offset(index)))
            }
            Inner::Live { data: held, .. } if held.contains_key(&index) => {
                return Ok(PutOutcome::Duplicate);
            }
            Inner::Live { .. } => None,
        };
        if let Some((file, offset)) = target {
            let chunk = data.clone();
            tokio::task::spawn_blocking(move || write_at(&file, &chunk, offset))
                .await
                .map_err(|e| Error::io("writing a chunk", std::io::Error::other(e)))?
                .map_err(|e| Error::io("writing a chunk", e))?;
        }
        let outcome = match &mut *self.lock() {
            Inner::Vod { have, .. } => {
                if have.contains(index) {
                    PutOutcome::Duplicate
                } else {
                    have.insert(index);
                    PutOutcome::Stored
                }
            }
            Inner::Live {
                data: held, known, ..
            } => {
                // The window may have moved on while the chunk was checked.
                if !known.contains_key(&index) || held.contains_key(&index) {
                    PutOutcome::Duplicate
                } else {
                    held.insert(index, data);
                    PutOutcome::Stored
                }
            }
        };
        if outcome == PutOutcome::Stored {
            self.bump();
        }
        Ok(outcome)
    }

    /// Reads chunk `index` if it is held, re-checking its hash.
    ///
    /// # Errors
    /// [`Error::CorruptChunk`] when the stored bytes no longer match, [`Error::Io`] when
    /// reading fails.
    pub async fn get(&self, index: u64) -> Result<Option<Bytes>, Error> {
        let (file, offset, len, hash) = match &*self.lock() {
            Inner::Vod {
                manifest,
                files,
                have,
                ..
            } => {
                if !have.contains(index) {
                    return Ok(None);
                }
                let (Some(len), Some(hash), Some(file)) = (
                    manifest.chunk_len(index),
                    manifest.hash(index),
                    manifest.file_of(index).and_then(|i| files.get(i)),
                ) else {
                    return Ok(None);
                };
                (Arc::clone(file), manifest.offset(index), len, *hash)
            }
            // Live chunks were verified on the way in and never leave memory.
            Inner::Live { data, .. } => return Ok(data.get(&index).cloned()),
        };
        let data = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            read_at(&file, &mut buf, offset).map(|()| buf)
        })
        .await
        .map_err(|e| Error::io("reading a chunk", std::io::Error::other(e)))?;
        match data {
            Ok(data) if verify_chunk(&hash, &data) => Ok(Some(Bytes::from(data))),
            Ok(_) => {
                self.lose(index, "no longer matches its hash");
                Err(Error::CorruptChunk { index })
            }
            Err(err) => {
                self.lose(index, &format!("cannot be read ({err})"));
                Err(Error::io("reading a chunk", err))
            }
        }
    }

    /// Stops holding (and so advertising) VoD chunk `index`, whose stored bytes are
    /// damaged or unreadable. The first loss in a file is logged with the file's name; the
    /// next ones only counted, so a replaced file does not flood the log.
    fn lose(&self, index: u64, why: &str) {
        let removed = match &mut *self.lock() {
            Inner::Vod {
                have,
                paths,
                manifest,
                damaged,
                ..
            } if have.contains(index) => {
                have.remove(index);
                *damaged += 1;
                let path = manifest
                    .file_of(index)
                    .and_then(|i| paths.get(i))
                    .cloned()
                    .unwrap_or_default();
                if *damaged == 1 {
                    tracing::error!(
                        file = %path.display(),
                        index,
                        "chunk {why}: the file changed on disk; no longer offering it (further damaged chunks are counted, not logged)"
                    );
                } else {
                    tracing::debug!(file = %path.display(), index, "chunk {why}");
                }
                true
            }
            _ => false,
        };
        if removed {
            self.bump();
        }
    }

    /// Chunks found damaged or unreadable on disk since the store was opened.
    pub fn damaged(&self) -> u64 {
        match &*self.lock() {
            Inner::Vod { damaged, .. } => *damaged,
            Inner::Live { .. } => 0,
        }
    }

    /// For a VoD store, whether its content is still there: the file exists with the
    /// content's length and at least one chunk is still held.
    ///
    /// # Errors
    /// [`Error::Swarm`] naming the file and what is wrong with it.
    pub fn check_content(&self) -> Result<(), Error> {
        let (paths, lengths, held, chunks) = match &*self.lock() {
            Inner::Vod {
                paths,
                manifest,
                have,
                ..
            } => (
                paths.clone(),
                manifest
                    .files()
                    .iter()
                    .map(|f| f.length())
                    .collect::<Vec<_>>(),
                have.count(),
                manifest.chunk_count(),
            ),
            Inner::Live { .. } => return Ok(()),
        };
        for (path, expected) in paths.iter().zip(lengths) {
            let gone = |what: String| Err(Error::Swarm(format!("{}: {what}", path.display())));
            match std::fs::metadata(path) {
                Err(err) => return gone(format!("the content is gone ({err})")),
                Ok(meta) if meta.len() != expected => {
                    return gone(format!(
                        "the content is gone: {} bytes instead of {expected}",
                        meta.len()
                    ));
                }
                Ok(_) => {}
            }
        }
        if held == 0 && chunks > 0 {
            let root = paths.first().cloned().unwrap_or_default();
            return Err(Error::Swarm(format!(
                "{}: no chunk of the content verifies any more",
                root.display()
            )));
        }
        Ok(())
    }

    /// Waits until chunk `index` is held or `deadline` passes; true when held.
    pub async fn wait_for(&self, index: u64, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.subscribe();
        loop {
            if self.has(index) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.has(index),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LiveManifest, LiveSigner, hash_chunk};

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "ppsp-store-{tag}-{}-{}",
            std::process::id(),
            crate::random_u64()
        ))
    }

    #[tokio::test]
    async fn leech_store_verifies_and_serves() {
        let content: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let manifest = Arc::new(
            Manifest::from_reader("c.bin", 1024, &mut content.as_slice()).expect("manifest"),
        );
        let path = temp_path("leech");
        let store = ChunkStore::create_leech(&path, Arc::clone(&manifest), true).expect("store");
        let chunk = Bytes::copy_from_slice(&content[1024..2048]);
        let mut corrupt = chunk.to_vec();
        corrupt[3] ^= 0x40;
        assert!(matches!(
            store.put(1, Bytes::from(corrupt)).await,
            Err(Error::CorruptChunk { index: 1 })
        ));
        assert!(!store.has(1));
        assert!(store.put(1, chunk.clone()).await.is_ok());
        assert_eq!(
            store.put(1, chunk.clone()).await.ok(),
            Some(PutOutcome::Duplicate)
        );
        assert_eq!(store.get(1).await.expect("reads"), Some(chunk));
        assert_eq!(store.get(2).await.expect("reads"), None);
        // The wrong chunk under a valid index is refused too.
        assert!(
            store
                .put(4, Bytes::copy_from_slice(&content[0..1024]))
                .await
                .is_err()
        );
        assert!(store.put(9, Bytes::from_static(b"x")).await.is_err());
        assert_eq!(store.chunk_map().iter().collect::<Vec<_>>(), vec![1]);
        drop(store);
        assert!(!path.exists(), "scratch file removed");
    }

    #[tokio::test]
    async fn seed_store_detects_changed_file() {
        let content = vec![5u8; 3000];
        let path = temp_path("seed");
        std::fs::write(&path, &content).expect("write");
        let manifest =
            Arc::new(Manifest::from_reader("s", 1024, &mut content.as_slice()).expect("manifest"));
        let store = ChunkStore::open_seed(&path, manifest).expect("open");
        assert!(store.is_complete());
        assert_eq!(
            store.get(2).await.expect("reads").map(|b| b.len()),
            Some(3000 - 2048)
        );
        let mut changed = content.clone();
        changed[10] = 6;
        std::fs::write(&path, &changed).expect("rewrite");
        assert!(store.get(0).await.is_err());
        // No longer held, so no longer advertised; the rest still is.
        assert!(!store.has(0));
        assert_eq!(store.damaged(), 1);
        assert!(!store.is_complete());
        assert!(store.check_content().is_ok());
        std::fs::write(&path, &changed[..100]).expect("truncate");
        assert!(store.check_content().is_err(), "resized: gone");
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn resumed_store_keeps_only_chunks_that_verify() {
        let content: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 251) as u8).collect();
        let manifest = Arc::new(
            Manifest::from_reader("r.bin", 1024, &mut content.as_slice()).expect("manifest"),
        );
        let path = temp_path("resume");
        // Chunks 0 and 2 are right, chunk 1 is damaged, the file stops inside chunk 3.
        let mut partial = content[..3500].to_vec();
        partial[1500] ^= 1;
        std::fs::write(&path, &partial).expect("write");
        assert_eq!(verify_existing(&path, &manifest).expect("reads"), Some(0));
        let store = ChunkStore::resume_leech(&path, Arc::clone(&manifest)).expect("store");
        assert_eq!(store.chunk_map().iter().collect::<Vec<_>>(), vec![0, 2]);
        assert!(
            store
                .put(1, Bytes::copy_from_slice(&content[1024..2048]))
                .await
                .is_ok()
        );
        assert!(
            store
                .put(3, Bytes::copy_from_slice(&content[3072..4096]))
                .await
                .is_ok()
        );
        assert!(
            store
                .put(4, Bytes::copy_from_slice(&content[4096..]))
                .await
                .is_ok()
        );
        assert!(store.is_complete());
        drop(store);
        assert_eq!(std::fs::read(&path).expect("read"), content);
        assert_eq!(verify_existing(&path, &manifest).expect("reads"), Some(5));
        let _ = std::fs::remove_file(&path);
        assert_eq!(verify_existing(&path, &manifest).expect("reads"), None);
    }

    #[tokio::test]
    async fn directory_stores_resume_file_by_file() {
        let root = temp_path("dir-src");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        let first: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        let second: Vec<u8> = (0..1500u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(root.join("a.bin"), &first).expect("write");
        std::fs::write(root.join("sub/b.bin"), &second).expect("write");
        let (manifest, paths) = Manifest::from_dir("pkg", 1024, &root).expect("manifest");
        assert_eq!(paths, content_paths(&root, &manifest));
        let manifest = Arc::new(manifest);
        let seed = ChunkStore::open_seed(&root, Arc::clone(&manifest)).expect("seed");
        // Chunk 3 is the first of sub/b.bin.
        assert_eq!(
            seed.get(3).await.expect("reads").as_deref(),
            Some(&second[..1024])
        );

        // A partial copy: a.bin complete, sub/b.bin missing.
        let copy = temp_path("dir-copy");
        std::fs::create_dir_all(&copy).expect("mkdir");
        std::fs::write(copy.join("a.bin"), &first).expect("write");
        assert_eq!(verify_existing(&copy, &manifest).expect("reads"), Some(0));
        let store = ChunkStore::resume_leech(&copy, Arc::clone(&manifest)).expect("store");
        assert_eq!(store.chunk_map().iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        for index in 3..5 {
            let data = seed.get(index).await.expect("reads").expect("held");
            assert_eq!(store.put(index, data).await.ok(), Some(PutOutcome::Stored));
        }
        assert!(store.is_complete());
        drop(store);
        assert_eq!(std::fs::read(copy.join("sub/b.bin")).expect("read"), second);
        assert_eq!(verify_existing(&copy, &manifest).expect("reads"), Some(5));
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&copy);
    }

    #[tokio::test]
    async fn live_store_follows_manifests() {
        let signer = LiveSigner::generate().expect("key");
        let data = Bytes::from_static(b"live chunk zero");
        let mut m = LiveManifest {
            public_key: signer.public_key(),
            name: "live.ts".into(),
            chunk_size: 4096,
            sequence: 1,
            first: 0,
            chunks: vec![LiveChunk {
                len: data.len() as u32,
                hash: hash_chunk(&data),
            }],
            ended: false,
            hls: None,
        };
        let store = ChunkStore::live();
        assert!(
            store.put(0, data.clone()).await.is_err(),
            "unknown until announced"
        );
        assert!(store.offer_live_manifest(signer.sign(&m).expect("sign")));
        assert!(
            !store.offer_live_manifest(signer.sign(&m).expect("sign")),
            "not newer"
        );
        assert!(store.put(0, data.clone()).await.is_ok());
        assert_eq!(store.live_edge(), Some((1, false)));
        // A newer manifest that changes chunk 0's hash is refused.
        m.sequence = 2;
        m.chunks[0].hash = hash_chunk(b"other");
        assert!(!store.offer_live_manifest(signer.sign(&m).expect("sign")));
        assert_eq!(store.chunk_map().iter().collect::<Vec<_>>(), vec![0]);
    }
}
