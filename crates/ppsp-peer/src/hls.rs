//! HTTP Live Streaming (RFC 8216) for live swarms: the signed live index and the playlists
//! viewers serve from it.
//!
//! A source publishing an encoder's HLS output (`ppsp peer live --hls DIR`, see
//! [`crate::hls_live`]) cuts each finished segment into chunks of the live swarm and lists
//! it in an [`HlsIndex`] carried inside the signed live manifest: per variant (media
//! playlist), each segment's media sequence number, duration, discontinuity flag, name and
//! chunk range. A viewer's player endpoint turns the index back into playlists: the
//! encoder's master playlist as it was, and for each variant a sliding-window media
//! playlist of the segments it holds, so standard players (hls.js, ffmpeg, VLC, Safari)
//! follow the stream. Playlists are parsed and written with the `m3u8-rs` crate.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest path of a playlist or segment, in bytes.
const MAX_PATH_LEN: usize = 256;
/// Most variants in one index.
const MAX_VARIANTS: usize = 16;
/// Most segments listed per variant.
pub const MAX_INDEX_SEGMENTS: usize = 32;
/// Longest master playlist or MPD kept, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 256 * 1024;
/// Longest fMP4 initialization section carried, in bytes.
pub const MAX_INIT_LEN: usize = 64 * 1024;

/// A document of the encoder's carried unchanged: the master playlist, or the MPD of an
/// encoder that writes DASH as well (ffmpeg's `dash` muxer with `-hls_playlist 1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsDocument {
    /// Its path under the published directory (`master.m3u8`, `manifest.mpd`).
    pub path: String,
    /// Its text.
    pub text: String,
}

/// The initialization section of a variant's fMP4 segments (`EXT-X-MAP`), carried inline
/// in the index because players need it before any segment and it is small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsInit {
    /// Its URI in the media playlist, relative to the playlist's directory.
    pub uri: String,
    /// Its bytes, standard base64.
    pub data: String,
}

impl HlsInit {
    /// Its bytes, when `data` is valid base64.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .ok()
    }
}

/// One segment of a variant, as the live index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsSegment {
    /// Media sequence number (`EXT-X-MEDIA-SEQUENCE` counts these).
    pub sequence: u64,
    /// `EXTINF` duration in microseconds.
    pub duration_us: u64,
    /// An `EXT-X-DISCONTINUITY` precedes this segment.
    pub discontinuity: bool,
    /// Its URI in the media playlist, relative to the playlist's directory.
    pub uri: String,
    /// Its first chunk in the live swarm.
    pub first_chunk: u64,
    /// How many chunks it spans.
    pub chunks: u32,
    /// Its length in bytes.
    pub length: u64,
}

impl HlsSegment {
    /// One past its last chunk.
    pub fn end_chunk(&self) -> u64 {
        self.first_chunk + u64::from(self.chunks)
    }
}

/// One media playlist of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsVariant {
    /// Its path under the published directory (`index.m3u8`, `stream_0.m3u8`, `v0/a.m3u8`).
    pub path: String,
    /// `EXT-X-VERSION` of the encoder's playlist.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u64,
    /// Discontinuities before the first listed segment (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// The encoder declared `EXT-X-INDEPENDENT-SEGMENTS`.
    pub independent_segments: bool,
    /// The encoder wrote `EXT-X-ENDLIST`: no segment follows.
    pub ended: bool,
    /// The fMP4 initialization section the segments need, if any.
    pub init: Option<HlsInit>,
    /// The newest segments, oldest first, with consecutive sequence numbers.
    pub segments: Vec<HlsSegment>,
}

impl HlsVariant {
    /// The path a segment is served under: its URI resolved against this playlist's
    /// directory.
    pub fn segment_path(&self, segment: &HlsSegment) -> String {
        self.resolve_uri(&segment.uri)
    }

    /// A URI of this playlist resolved against its directory.
    pub fn resolve_uri(&self, uri: &str) -> String {
        match self.path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{uri}"),
            None => uri.to_owned(),
        }
    }
}

/// The live index of an HLS stream, signed with the live manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsIndex {
    /// The master playlist, when the encoder writes one (several variants).
    pub master: Option<HlsDocument>,
    /// The DASH MPD, when the encoder writes one beside the playlists; its segments are
    /// the variants' segments.
    pub dash: Option<HlsDocument>,
    /// The media playlists.
    pub variants: Vec<HlsVariant>,
}

/// What a path of the player endpoint names in an HLS stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlsResource<'a> {
    /// The master playlist.
    Master(&'a HlsDocument),
    /// The DASH MPD.
    Dash(&'a HlsDocument),
    /// A media playlist.
    Media(&'a HlsVariant),
    /// A segment of a variant.
    Segment(&'a HlsVariant, &'a HlsSegment),
    /// The fMP4 initialization section of a variant.
    Init(&'a HlsInit),
}

impl HlsIndex {
    /// The playlist a player should open first: the master playlist if there is one, else
    /// the first media playlist.
    pub fn entry_path(&self) -> Option<&str> {
        self.master
            .as_ref()
            .map(|m| m.path.as_str())
            .or_else(|| self.variants.first().map(|v| v.path.as_str()))
    }

    /// What `path` (without its leading `/`) names, if anything.
    pub fn resolve(&self, path: &str) -> Option<HlsResource<'_>> {
        if let Some(master) = self.master.as_ref().filter(|m| m.path == path) {
            return Some(HlsResource::Master(master));
        }
        if let Some(mpd) = self.dash.as_ref().filter(|m| m.path == path) {
            return Some(HlsResource::Dash(mpd));
        }
        for variant in &self.variants {
            if variant.path == path {
                return Some(HlsResource::Media(variant));
            }
            if let Some(init) = variant
                .init
                .as_ref()
                .filter(|i| variant.resolve_uri(&i.uri) == path)
            {
                return Some(HlsResource::Init(init));
            }
            if let Some(segment) = variant
                .segments
                .iter()
                .find(|s| variant.segment_path(s) == path)
            {
                return Some(HlsResource::Segment(variant, segment));
            }
        }
        None
    }

    /// True once every variant has ended.
    pub fn ended(&self) -> bool {
        !self.variants.is_empty() && self.variants.iter().all(|v| v.ended)
    }

    /// Checks an index received from another peer against the chunks `first..end` its
    /// manifest lists.
    ///
    /// # Errors
    /// [`Error::Manifest`] naming what is wrong: an unsafe or overlong path, a segment
    /// outside the manifest's chunks, sequence numbers that are not consecutive, too many
    /// variants or segments.
    pub fn validate(&self, first: u64, end: u64) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Manifest(format!("HLS index: {what}")));
        if self.variants.len() > MAX_VARIANTS {
            return bad(format!("more than {MAX_VARIANTS} variants"));
        }
        for document in self.master.iter().chain(&self.dash) {
            check_path(&document.path)?;
            if document.text.len() > MAX_DOCUMENT_LEN {
                return bad(format!("{} too long", document.path));
            }
        }
        for variant in &self.variants {
            check_path(&variant.path)?;
            if let Some(init) = &variant.init {
                check_path(&variant.resolve_uri(&init.uri))?;
                if init.bytes().is_none_or(|b| b.len() > MAX_INIT_LEN) {
                    return bad("initialization section unreadable or too long".to_owned());
                }
            }
            if variant.segments.len() > MAX_INDEX_SEGMENTS {
                return bad(format!("more than {MAX_INDEX_SEGMENTS} segments"));
            }
            for pair in variant.segments.windows(2) {
                if pair[0].sequence.checked_add(1) != Some(pair[1].sequence) {
                    return bad("segment sequence numbers are not consecutive".to_owned());
                }
            }
            for segment in &variant.segments {
                check_path(&variant.segment_path(segment))?;
                let inside = segment.first_chunk >= first
                    && segment.chunks > 0
                    && segment
                        .first_chunk
                        .checked_add(u64::from(segment.chunks))
                        .is_some_and(|e| e <= end);
                if !inside {
                    return bad(format!(
                        "segment {} lies outside the manifest's chunks",
                        segment.sequence
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Refuses a path that could leave the published directory or is not plain: empty or too
/// long, absolute, with `..`, `.` or empty components, backslashes, a scheme, a query, a
/// fragment or control characters.
///
/// # Errors
/// [`Error::Manifest`] naming the path.
pub fn check_path(path: &str) -> Result<(), Error> {
    let plain = !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && !path.starts_with('/')
        && !path.contains(['\\', '?', '#', ':'])
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if plain {
        Ok(())
    } else {
        Err(Error::Manifest(format!("unusable HLS path {path:?}")))
    }
}

/// A media playlist as an encoder wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderPlaylist {
    /// `EXT-X-VERSION`.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// `EXT-X-INDEPENDENT-SEGMENTS`.
    pub independent_segments: bool,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
    /// The segments, oldest first.
    pub segments: Vec<EncoderSegment>,
}

/// A segment as an encoder's media playlist lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderSegment {
    /// Its URI.
    pub uri: String,
    /// `EXTINF` duration, seconds.
    pub duration: f32,
    /// An `EXT-X-DISCONTINUITY` precedes it.
    pub discontinuity: bool,
    /// The `EXT-X-MAP` URI in force from this segment on, where the playlist names one.
    pub map: Option<String>,
}

/// What an encoder's `.m3u8` file is.
#[derive(Clone, Debug, PartialEq)]
pub enum EncoderFile {
    /// A master playlist (its text is kept as it is).
    Master,
    /// A media playlist.
    Media(EncoderPlaylist),
}

/// Reads a playlist file an encoder wrote.
///
/// # Errors
/// [`Error::InvalidArgument`] when it is not an HLS playlist.
pub fn read_encoder_playlist(bytes: &[u8]) -> Result<EncoderFile, Error> {
    let playlist = m3u8_rs::parse_playlist_res(bytes)
        .map_err(|_| Error::InvalidArgument("not an HLS playlist".to_owned()))?;
    Ok(match playlist {
        m3u8_rs::Playlist::MasterPlaylist(_) => EncoderFile::Master,
        m3u8_rs::Playlist::MediaPlaylist(media) => EncoderFile::Media(EncoderPlaylist {
            version: media.version.and_then(|v| u32::try_from(v).ok()),
            target_duration: media.target_duration,
            media_sequence: media.media_sequence,
            independent_segments: media.independent_segments,
            ended: media.end_list,
            segments: media
                .segments
                .into_iter()
                .map(|s| EncoderSegment {
                    uri: s.uri,
                    duration: s.duration,
                    discontinuity: s.discontinuity,
                    map: s.map.map(|m| m.uri),
                })
                .collect(),
        }),
    })
}

/// Writes the media playlist of `variant` listing `segments` (a run of its segments with
/// consecutive sequence numbers), ending it when the variant has ended and the run reaches
/// its last segment.
pub fn media_playlist(variant: &HlsVariant, segments: &[HlsSegment]) -> Vec<u8> {
    let first = segments.first().map(|s| s.sequence);
    // Discontinuities that left the window count into the discontinuity sequence.
    let dropped = variant
        .segments
        .iter()
        .take_while(|s| Some(s.sequence) != first)
        .filter(|s| s.discontinuity)
        .count() as u64;
    let reaches_end = match (segments.last(), variant.segments.last()) {
        (Some(a), Some(b)) => a.sequence == b.sequence,
        (None, None) => true,
        _ => false,
    };
    let playlist = m3u8_rs::MediaPlaylist {
        version: variant.version.map(|v| v as usize),
        target_duration: variant.target_duration.max(1),
        media_sequence: first.unwrap_or(0),
        discontinuity_sequence: variant.discontinuity_sequence + dropped,
        independent_segments: variant.independent_segments,
        end_list: variant.ended && reaches_end,
        segments: segments
            .iter()
            .enumerate()
            .map(|(i, s)| m3u8_rs::MediaSegment {
                uri: s.uri.clone(),
                duration: (s.duration_us as f64 / 1e6) as f32,
                discontinuity: s.discontinuity,
                // The initialization section precedes the first segment listed.
                map: variant
                    .init
                    .as_ref()
                    .filter(|_| i == 0)
                    .map(|init| m3u8_rs::Map {
                        uri: init.uri.clone(),
                        ..m3u8_rs::Map::default()
                    }),
                ..m3u8_rs::MediaSegment::default()
            })
            .collect(),
        ..m3u8_rs::MediaPlaylist::default()
    };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = playlist.write_to(&mut out);
    out
}

/// An `EXTINF` duration in seconds as whole microseconds (negative or not a number: 0).
pub fn duration_us(seconds: f32) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (f64::from(seconds) * 1e6).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sequence: u64, first_chunk: u64, discontinuity: bool) -> HlsSegment {
        HlsSegment {
            sequence,
            duration_us: 1_000_000,
            discontinuity,
            uri: format!("seg{sequence}.ts"),
            first_chunk,
            chunks: 2,
            length: 100_000,
        }
    }

    fn variant(path: &str) -> HlsVariant {
        HlsVariant {
            path: path.to_owned(),
            version: Some(3),
            target_duration: 1,
            discontinuity_sequence: 0,
            independent_segments: true,
            ended: false,
            init: None,
            segments: vec![
                segment(7, 10, true),
                segment(8, 12, false),
                segment(9, 14, true),
            ],
        }
    }

    #[test]
    fn resolves_paths_of_playlists_and_segments() {
        let index = HlsIndex {
            master: Some(HlsDocument {
                path: "master.m3u8".into(),
                text: "#EXTM3U\n".into(),
            }),
            dash: Some(HlsDocument {
                path: "live.mpd".into(),
                text: "<MPD/>".into(),
            }),
            variants: vec![variant("v0/index.m3u8"), variant("index.m3u8")],
        };
        assert_eq!(index.entry_path(), Some("master.m3u8"));
        assert!(matches!(
            index.resolve("master.m3u8"),
            Some(HlsResource::Master(_))
        ));
        assert!(matches!(
            index.resolve("live.mpd"),
            Some(HlsResource::Dash(_))
        ));
        assert!(matches!(
            index.resolve("v0/index.m3u8"),
            Some(HlsResource::Media(v)) if v.path == "v0/index.m3u8"
        ));
        assert!(matches!(
            index.resolve("v0/seg8.ts"),
            Some(HlsResource::Segment(v, s)) if v.path == "v0/index.m3u8" && s.sequence == 8
        ));
        assert!(matches!(
            index.resolve("seg9.ts"),
            Some(HlsResource::Segment(v, _)) if v.path == "index.m3u8"
        ));
        assert_eq!(index.resolve("seg6.ts"), None);
        assert!(index.validate(10, 16).is_ok());
        assert!(index.validate(11, 16).is_err(), "segment before the chunks");
        assert!(index.validate(10, 15).is_err(), "segment past the edge");
    }

    #[test]
    fn refuses_unsafe_paths_and_gaps() {
        for bad in [
            "",
            "/etc/passwd",
            "../x.ts",
            "a/../../x.ts",
            "a//b.ts",
            "./a.ts",
            "http://h/x.ts",
            "a.ts?x=1",
            "a\\b.ts",
            "a\nb.ts",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("v0/seg-1.ts").is_ok());
        let mut v = variant("index.m3u8");
        v.segments[2].sequence = 11;
        let index = HlsIndex {
            master: None,
            dash: None,
            variants: vec![v],
        };
        assert!(index.validate(0, 100).is_err());
    }

    #[test]
    fn sliding_window_playlist() {
        let mut v = variant("index.m3u8");
        let text = String::from_utf8(media_playlist(&v, &v.segments[1..])).expect("utf-8");
        assert!(text.starts_with("#EXTM3U\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:8\n"), "{text}");
        // Segment 7's discontinuity left the window.
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        assert!(text.contains("seg8.ts\n") && text.contains("seg9.ts\n"));
        assert!(!text.contains("seg7.ts") && !text.contains("ENDLIST"));
        // The encoder's parser reads it back.
        let EncoderFile::Media(back) = read_encoder_playlist(text.as_bytes()).expect("parses")
        else {
            panic!("not a media playlist");
        };
        assert_eq!(back.media_sequence, 8);
        assert_eq!(back.segments.len(), 2);
        v.ended = true;
        let text = String::from_utf8(media_playlist(&v, &v.segments)).expect("utf-8");
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
        let text = String::from_utf8(media_playlist(&v, &v.segments[..2])).expect("utf-8");
        assert!(!text.contains("#EXT-X-ENDLIST"), "not at the end yet");
    }

    #[test]
    fn fmp4_initialization_section() {
        use base64::Engine as _;
        let mut v = variant("v0/index.m3u8");
        v.init = Some(HlsInit {
            uri: "init.mp4".into(),
            data: base64::engine::general_purpose::STANDARD.encode(b"ftyp...moov"),
        });
        let index = HlsIndex {
            master: None,
            dash: None,
            variants: vec![v.clone()],
        };
        assert!(matches!(
            index.resolve("v0/init.mp4"),
            Some(HlsResource::Init(i)) if i.bytes().as_deref() == Some(&b"ftyp...moov"[..])
        ));
        assert!(index.validate(10, 16).is_ok());
        let text = String::from_utf8(media_playlist(&v, &v.segments[1..])).expect("utf-8");
        assert_eq!(
            text.matches("#EXT-X-MAP:URI=\"init.mp4\"").count(),
            1,
            "{text}"
        );
        assert!(text.find("#EXT-X-MAP") < text.find("seg8.ts"), "{text}");
        let mut bad = index.clone();
        if let Some(init) = bad.variants[0].init.as_mut() {
            init.data = "not base64!".into();
        }
        assert!(bad.validate(10, 16).is_err());
    }

    #[test]
    fn reads_what_ffmpeg_writes() {
        let media = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:1.000000,\n\
            index4.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:0.960000,\nindex5.ts\n";
        let EncoderFile::Media(p) = read_encoder_playlist(media).expect("parses") else {
            panic!("media");
        };
        assert_eq!(p.media_sequence, 4);
        assert!(p.independent_segments && !p.ended);
        let listed: Vec<(&str, f32, bool)> = p
            .segments
            .iter()
            .map(|s| (s.uri.as_str(), s.duration, s.discontinuity))
            .collect();
        assert_eq!(
            listed,
            vec![("index4.ts", 1.0, false), ("index5.ts", 0.96, true)]
        );
        let fmp4 = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000000,\nindex0.m4s\n";
        let EncoderFile::Media(p) = read_encoder_playlist(fmp4).expect("parses") else {
            panic!("media");
        };
        assert_eq!(p.segments[0].map.as_deref(), Some("init.mp4"));
        let master = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=140800,\
            RESOLUTION=320x240,CODECS=\"avc1.64000d\"\nstream_0.m3u8\n";
        assert_eq!(
            read_encoder_playlist(master).expect("parses"),
            EncoderFile::Master
        );
        assert!(read_encoder_playlist(b"hello").is_err());
    }
}
