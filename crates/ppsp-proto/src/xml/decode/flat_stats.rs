//! The flat path's reading of `Stats`, the one nested element of a STAT_REPORT (a third of
//! a tracker's traffic when peers report chunk maps): read by string search like the rest
//! of the flat path, instead of through the event cursor.
//!
//! It takes `Stats` in the shape the encoder writes it: known elements only (`Stat` with
//! its `property`; `StreamStatsReport` and its four counters; `ChunkMapReport`, `Clip`,
//! `Name`, `Type`, `ChunkSegmentIndex`, `ChunkSegments` and `Segment`), attributes written
//! `name="value"` after one space each, XML white space between elements, and text without
//! a reference, a `>` or a carriage return. Every value goes through the full decoder's own
//! rules ([`stream_stats_field`], [`ClipParts`], [`SegmentParts`], `room`, `parse_bool`,
//! `parse_media`), so the outcome is the same. Anything else, an element or attribute it
//! does not know, a duplicate, a missing part, any value a rule refuses, is `None`: the
//! full decoder then reads the whole document, so that every error is its own.

use super::{
    ClipParts, SegmentParts, StatProperty, finish_stream_stats, is_space, is_stream_stats_field,
    parse_bool, parse_media, room, stream_stats_field,
};
use crate::error::Limits;
use crate::model::{ChunkMapReport, ChunkSegments, Clip, Stat, StreamStats, SwarmId};

/// The deepest element this reads: the root, `Stats`, `Stat`, `ChunkMapReport`, `Clip`,
/// `ChunkSegments`, `Segment`.
const DEPTH: usize = 7;

/// Most attributes of one element here: `Segment` has five.
const MAX_ATTRIBUTES: usize = 5;

/// A start tag.
struct Tag<'a> {
    name: &'a str,
    attributes: [(&'a str, &'a str); MAX_ATTRIBUTES],
    count: usize,
    /// `<name .../>`: no content, no end tag.
    empty: bool,
}

impl<'a> Tag<'a> {
    fn attributes(&self) -> &[(&'a str, &'a str)] {
        &self.attributes[..self.count]
    }

    /// The value of the only attribute, if it is `name`.
    fn only_attribute(&self, name: &str) -> Option<&'a str> {
        match self.attributes() {
            [(key, value)] if *key == name => Some(value.trim_matches(is_space)),
            _ => None,
        }
    }
}

/// The start tag after the white space at the start of `s`, and what follows it.
fn open(s: &str) -> Option<(Tag<'_>, &str)> {
    let s = s.trim_start_matches(is_space).strip_prefix('<')?;
    let name_len = s.bytes().position(|b| !b.is_ascii_alphabetic())?;
    let (name, mut rest) = s.split_at(name_len);
    if name.is_empty() {
        return None;
    }
    let mut tag = Tag {
        name,
        attributes: [("", ""); MAX_ATTRIBUTES],
        count: 0,
        empty: false,
    };
    loop {
        if let Some(after) = rest.strip_prefix('>') {
            return Some((tag, after));
        }
        if let Some(after) = rest.strip_prefix("/>") {
            tag.empty = true;
            return Some((tag, after));
        }
        rest = rest.strip_prefix(' ')?;
        let key_len = rest.bytes().position(|b| !b.is_ascii_alphabetic())?;
        let (key, after) = rest.split_at(key_len);
        let (value, after) = after.strip_prefix("=\"")?.split_once('"')?;
        if key.is_empty()
            || value.contains(['<', '&'])
            || tag.count == MAX_ATTRIBUTES
            || tag.attributes().iter().any(|(k, _)| *k == key)
        {
            return None;
        }
        tag.attributes[tag.count] = (key, value);
        tag.count += 1;
        rest = after;
    }
}

/// `</name>` after the white space at the start of `s`, and what follows it.
fn close<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.trim_start_matches(is_space)
        .strip_prefix("</")?
        .strip_prefix(name)?
        .strip_prefix('>')
}

/// The trimmed text of the element `tag` opened, up to its end tag, and what follows it.
fn text<'a>(tag: &Tag<'_>, s: &'a str) -> Option<(&'a str, &'a str)> {
    if tag.empty {
        return None;
    }
    let (value, after) = s.split_at(memchr::memchr(b'<', s.as_bytes())?);
    if value.bytes().any(|b| matches!(b, b'&' | b'>' | b'\r')) {
        return None;
    }
    Some((value.trim_matches(is_space), close(after, tag.name)?))
}

/// `Stats` from just after its name (`<Stats` has been read) to just after its end tag.
pub(super) fn stats<'a>(s: &'a str, limits: &Limits) -> Option<(Vec<Stat>, &'a str)> {
    if limits.max_depth < DEPTH {
        return None;
    }
    if let Some(after) = s.strip_prefix("/>") {
        return Some((Vec::new(), after));
    }
    let mut rest = s.strip_prefix('>')?;
    let mut out = Vec::new();
    loop {
        if let Some(after) = close(rest, "Stats") {
            return Some((out, after));
        }
        let (stat, after) = open(rest)?;
        if stat.name != "Stat" || stat.empty {
            return None;
        }
        room(out.len(), "Stat", limits).ok()?;
        let (value, after) = match StatProperty::classify(stat.only_attribute("property")?) {
            StatProperty::Nat => {
                let (value, after) = text(&stat, after)?;
                (Stat::Nat(parse_bool("Stat NAT", value).ok()?), after)
            }
            StatProperty::Stun => {
                let (value, after) = text(&stat, after)?;
                (Stat::Stun(parse_bool("Stat STUN", value).ok()?), after)
            }
            StatProperty::StreamStats => {
                let (report, after) = stream_stats_report(after)?;
                (Stat::StreamStats(report), close(after, "Stat")?)
            }
            StatProperty::ChunkMap => {
                let (report, after) = chunk_map_report(after, limits)?;
                (Stat::ChunkMap(report), close(after, "Stat")?)
            }
            StatProperty::Unknown => return None,
        };
        out.push(value);
        rest = after;
    }
}

fn stream_stats_report(s: &str) -> Option<(StreamStats, &str)> {
    let (report, mut rest) = open(s)?;
    if report.name != "StreamStatsReport" || report.count != 0 || report.empty {
        return None;
    }
    let mut stats = StreamStats::default();
    loop {
        if let Some(after) = close(rest, "StreamStatsReport") {
            return Some((finish_stream_stats(stats).ok()?, after));
        }
        let (field, after) = open(rest)?;
        if field.count != 0 || !is_stream_stats_field(field.name.as_bytes()) {
            return None;
        }
        let (value, after) = text(&field, after)?;
        stream_stats_field(&mut stats, field.name.as_bytes(), value).ok()?;
        rest = after;
    }
}

fn chunk_map_report<'a>(s: &'a str, limits: &Limits) -> Option<(ChunkMapReport, &'a str)> {
    let (report, mut rest) = open(s)?;
    if report.name != "ChunkMapReport" || report.count != 0 || report.empty {
        return None;
    }
    let mut swarm_id = None;
    let mut clips = Vec::new();
    loop {
        if let Some(after) = close(rest, "ChunkMapReport") {
            if clips.is_empty() {
                return None;
            }
            return Some((
                ChunkMapReport {
                    swarm_id: swarm_id?,
                    clips,
                },
                after,
            ));
        }
        let (child, after) = open(rest)?;
        if child.count != 0 {
            return None;
        }
        rest = match child.name {
            "SwarmID" if swarm_id.is_none() => {
                let (value, after) = text(&child, after)?;
                swarm_id = Some(SwarmId::new(value).ok()?);
                after
            }
            "Clip" => {
                room(clips.len(), "Clip", limits).ok()?;
                let (clip, after) = clip(&child, after, limits)?;
                clips.push(clip);
                after
            }
            _ => return None,
        };
    }
}

fn clip<'a>(tag: &Tag<'_>, s: &'a str, limits: &Limits) -> Option<(Clip, &'a str)> {
    if tag.empty {
        return None;
    }
    let mut parts = ClipParts::default();
    let mut rest = s;
    loop {
        if let Some(after) = close(rest, "Clip") {
            return Some((parts.finish().ok()?, after));
        }
        let (child, after) = open(rest)?;
        rest = match child.name {
            "Name" | "Type" | "ChunkSegmentIndex" if child.count == 0 => {
                let (value, after) = text(&child, after)?;
                parts.text_child(child.name.as_bytes(), value).ok()?;
                after
            }
            "ChunkSegments" if parts.segments.is_none() => {
                let (segments, after) = chunk_segments(&child, after, limits)?;
                parts.segments = Some(segments);
                after
            }
            _ => return None,
        };
    }
}

fn chunk_segments<'a>(
    tag: &Tag<'_>,
    s: &'a str,
    limits: &Limits,
) -> Option<(ChunkSegments, &'a str)> {
    if tag.empty {
        return None;
    }
    let media = parse_media("ChunkSegments@type", tag.only_attribute("type")?).ok()?;
    let mut segments = Vec::new();
    let mut rest = s;
    loop {
        if let Some(after) = close(rest, "ChunkSegments") {
            if segments.is_empty() {
                return None;
            }
            return Some((ChunkSegments { media, segments }, after));
        }
        let (segment, after) = open(rest)?;
        if segment.name != "Segment" {
            return None;
        }
        room(segments.len(), "Segment", limits).ok()?;
        let mut parts = SegmentParts::default();
        for (name, value) in segment.attributes() {
            parts
                .attribute(name.as_bytes(), value.trim_matches(is_space))
                .ok()?;
        }
        parts.check(limits).ok()?;
        let (bitmap, after) = if segment.empty {
            ("", after)
        } else {
            text(&segment, after)?
        };
        segments.push(parts.finish(bitmap, limits).ok()?);
        rest = after;
    }
}
