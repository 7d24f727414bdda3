//! Content manifests: what a swarm carries and how to check every chunk of it.
//!
//! A video-on-demand swarm is described by a [`Manifest`]: the content's name, chunk size,
//! total length and one SHA-256 per chunk. Its canonical encoding is compact JSON with a fixed
//! field order, and the swarm ID is the lower-case hex SHA-256 of exactly those bytes, so a
//! manifest fetched from any peer is checked against the swarm ID before it is believed.
//!
//! A live swarm is described by a [`LiveManifest`], a rolling window over the newest chunks
//! that only the source can extend: every update is signed with the source's Ed25519 key, and
//! the swarm ID is `live-` followed by the hex public key. On the wire it travels as a
//! [`SignedLiveManifest`] envelope holding the exact signed bytes and the signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// SHA-256 of one chunk.
pub type ChunkHash = [u8; 32];

/// Default chunk size of video-on-demand content (128 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 128 * 1024;
/// Smallest chunk size accepted from a manifest.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest chunk size accepted from a manifest (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Most chunks a manifest may list: the tracker protocol's bitmap limit.
pub const MAX_CHUNKS: u64 = 1 << 20;
/// Largest manifest document accepted over the network.
pub const MAX_MANIFEST_BYTES: usize = 80 * 1024 * 1024;
/// Prefix of live swarm IDs.
pub const LIVE_PREFIX: &str = "live-";
/// Longest content name kept in a manifest.
pub const MAX_NAME_LEN: usize = 255;

const MANIFEST_VERSION: u32 = 1;

/// SHA-256 of `data`.
pub fn hash_chunk(data: &[u8]) -> ChunkHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// True when `data` hashes to `expected`.
pub fn verify_chunk(expected: &ChunkHash, data: &[u8]) -> bool {
    hash_chunk(data) == *expected
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses exactly `N` bytes of hex (either case).
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let raw = text.as_bytes();
    if raw.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; N];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Manifest(reason.into())
}

/// Keeps only the final path component, printable and at most [`MAX_NAME_LEN`] bytes, so a
/// name from the network can never steer a file path or a header.
pub fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in base.chars() {
        if c.is_control() || c == '"' {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Guesses a media type from a file name's extension, for the player endpoint.
pub fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "ts" | "m2ts" | "mts" => "video/mp2t",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        "aac" => "audio/aac",
        "vtt" => "text/vtt; charset=utf-8",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "txt" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        _ => "application/octet-stream",
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    version: u32,
    kind: String,
    name: String,
    chunk_size: u32,
    total_length: u64,
    /// Only for a directory: its files in order. Absent for a single file, so the
    /// encoding (and swarm ID) of single-file content does not depend on this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileWire>,
    chunks: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    path: String,
    length: u64,
}

/// Most files a directory manifest may list.
pub const MAX_FILES: usize = 65_536;
/// Longest relative path of a file in a directory manifest, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Checks a relative path from a directory manifest: `/`-separated components, none empty,
/// `.` or `..`, no backslash, colon or control character, at most [`MAX_PATH_LEN`] bytes and
/// each component at most [`MAX_NAME_LEN`] bytes. Such a path can never leave the directory
/// it is written under, on any platform.
///
/// # Errors
/// [`Error::Manifest`] naming the path and what is wrong with it.
pub fn check_relative_path(path: &str) -> Result<(), Error> {
    let refuse = |why: &str| Err(bad(format!("file path {path:?} {why}")));
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return refuse("is empty or too long");
    }
    if path.starts_with('/') {
        return refuse("is absolute");
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return refuse("has an empty, . or .. component");
        }
        if component.len() > MAX_NAME_LEN {
            return refuse("has a component that is too long");
        }
        if component
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == ':')
        {
            return refuse("has a backslash, colon or control character");
        }
    }
    Ok(())
}

/// One file of the content: where it sits in the swarm's chunks. Every file starts on a
/// chunk boundary, so each chunk belongs to exactly one file and a file's bytes are the
/// chunks [`FileSpan::chunks`] in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpan {
    path: String,
    length: u64,
    first_chunk: u64,
    chunk_count: u64,
    chunk_size: u32,
}

impl FileSpan {
    /// The path relative to the content's root, `/`-separated (the content's name for a
    /// single file).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The chunks holding this file's bytes.
    pub fn chunks(&self) -> std::ops::Range<u64> {
        self.first_chunk..self.first_chunk + self.chunk_count
    }

    /// The chunk holding byte `offset` of this file.
    pub fn chunk_at(&self, offset: u64) -> u64 {
        self.first_chunk + offset / u64::from(self.chunk_size)
    }

    /// Where chunk `index` (one of [`FileSpan::chunks`]) starts in this file.
    pub fn offset_of(&self, index: u64) -> u64 {
        index.saturating_sub(self.first_chunk) * u64::from(self.chunk_size)
    }

    /// Media type guessed from the file name's extension.
    pub fn media_type(&self) -> &'static str {
        guess_content_type(&self.path)
    }
}

/// Description of video-on-demand content: one file, or a directory of files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    name: String,
    chunk_size: u32,
    total_length: u64,
    hashes: Vec<ChunkHash>,
    /// Listed files (empty for a single file).
    files: Vec<FileWire>,
    /// Where each file's chunks are; one span named after the content for a single file.
    spans: Vec<FileSpan>,
}

impl PartialEq for FileWire {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.length == other.length
    }
}

impl Eq for FileWire {}

impl std::fmt::Debug for FileWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path, self.length)
    }
}

impl Manifest {
    /// Builds a manifest from its parts, checking that they agree.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the chunk size is out of bounds or the number of hashes does
    /// not match the length.
    pub fn new(
        name: &str,
        chunk_size: u32,
        total_length: u64,
        hashes: Vec<ChunkHash>,
    ) -> Result<Self, Error> {
        Self::with_files(name, chunk_size, total_length, Vec::new(), hashes)
    }

    /// Builds the manifest of a directory: `files` are (relative path, length) in order,
    /// `hashes` their chunks, each file starting on a new chunk.
    ///
    /// # Errors
    /// [`Error::Manifest`] when a path is unsafe or repeated, there are too many files, or
    /// the hashes do not match the lengths.
    pub fn directory(
        name: &str,
        chunk_size: u32,
        files: Vec<(String, u64)>,
        hashes: Vec<ChunkHash>,
    ) -> Result<Self, Error> {
        if files.is_empty() {
            return Err(bad("a directory manifest lists no file"));
        }
        let total = files
            .iter()
            .try_fold(0u64, |sum, (_, len)| sum.checked_add(*len))
            .ok_or_else(|| bad("total length overflows"))?;
        let files = files
            .into_iter()
            .map(|(path, length)| FileWire { path, length })
            .collect();
        Self::with_files(name, chunk_size, total, files, hashes)
    }

    fn with_files(
        name: &str,
        chunk_size: u32,
        total_length: u64,
        files: Vec<FileWire>,
        hashes: Vec<ChunkHash>,
    ) -> Result<Self, Error> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(bad(format!("chunk size {chunk_size} out of bounds")));
        }
        let name = sanitize_name(name);
        let size = u64::from(chunk_size);
        let mut spans = Vec::new();
        if files.is_empty() {
            spans.push(FileSpan {
                path: name.clone(),
                length: total_length,
                first_chunk: 0,
                chunk_count: total_length.div_ceil(size),
                chunk_size,
            });
        } else {
            if files.len() > MAX_FILES {
                return Err(bad(format!("{} files is more than the limit", files.len())));
            }
            let mut seen = std::collections::HashSet::new();
            let mut next = 0u64;
            let mut sum = 0u64;
            for file in &files {
                check_relative_path(&file.path)?;
                // One path may not be both a file and a folder, nor listed twice.
                if !seen.insert(file.path.as_str()) {
                    return Err(bad(format!("file path {:?} listed twice", file.path)));
                }
                let count = file.length.div_ceil(size);
                spans.push(FileSpan {
                    path: file.path.clone(),
                    length: file.length,
                    first_chunk: next,
                    chunk_count: count,
                    chunk_size,
                });
                next = next.saturating_add(count);
                sum = sum.saturating_add(file.length);
            }
            for file in &files {
                let mut prefix = file.path.as_str();
                while let Some((parent, _)) = prefix.rsplit_once('/') {
                    if seen.contains(parent) {
                        return Err(bad(format!("{parent:?} is both a file and a folder")));
                    }
                    prefix = parent;
                }
            }
            if sum != total_length {
                return Err(bad("file lengths do not add up to the total length"));
            }
        }
        let expected: u64 = spans.iter().map(|s| s.chunk_count).sum();
        if expected > MAX_CHUNKS {
            return Err(bad(format!("{expected} chunks is more than the limit")));
        }
        if hashes.len() as u64 != expected {
            return Err(bad(format!(
                "{} hashes listed for {expected} chunks",
                hashes.len()
            )));
        }
        Ok(Self {
            name,
            chunk_size,
            total_length,
            hashes,
            files,
            spans,
        })
    }

    /// Hashes every regular file under `root` (recursively, in path order, symbolic links
    /// left out) into a directory manifest named `name`. Returns the manifest and the
    /// files' paths on disk, in manifest order.
    ///
    /// This reads every file: call it from a blocking context.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be read, [`Error::Manifest`] when it holds
    /// no file, a name that is not valid UTF-8 or a path a manifest cannot carry.
    pub fn from_dir(
        name: &str,
        chunk_size: u32,
        root: &std::path::Path,
    ) -> Result<(Self, Vec<std::path::PathBuf>), Error> {
        let mut found = Vec::new();
        collect_files(root, "", &mut found)?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let size = usize::try_from(chunk_size).map_err(|_| bad("chunk size too large"))?;
        let mut buf = vec![0u8; size];
        let mut hashes = Vec::new();
        let mut files = Vec::new();
        for (relative, path) in &found {
            let mut reader = std::io::BufReader::new(
                std::fs::File::open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
            );
            let mut length = 0u64;
            loop {
                let filled = read_full(&mut reader, &mut buf)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if filled == 0 {
                    break;
                }
                hashes.push(hash_chunk(&buf[..filled]));
                length += filled as u64;
                if filled < size {
                    break;
                }
            }
            files.push((relative.clone(), length));
        }
        let manifest = Self::directory(name, chunk_size, files, hashes)?;
        Ok((manifest, found.into_iter().map(|(_, p)| p).collect()))
    }

    /// The content's files with their chunk ranges, in order (one, named after the
    /// content, for a single file).
    pub fn files(&self) -> &[FileSpan] {
        &self.spans
    }

    /// The file at `path` (relative, `/`-separated), if the content has one.
    pub fn file(&self, path: &str) -> Option<&FileSpan> {
        self.spans.iter().find(|s| s.path == path)
    }

    /// True when the content is a directory of files rather than one file.
    pub fn is_directory(&self) -> bool {
        !self.files.is_empty()
    }

    /// The file holding chunk `index`, as its position in [`Manifest::files`].
    pub fn file_of(&self, index: u64) -> Option<usize> {
        if index >= self.chunk_count() {
            return None;
        }
        // The last span starting at or before `index` that is not empty.
        let pos = self.spans.partition_point(|s| s.first_chunk <= index);
        (0..pos)
            .rev()
            .find(|i| self.spans[*i].chunks().contains(&index))
    }

    /// Hashes a whole file read from `reader`, `chunk_size` bytes at a time.
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails, [`Error::Manifest`] when the content is too large.
    pub fn from_reader(
        name: &str,
        chunk_size: u32,
        reader: &mut impl std::io::Read,
    ) -> Result<Self, Error> {
        let size = usize::try_from(chunk_size).map_err(|_| bad("chunk size too large"))?;
        let mut buf = vec![0u8; size];
        let mut hashes = Vec::new();
        let mut total: u64 = 0;
        loop {
            let filled =
                read_full(reader, &mut buf).map_err(|e| Error::io("reading content", e))?;
            if filled == 0 {
                break;
            }
            hashes.push(hash_chunk(&buf[..filled]));
            total += filled as u64;
            if filled < size {
                break;
            }
        }
        Self::new(name, chunk_size, total, hashes)
    }

    /// The canonical encoding: compact JSON with a fixed field order.
    pub fn encode(&self) -> Vec<u8> {
        let wire = ManifestWire {
            version: MANIFEST_VERSION,
            kind: "vod".to_owned(),
            name: self.name.clone(),
            chunk_size: self.chunk_size,
            total_length: self.total_length,
            files: self.files.clone(),
            chunks: self.hashes.iter().map(|h| to_hex(h)).collect(),
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// The swarm ID: hex SHA-256 of the canonical encoding.
    pub fn swarm_id(&self) -> String {
        swarm_id_of(&self.encode())
    }

    /// Decodes a manifest without checking it against a swarm ID.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the bytes are not a well-formed manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad("manifest too large"));
        }
        let wire: ManifestWire =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if wire.version != MANIFEST_VERSION || wire.kind != "vod" {
            return Err(bad("unsupported manifest version or kind"));
        }
        let hashes = wire
            .chunks
            .iter()
            .map(|h| from_hex::<32>(h).ok_or_else(|| bad("chunk hash is not 64 hex digits")))
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = Self::with_files(
            &wire.name,
            wire.chunk_size,
            wire.total_length,
            wire.files,
            hashes,
        )?;
        if manifest.name != wire.name {
            return Err(bad("content name is not in canonical form"));
        }
        Ok(manifest)
    }

    /// Decodes a manifest fetched from a peer, accepting it only when its bytes hash to
    /// `swarm_id`.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the hash does not match or the document is malformed.
    pub fn decode_verified(bytes: &[u8], swarm_id: &str) -> Result<Self, Error> {
        if swarm_id_of(bytes) != swarm_id.to_ascii_lowercase() {
            return Err(bad("manifest does not hash to the swarm ID"));
        }
        Self::decode(bytes)
    }

    /// Content name (final path component of the published file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per chunk (the last chunk may be shorter).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Content length in bytes.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Expected hash of chunk `index`.
    pub fn hash(&self, index: u64) -> Option<&ChunkHash> {
        usize::try_from(index).ok().and_then(|i| self.hashes.get(i))
    }

    /// Byte offset of chunk `index` in its file (in the content, for a single file).
    pub fn offset(&self, index: u64) -> u64 {
        match self.file_of(index) {
            Some(file) => self.spans[file].offset_of(index),
            None => index.saturating_mul(u64::from(self.chunk_size)),
        }
    }

    /// Length of chunk `index`, or `None` past the end.
    pub fn chunk_len(&self, index: u64) -> Option<u32> {
        let span = &self.spans[self.file_of(index)?];
        let start = span.offset_of(index);
        let len = (span.length - start).min(u64::from(self.chunk_size));
        u32::try_from(len).ok()
    }

    /// The chunk holding byte `offset` of a single file's content.
    pub fn chunk_of(&self, offset: u64) -> u64 {
        offset / u64::from(self.chunk_size)
    }
}

/// Adds the regular files under `dir` to `out` as (relative path, path on disk).
fn collect_files(
    dir: &std::path::Path,
    prefix: &str,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(bad(format!(
                "{} is not a UTF-8 name",
                entry.path().display()
            )));
        };
        let relative = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        if kind.is_dir() {
            collect_files(&entry.path(), &relative, out)?;
        } else if kind.is_file() {
            check_relative_path(&relative)?;
            out.push((relative, entry.path()));
        }
    }
    if out.len() > MAX_FILES {
        return Err(bad(format!("more than {MAX_FILES} files")));
    }
    Ok(())
}

fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hex SHA-256 of `bytes`: the swarm ID of a VoD manifest.
pub fn swarm_id_of(bytes: &[u8]) -> String {
    to_hex(&hash_chunk(bytes))
}

/// True when `swarm_id` names a live swarm.
pub fn is_live_swarm(swarm_id: &str) -> bool {
    swarm_id.starts_with(LIVE_PREFIX)
}

/// The public key a live swarm ID names.
///
/// # Errors
/// [`Error::Manifest`] when the ID is not `live-` followed by 64 hex digits.
pub fn live_public_key(swarm_id: &str) -> Result<[u8; 32], Error> {
    swarm_id
        .strip_prefix(LIVE_PREFIX)
        .and_then(from_hex::<32>)
        .ok_or_else(|| bad("live swarm ID is not live- and a 64-digit hex key"))
}

/// One chunk of a live stream as the manifest lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveChunk {
    /// Its length in bytes.
    pub len: u32,
    /// Its SHA-256.
    pub hash: ChunkHash,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveChunkWire {
    len: u32,
    hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveBodyWire {
    version: u32,
    kind: String,
    public_key: String,
    name: String,
    chunk_size: u32,
    sequence: u64,
    first: u64,
    chunks: Vec<LiveChunkWire>,
    ended: bool,
    /// Live HLS only (absent otherwise, so raw-stream manifests are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hls: Option<crate::hls::HlsIndex>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeWire {
    body: String,
    signature: String,
}

/// The rolling description of a live stream: the newest chunks, signed by the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveManifest {
    /// The source's Ed25519 public key.
    pub public_key: [u8; 32],
    /// Stream name (for the player's media type).
    pub name: String,
    /// Largest chunk the source produces.
    pub chunk_size: u32,
    /// Increases with every update; a peer keeps the highest it has verified.
    pub sequence: u64,
    /// Index of the first chunk listed.
    pub first: u64,
    /// Chunks `first`, `first + 1`, ...
    pub chunks: Vec<LiveChunk>,
    /// True once the source has produced its last chunk.
    pub ended: bool,
    /// For a live HLS stream: its playlists and which chunks hold each segment.
    pub hls: Option<std::sync::Arc<crate::hls::HlsIndex>>,
}

impl LiveManifest {
    /// The live swarm ID of this stream.
    pub fn swarm_id(&self) -> String {
        format!("{LIVE_PREFIX}{}", to_hex(&self.public_key))
    }

    /// One past the last chunk listed (the live edge).
    pub fn end(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    /// The listed chunk `index`, if it is inside the window.
    pub fn chunk(&self, index: u64) -> Option<&LiveChunk> {
        let offset = index.checked_sub(self.first)?;
        usize::try_from(offset)
            .ok()
            .and_then(|i| self.chunks.get(i))
    }

    fn body_bytes(&self) -> Vec<u8> {
        let wire = LiveBodyWire {
            version: MANIFEST_VERSION,
            kind: "live".to_owned(),
            public_key: to_hex(&self.public_key),
            name: self.name.clone(),
            chunk_size: self.chunk_size,
            sequence: self.sequence,
            first: self.first,
            chunks: self
                .chunks
                .iter()
                .map(|c| LiveChunkWire {
                    len: c.len,
                    hash: to_hex(&c.hash),
                })
                .collect(),
            ended: self.ended,
            hls: self.hls.as_deref().cloned(),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

/// A live manifest as it travels between peers: the exact signed bytes plus the signature.
#[derive(Clone, Debug)]
pub struct SignedLiveManifest {
    manifest: LiveManifest,
    encoded: bytes::Bytes,
}

impl SignedLiveManifest {
    /// The verified manifest.
    pub fn manifest(&self) -> &LiveManifest {
        &self.manifest
    }

    /// The envelope bytes to serve to other peers, unchanged.
    pub fn encoded(&self) -> &bytes::Bytes {
        &self.encoded
    }

    /// Checks an envelope fetched from a peer against the key `swarm_id` names.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the signature does not verify with that key or the body is
    /// malformed.
    pub fn decode_verified(bytes: &[u8], swarm_id: &str) -> Result<Self, Error> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad("manifest too large"));
        }
        let key = live_public_key(swarm_id)?;
        let envelope: EnvelopeWire =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a live manifest: {e}")))?;
        let signature = STANDARD
            .decode(envelope.signature.as_bytes())
            .map_err(|_| bad("signature is not base64"))?;
        signature::UnparsedPublicKey::new(&signature::ED25519, &key)
            .verify(envelope.body.as_bytes(), &signature)
            .map_err(|_| bad("live manifest signature does not verify"))?;
        let body: LiveBodyWire = serde_json::from_str(&envelope.body)
            .map_err(|e| bad(format!("live manifest body: {e}")))?;
        if body.version != MANIFEST_VERSION || body.kind != "live" {
            return Err(bad("unsupported manifest version or kind"));
        }
        if from_hex::<32>(&body.public_key) != Some(key) {
            return Err(bad("live manifest names another key"));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&body.chunk_size) {
            return Err(bad("chunk size out of bounds"));
        }
        if body.first.checked_add(body.chunks.len() as u64).is_none() {
            return Err(bad("chunk range overflows"));
        }
        let chunks = body
            .chunks
            .iter()
            .map(|c| {
                let hash = from_hex::<32>(&c.hash).ok_or_else(|| bad("chunk hash is not hex"))?;
                if c.len == 0 || c.len > body.chunk_size {
                    return Err(bad("chunk length out of bounds"));
                }
                Ok(LiveChunk { len: c.len, hash })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if let Some(index) = &body.hls {
            index.validate(body.first, body.first + body.chunks.len() as u64)?;
        }
        Ok(Self {
            manifest: LiveManifest {
                public_key: key,
                name: sanitize_name(&body.name),
                chunk_size: body.chunk_size,
                sequence: body.sequence,
                first: body.first,
                chunks,
                ended: body.ended,
                hls: body.hls.map(std::sync::Arc::new),
            },
            encoded: bytes::Bytes::copy_from_slice(bytes),
        })
    }
}

/// The live source's signing key.
pub struct LiveSigner {
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for LiveSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSigner")
            .field("public_key", &to_hex(&self.public_key()))
            .finish()
    }
}

impl LiveSigner {
    /// A fresh random key.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the system random source fails.
    pub fn generate() -> Result<Self, Error> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad("cannot generate a key"))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 v2 document.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the document is not an Ed25519 key.
    pub fn from_pkcs8(document: &[u8]) -> Result<Self, Error> {
        let key_pair =
            Ed25519KeyPair::from_pkcs8(document).map_err(|_| bad("not an Ed25519 PKCS#8 key"))?;
        Ok(Self { key_pair })
    }

    /// The public key, which names the swarm.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key_pair.public_key().as_ref());
        out
    }

    /// Signs `manifest` (whose `public_key` must be this key's) into its wire envelope.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the manifest names another key.
    pub fn sign(&self, manifest: &LiveManifest) -> Result<SignedLiveManifest, Error> {
        if manifest.public_key != self.public_key() {
            return Err(bad("manifest names another key"));
        }
        let body = manifest.body_bytes();
        let signature = self.key_pair.sign(&body);
        let envelope = EnvelopeWire {
            body: String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?,
            signature: STANDARD.encode(signature.as_ref()),
        };
        let encoded = serde_json::to_vec(&envelope).map_err(|e| bad(e.to_string()))?;
        Ok(SignedLiveManifest {
            manifest: manifest.clone(),
            encoded: encoded.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        Manifest::from_reader("dir/clip.mp4", 1024, &mut data.as_slice()).expect("manifest")
    }

    #[test]
    fn encode_decode_and_swarm_id() {
        let m = sample();
        assert_eq!(m.name(), "clip.mp4");
        assert_eq!(m.chunk_count(), 5);
        assert_eq!(m.chunk_len(4), Some(5000 - 4096));
        assert_eq!(m.chunk_len(5), None);
        let bytes = m.encode();
        let id = m.swarm_id();
        assert_eq!(id.len(), 64);
        let back = Manifest::decode_verified(&bytes, &id).expect("verifies");
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes, "encoding is canonical");
    }

    #[test]
    fn tampered_manifest_rejected() {
        let m = sample();
        let id = m.swarm_id();
        let mut bytes = m.encode();
        let pos = bytes.iter().position(|b| *b == b'5').expect("a digit");
        bytes[pos] = b'6';
        assert!(Manifest::decode_verified(&bytes, &id).is_err());
        assert!(Manifest::decode_verified(b"{}", &swarm_id_of(b"{}")).is_err());
        assert!(Manifest::decode(b"not json").is_err());
    }

    #[test]
    fn inconsistent_manifest_rejected() {
        assert!(Manifest::new("x", 1024, 2048, vec![[0; 32]]).is_err());
        assert!(Manifest::new("x", 10, 10, vec![[0; 32]]).is_err());
        assert!(Manifest::new("x", 1024, 0, vec![]).is_ok());
    }

    #[test]
    fn chunk_verification_rejects_corruption() {
        let data = vec![7u8; 4096];
        let hash = hash_chunk(&data);
        assert!(verify_chunk(&hash, &data));
        let mut bad_data = data.clone();
        bad_data[100] ^= 1;
        assert!(!verify_chunk(&hash, &bad_data));
        assert!(!verify_chunk(&hash, &data[..4095]));
    }

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex::<4>("0001ABff"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
    }

    #[test]
    fn names_are_sanitized_and_typed() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("a\"b\nc.ts"), "abc.ts");
        assert_eq!(guess_content_type("movie.MP4"), "video/mp4");
        assert_eq!(guess_content_type("x.ts"), "video/mp2t");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
    }

    fn live(signer: &LiveSigner, sequence: u64, count: u8) -> LiveManifest {
        LiveManifest {
            public_key: signer.public_key(),
            name: "stream.ts".into(),
            chunk_size: 65536,
            sequence,
            first: 10,
            chunks: (0..count)
                .map(|i| LiveChunk {
                    len: 1000 + u32::from(i),
                    hash: hash_chunk(&[i]),
                })
                .collect(),
            ended: false,
            hls: None,
        }
    }

    #[test]
    fn live_manifest_signature() {
        let signer = LiveSigner::generate().expect("key");
        let m = live(&signer, 3, 4);
        let id = m.swarm_id();
        assert!(is_live_swarm(&id));
        let signed = signer.sign(&m).expect("signs");
        let back = SignedLiveManifest::decode_verified(signed.encoded(), &id).expect("verifies");
        assert_eq!(back.manifest(), &m);
        assert_eq!(back.manifest().end(), 14);
        assert_eq!(back.manifest().chunk(13).map(|c| c.len), Some(1003));
        assert!(back.manifest().chunk(14).is_none());

        // Another key's manifest is not accepted for this swarm.
        let other = LiveSigner::generate().expect("key");
        let foreign = other.sign(&live(&other, 4, 5)).expect("signs");
        assert!(SignedLiveManifest::decode_verified(foreign.encoded(), &id).is_err());
        assert!(other.sign(&m).is_err());
    }

    #[test]
    fn forged_live_extension_rejected() {
        let signer = LiveSigner::generate().expect("key");
        let m = live(&signer, 3, 4);
        let id = m.swarm_id();
        let signed = signer.sign(&m).expect("signs");
        // Append a chunk to the signed body but keep the old signature.
        let envelope: serde_json::Value = serde_json::from_slice(signed.encoded()).expect("json");
        let body = envelope["body"].as_str().expect("body").to_owned();
        let forged_body = body.replace(
            "],\"ended\"",
            &format!(
                ",{{\"len\":5,\"hash\":\"{}\"}}],\"ended\"",
                to_hex(&hash_chunk(b"evil"))
            ),
        );
        assert_ne!(forged_body, body);
        let forged = serde_json::json!({
            "body": forged_body,
            "signature": envelope["signature"],
        });
        let forged = serde_json::to_vec(&forged).expect("encodes");
        let err = SignedLiveManifest::decode_verified(&forged, &id).expect_err("forged");
        assert!(err.to_string().contains("signature"), "{err}");
        assert!(SignedLiveManifest::decode_verified(signed.encoded(), "live-00").is_err());
    }

    #[test]
    fn directory_manifests_place_each_file_on_chunk_boundaries() {
        let hashes = |n: usize| vec![hash_chunk(b"x"); n];
        let files = vec![
            ("a.txt".to_owned(), 1500),
            ("empty".to_owned(), 0),
            ("sub/b.ts".to_owned(), 2048),
        ];
        let m = Manifest::directory("pkg", 1024, files, hashes(4)).expect("manifest");
        assert!(m.is_directory());
        assert_eq!(m.total_length(), 3548);
        let b = m.file("sub/b.ts").expect("file");
        assert_eq!(b.chunks(), 2..4);
        assert_eq!(b.chunk_at(1500), 3);
        assert_eq!(b.offset_of(3), 1024);
        assert_eq!(b.media_type(), "video/mp2t");
        assert_eq!(m.file("empty").expect("empty").chunks(), 2..2);
        assert_eq!(m.chunk_len(1), Some(476));
        assert_eq!(m.chunk_len(3), Some(1024));
        assert_eq!(m.file_of(2), Some(2));
        assert_eq!(m.offset(3), 1024);
        let back = Manifest::decode(&m.encode()).expect("decodes");
        assert_eq!(back, m);
        // A single file's encoding has no files field: its swarm ID did not change.
        let single = Manifest::new("one.bin", 1024, 10, hashes(1)).expect("manifest");
        assert!(
            !String::from_utf8(single.encode())
                .expect("utf-8")
                .contains("files")
        );
        assert_eq!(single.files()[0].path(), "one.bin");
    }

    #[test]
    fn unsafe_paths_in_a_directory_manifest_are_refused() {
        for path in [
            "../escape",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "c:x",
            "",
            "a/\u{7}",
        ] {
            let files = vec![(path.to_owned(), 1)];
            assert!(
                Manifest::directory("d", 1024, files, vec![hash_chunk(b"x")]).is_err(),
                "{path:?} accepted"
            );
        }
        let twice = vec![("a".to_owned(), 1), ("a".to_owned(), 1)];
        assert!(Manifest::directory("d", 1024, twice, vec![hash_chunk(b"x"); 2]).is_err());
        let nested = vec![("a".to_owned(), 1), ("a/b".to_owned(), 1)];
        assert!(Manifest::directory("d", 1024, nested, vec![hash_chunk(b"x"); 2]).is_err());
        // The same refusal for a manifest arriving over the network.
        let wire = br#"{"version":1,"kind":"vod","name":"d","chunk_size":1024,"total_length":1,"files":[{"path":"../x","length":1}],"chunks":["0000000000000000000000000000000000000000000000000000000000000000"]}"#;
        let err = Manifest::decode(wire).expect_err("refused");
        assert!(err.to_string().contains("../x"), "{err}");
    }

    proptest::proptest! {
        /// Whatever a manifest from the network says, a path it is allowed to carry never
        /// leads out of the folder it is written under.
        #[test]
        fn accepted_paths_stay_under_their_root(path in "[a-z./\\\\:%-]{1,24}") {
            if check_relative_path(&path).is_ok() {
                for component in std::path::Path::new(&path).components() {
                    proptest::prop_assert!(
                        matches!(component, std::path::Component::Normal(_)),
                        "{path:?} has {component:?}"
                    );
                }
            }
        }
    }
}
