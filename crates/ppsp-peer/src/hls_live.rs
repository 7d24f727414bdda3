//! Publishing the live HLS output of an encoder (`ppsp peer live --hls DIR`).
//!
//! The encoder (for example `ffmpeg -f hls DIR/index.m3u8`) keeps writing segments and
//! rewriting its playlists in DIR. [`HlsPublisher`] reads the playlists every 100 ms; a
//! segment is complete once a media playlist lists it (encoders add it only after closing
//! the file), so it is then read, cut into chunks of the live swarm and listed in the
//! [`HlsIndex`] of the next signed live manifest, with its media sequence number, duration,
//! discontinuity flag and chunk range. Each variant keeps its newest
//! [`INDEX_SEGMENTS`] segments in the index; the manifest lists the chunks from the oldest
//! indexed segment on, so older segments leave the swarm's window (and, once past the
//! retention limit, every peer's store).
//!
//! An encoder that restarts (its sequence numbers go back) is continued with fresh
//! numbers and an `EXT-X-DISCONTINUITY`; a segment that vanished before it could be read
//! restarts that variant's list. Playlists and segment URIs that are absolute or leave DIR
//! are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;
use crate::hls::{
    EncoderFile, EncoderPlaylist, HlsDocument, HlsIndex, HlsInit, HlsSegment, HlsVariant,
    MAX_DOCUMENT_LEN, MAX_INIT_LEN, check_path, duration_us, read_encoder_playlist,
};
use crate::manifest::{LiveChunk, LiveManifest, LiveSigner, hash_chunk};
use crate::store::LIVE_RETENTION;
use crate::swarm::Swarm;

/// How often the encoder's directory is read.
const POLL: Duration = Duration::from_millis(100);
/// Segments per variant kept in the index.
pub const INDEX_SEGMENTS: usize = 10;
/// Directory levels below DIR searched for playlists (ffmpeg's `%v/` layouts use one).
const MAX_DEPTH: usize = 3;
/// Largest segment published.
const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Per variant: how the encoder's numbers map onto the published ones.
#[derive(Debug, Default)]
struct Numbering {
    /// The encoder's number of the newest segment published.
    last_encoder: Option<u64>,
    /// Added to the encoder's numbers (grows when the encoder restarts).
    shift: u64,
    /// The next segment published follows a restart.
    discontinuity: bool,
}

/// The LIVESEED side of live HLS; see the module documentation.
#[derive(Debug)]
pub struct HlsPublisher {
    swarm: Arc<Swarm>,
    signer: LiveSigner,
    manifest: LiveManifest,
    dir: PathBuf,
    index: HlsIndex,
    /// The bytes of each playlist when last read, to skip unchanged ones.
    seen: HashMap<String, Vec<u8>>,
    numbering: HashMap<String, Numbering>,
}

impl HlsPublisher {
    /// A publisher of `dir` into `swarm`, continuing from `manifest` (signed with `signer`).
    pub fn new(swarm: Arc<Swarm>, signer: LiveSigner, manifest: LiveManifest, dir: &Path) -> Self {
        Self {
            swarm,
            signer,
            manifest,
            dir: dir.to_path_buf(),
            index: HlsIndex::default(),
            seen: HashMap::new(),
            numbering: HashMap::new(),
        }
    }

    /// Publishes until every variant has ended (`EXT-X-ENDLIST`).
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be read, [`Error::Manifest`] when signing
    /// fails.
    pub async fn run(mut self) -> Result<(), Error> {
        loop {
            if self.step().await? {
                tracing::info!("every HLS variant has ended");
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One pass over the directory; true once the stream has ended.
    async fn step(&mut self) -> Result<bool, Error> {
        let dir = self.dir.clone();
        let files = tokio::task::spawn_blocking(move || playlists(&dir))
            .await
            .map_err(|e| Error::io("reading the HLS directory", std::io::Error::other(e)))??;
        let mut pending: Vec<(u64, Bytes)> = Vec::new();
        let mut changed = false;
        for (path, bytes) in files {
            if self.seen.get(&path) == Some(&bytes) {
                continue;
            }
            if path.ends_with(".mpd") {
                if bytes.len() <= MAX_DOCUMENT_LEN
                    && let Ok(text) = String::from_utf8(bytes.clone())
                {
                    self.index.dash = Some(HlsDocument {
                        path: path.clone(),
                        text,
                    });
                    changed = true;
                } else {
                    tracing::warn!(path, "MPD unreadable or over 256 KiB; not published");
                }
                self.seen.insert(path, bytes);
                continue;
            }
            match read_encoder_playlist(&bytes) {
                Ok(EncoderFile::Master) => {
                    // A master playlist caught before its first variant line reads as an
                    // empty media playlist: it is no variant.
                    self.index.variants.retain(|v| v.path != path);
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    self.index.master = Some(HlsDocument {
                        path: path.clone(),
                        text,
                    });
                    changed = true;
                }
                Ok(EncoderFile::Media(playlist)) => {
                    changed |= self.take_media(&path, &playlist, &mut pending).await?;
                }
                // Most likely caught half-written: read again next time.
                Err(_) => {
                    tracing::debug!(path, "not (yet) a playlist");
                    continue;
                }
            }
            self.seen.insert(path, bytes);
        }
        if !changed {
            return Ok(false);
        }
        self.trim();
        let ended = self.index.ended();
        self.manifest.ended = ended;
        self.manifest.hls = Some(Arc::new(self.index.clone()));
        self.manifest.sequence += 1;
        let signed = self.signer.sign(&self.manifest)?;
        let store = self.swarm.store();
        store.offer_live_manifest(signed);
        for (index, data) in pending {
            // Verified like any other chunk: its hash is in the manifest just offered.
            store.put(index, data).await?;
        }
        Ok(ended)
    }

    /// Publishes the segments of `playlist` (the variant at `path`) not published yet;
    /// true when the index changed.
    async fn take_media(
        &mut self,
        path: &str,
        playlist: &EncoderPlaylist,
        pending: &mut Vec<(u64, Bytes)>,
    ) -> Result<bool, Error> {
        let position = match self.index.variants.iter().position(|v| v.path == path) {
            Some(i) => i,
            // Nothing to list yet (and perhaps a master playlist caught half-written).
            None if playlist.segments.is_empty() => return Ok(false),
            None => {
                self.index.variants.push(HlsVariant {
                    path: path.to_owned(),
                    version: playlist.version,
                    target_duration: playlist.target_duration,
                    discontinuity_sequence: 0,
                    independent_segments: playlist.independent_segments,
                    ended: false,
                    init: None,
                    segments: Vec::new(),
                });
                self.index.variants.len() - 1
            }
        };
        let numbering = self.numbering.entry(path.to_owned()).or_default();
        let newest = playlist
            .media_sequence
            .checked_add(playlist.segments.len() as u64)
            .and_then(|n| n.checked_sub(1));
        if let (Some(last), Some(newest)) = (numbering.last_encoder, newest)
            && newest < last
        {
            // The encoder started again from a lower number: continue ours.
            tracing::info!(path, "encoder restarted; continuing after a discontinuity");
            numbering.shift = (last + numbering.shift + 1).saturating_sub(playlist.media_sequence);
            numbering.last_encoder = None;
            numbering.discontinuity = true;
        }
        let mut changed = false;
        {
            let variant = &mut self.index.variants[position];
            if variant.target_duration != playlist.target_duration
                || variant.ended != playlist.ended
            {
                variant.target_duration = playlist.target_duration;
                variant.ended = playlist.ended;
                changed = true;
            }
        }
        if let Some(map) = playlist.segments.iter().rev().find_map(|s| s.map.as_ref())
            && self.index.variants[position]
                .init
                .as_ref()
                .is_none_or(|init| &init.uri != map)
        {
            match self.read_init(&self.index.variants[position], map).await {
                Ok(init) => {
                    self.index.variants[position].init = Some(init);
                    changed = true;
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot read the initialization section yet");
                    return Ok(changed);
                }
            }
        }
        for (i, segment) in playlist.segments.iter().enumerate() {
            let (uri, duration, discontinuity) =
                (&segment.uri, &segment.duration, &segment.discontinuity);
            let encoder_number = playlist.media_sequence + i as u64;
            let numbering = self.numbering.entry(path.to_owned()).or_default();
            if numbering
                .last_encoder
                .is_some_and(|last| encoder_number <= last)
            {
                continue;
            }
            let sequence = encoder_number + numbering.shift;
            let flagged = *discontinuity || numbering.discontinuity;
            numbering.last_encoder = Some(encoder_number);
            let variant = &self.index.variants[position];
            let served = variant.segment_path(&HlsSegment {
                sequence,
                duration_us: duration_us(*duration),
                discontinuity: flagged,
                uri: uri.clone(),
                first_chunk: 0,
                chunks: 0,
                length: 0,
            });
            if let Err(err) = check_path(&served) {
                tracing::warn!(%err, "skipping a segment that cannot be served");
                continue;
            }
            let file = self.dir.join(&served);
            let data = match read_segment(&file).await {
                Ok(data) => data,
                Err(err) => {
                    tracing::warn!(%err, "segment gone before it could be read");
                    // The list must stay consecutive: start it again after the gap.
                    self.index.variants[position].segments.clear();
                    continue;
                }
            };
            if let Some(numbering) = self.numbering.get_mut(path) {
                numbering.discontinuity = false;
            }
            let first_chunk = self.manifest.end();
            let size = self.manifest.chunk_size as usize;
            let mut chunks = 0u32;
            for piece in data.chunks(size) {
                let piece = data.slice_ref(piece);
                self.manifest.chunks.push(LiveChunk {
                    len: piece.len() as u32,
                    hash: hash_chunk(&piece),
                });
                pending.push((first_chunk + u64::from(chunks), piece));
                chunks += 1;
            }
            let variant = &mut self.index.variants[position];
            if variant
                .segments
                .last()
                .is_some_and(|s| s.sequence + 1 != sequence)
            {
                variant.segments.clear();
            }
            variant.segments.push(HlsSegment {
                sequence,
                duration_us: duration_us(*duration),
                discontinuity: flagged,
                uri: uri.clone(),
                first_chunk,
                chunks,
                length: data.len() as u64,
            });
            tracing::debug!(path, sequence, first_chunk, chunks, "segment published");
            changed = true;
        }
        Ok(changed)
    }

    /// Reads the fMP4 initialization section `uri` of `variant`.
    async fn read_init(&self, variant: &HlsVariant, uri: &str) -> Result<HlsInit, Error> {
        use base64::Engine as _;
        let served = variant.resolve_uri(uri);
        check_path(&served)?;
        let data = read_segment(&self.dir.join(&served)).await?;
        if data.len() > MAX_INIT_LEN {
            return Err(Error::InvalidArgument(format!(
                "initialization section {served} is over {MAX_INIT_LEN} bytes"
            )));
        }
        Ok(HlsInit {
            uri: uri.to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(&data),
        })
    }

    /// Keeps each variant's newest segments and the manifest's chunks from the oldest of
    /// them on, within what peers retain.
    fn trim(&mut self) {
        for variant in &mut self.index.variants {
            while variant.segments.len() > INDEX_SEGMENTS {
                let gone = variant.segments.remove(0);
                if gone.discontinuity {
                    variant.discontinuity_sequence += 1;
                }
            }
        }
        let end = self.manifest.end();
        loop {
            let oldest = self
                .index
                .variants
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.segments.first().map(|s| (s.first_chunk, i)))
                .min();
            let Some((first_chunk, variant)) = oldest else {
                break;
            };
            // Leave a margin so that a segment listed is still in every peer's store.
            if end - first_chunk < LIVE_RETENTION - LIVE_RETENTION / 8 {
                break;
            }
            let v = &mut self.index.variants[variant];
            let gone = v.segments.remove(0);
            if gone.discontinuity {
                v.discontinuity_sequence += 1;
            }
        }
        let keep_from = self
            .index
            .variants
            .iter()
            .filter_map(|v| v.segments.first().map(|s| s.first_chunk))
            .min()
            .unwrap_or(end);
        let drop = usize::try_from(keep_from.saturating_sub(self.manifest.first))
            .unwrap_or(usize::MAX)
            .min(self.manifest.chunks.len());
        self.manifest.chunks.drain(..drop);
        self.manifest.first += drop as u64;
    }
}

async fn read_segment(path: &Path) -> Result<Bytes, Error> {
    let context = || format!("reading {}", path.display());
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(context(), e))?;
    if meta.len() == 0 || meta.len() > MAX_SEGMENT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{} is {} bytes",
            path.display(),
            meta.len()
        )));
    }
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| Error::io(context(), e))?;
    Ok(Bytes::from(data))
}

/// Every `.m3u8` and `.mpd` file under `dir` (to [`MAX_DEPTH`] levels), as a `/`-separated path
/// relative to `dir` with its bytes.
fn playlists(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new(), 0usize)];
    while let Some((path, prefix, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth + 1 < MAX_DEPTH {
                pending.push((entry.path(), format!("{relative}/"), depth + 1));
            } else if kind.is_file()
                && (name.ends_with(".m3u8") || name.ends_with(".mpd"))
                && check_path(&relative).is_ok()
            {
                // A file removed between listing and reading is simply not there this time.
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    out.push((relative, bytes));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::SwarmOptions;

    struct Fixture {
        dir: PathBuf,
        publisher: HlsPublisher,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "ppsp-hls-live-{}-{}",
            std::process::id(),
            crate::random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let signer = LiveSigner::generate().expect("key");
        let manifest = LiveManifest {
            public_key: signer.public_key(),
            name: "index.m3u8".into(),
            chunk_size: 1024,
            sequence: 0,
            first: 0,
            chunks: Vec::new(),
            ended: false,
            hls: None,
        };
        let store = crate::store::ChunkStore::live();
        store.offer_live_manifest(signer.sign(&manifest).expect("sign"));
        let swarm = Swarm::live(
            "source",
            &manifest.swarm_id(),
            &manifest.name,
            store,
            SwarmOptions::default(),
        );
        let publisher = HlsPublisher::new(swarm, signer, manifest, &dir);
        Fixture { dir, publisher }
    }

    /// Writes segments `first..=last` (2.5 KiB each, so three chunks) and a playlist
    /// listing them.
    fn encoder_writes(dir: &Path, playlist: &str, first: u64, last: u64, tail: &str) {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        for n in first..=last {
            let name = format!("seg{n}.ts");
            std::fs::write(dir.join(&name), vec![n as u8; 2560]).expect("segment");
            text.push_str(&format!("#EXTINF:1.000000,\n{name}\n"));
        }
        text.push_str(tail);
        std::fs::write(dir.join(playlist), text).expect("playlist");
    }

    fn published(f: &Fixture) -> (HlsIndex, LiveManifest) {
        let signed = f.publisher.swarm.store().live_manifest().expect("manifest");
        let manifest = signed.manifest().clone();
        (
            manifest.hls.as_deref().cloned().expect("an index"),
            manifest,
        )
    }

    #[tokio::test]
    async fn segments_enter_the_index_as_verified_chunks_and_old_ones_leave() {
        let mut f = fixture();
        encoder_writes(&f.dir, "index.m3u8", 0, 2, "");
        assert!(!f.publisher.step().await.expect("step"));
        let (index, manifest) = published(&f);
        let variant = &index.variants[0];
        assert_eq!(variant.path, "index.m3u8");
        let listed: Vec<(u64, u64, u32)> = variant
            .segments
            .iter()
            .map(|s| (s.sequence, s.first_chunk, s.chunks))
            .collect();
        assert_eq!(listed, vec![(0, 0, 3), (1, 3, 3), (2, 6, 3)]);
        assert_eq!(manifest.end(), 9);
        let store = f.publisher.swarm.store();
        assert!((0..9).all(|c| store.has(c)), "every chunk stored");
        let version = store.version();
        // Nothing new: no new manifest.
        assert!(!f.publisher.step().await.expect("step"));
        assert_eq!(f.publisher.swarm.store().version(), version);

        // The encoder slides its list on; the index keeps the newest INDEX_SEGMENTS.
        encoder_writes(&f.dir, "index.m3u8", 8, 13, "");
        f.publisher.step().await.expect("step");
        let (index, manifest) = published(&f);
        let sequences: Vec<u64> = index.variants[0]
            .segments
            .iter()
            .map(|s| s.sequence)
            .collect();
        assert_eq!(
            sequences,
            (8..=13).collect::<Vec<_>>(),
            "restarted after the gap"
        );
        encoder_writes(&f.dir, "index.m3u8", 14, 20, "");
        f.publisher.step().await.expect("step");
        let (index, manifest2) = published(&f);
        let segments = &index.variants[0].segments;
        assert_eq!(segments.len(), INDEX_SEGMENTS);
        assert_eq!(segments[0].sequence, 11);
        assert_eq!(
            manifest2.first, segments[0].first_chunk,
            "older chunks left"
        );
        assert!(manifest2.first > manifest.first);
        assert!(index.validate(manifest2.first, manifest2.end()).is_ok());
    }

    #[tokio::test]
    async fn restart_continues_numbering_and_endlist_ends_the_stream() {
        let mut f = fixture();
        encoder_writes(&f.dir, "index.m3u8", 5, 7, "");
        f.publisher.step().await.expect("step");
        // The encoder starts again from 0.
        encoder_writes(&f.dir, "index.m3u8", 0, 1, "");
        f.publisher.step().await.expect("step");
        let (index, _) = published(&f);
        let listed: Vec<(u64, bool)> = index.variants[0]
            .segments
            .iter()
            .map(|s| (s.sequence, s.discontinuity))
            .collect();
        assert_eq!(
            listed,
            vec![(5, false), (6, false), (7, false), (8, true), (9, false)]
        );
        let playlist = String::from_utf8(crate::hls::media_playlist(
            &index.variants[0],
            &index.variants[0].segments,
        ))
        .expect("utf-8");
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY\n#EXTINF:1,\nseg0.ts"),
            "{playlist}"
        );

        encoder_writes(&f.dir, "index.m3u8", 0, 2, "#EXT-X-ENDLIST\n");
        assert!(f.publisher.step().await.expect("step"), "ended");
        let (index, manifest) = published(&f);
        assert!(index.variants[0].ended && manifest.ended);
    }

    #[tokio::test]
    async fn master_and_unsafe_uris() {
        let mut f = fixture();
        std::fs::create_dir_all(f.dir.join("v0")).expect("subdir");
        std::fs::write(f.dir.join("master.m3u8"), "#EXTM3U\n#EXT-X-VERSION:3\n").expect("w");
        encoder_writes(&f.dir.join("v0"), "index.m3u8", 0, 0, "");
        let outside = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n../escape.ts\n\
                       #EXTINF:1,\nhttp://elsewhere/x.ts\n";
        std::fs::write(f.dir.join("bad.m3u8"), outside).expect("w");
        f.publisher.step().await.expect("step");
        let (index, _) = published(&f);
        // The half-written master is not a variant; segments that leave DIR are skipped.
        let paths: Vec<&str> = index.variants.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, vec!["bad.m3u8", "v0/index.m3u8"]);
        assert!(index.variants[0].segments.is_empty());
        assert!(matches!(
            index.resolve("v0/seg0.ts"),
            Some(crate::hls::HlsResource::Segment(..))
        ));
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nv0/index.m3u8\n";
        std::fs::write(f.dir.join("master.m3u8"), master).expect("w");
        encoder_writes(&f.dir.join("v0"), "index.m3u8", 0, 1, "");
        f.publisher.step().await.expect("step");
        let (index, _) = published(&f);
        assert_eq!(index.entry_path(), Some("master.m3u8"));
        assert_eq!(index.master.as_ref().map(|m| m.text.as_str()), Some(master));
    }
}
