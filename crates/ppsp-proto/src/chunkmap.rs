//! Chunk availability bitmaps.
//!
//! A [`ChunkMap`] covers an inclusive chunk range starting at [`ChunkMap::first`]. Bit `i`
//! stands for chunk `first + i` and is packed MSB-first, as in a BitTorrent bitfield: chunk
//! `first` is bit 7 of byte 0 (draft-gu-ppsp-tracker-protocol-06). Pad bits past the end are always zero.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::error::{DecodeError, DecodeErrorKind};

/// Which chunks of a range a peer holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChunkMap {
    first: u64,
    len: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for ChunkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkMap")
            .field("first", &self.first)
            .field("len", &self.len)
            .field("held", &self.count())
            .finish()
    }
}

fn byte_len(bits: u64) -> usize {
    // Callers bound `bits` well below usize::MAX / 8 before allocating.
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

impl ChunkMap {
    /// An empty map (no chunk held) of `len` bits starting at chunk `first`.
    ///
    /// The caller is responsible for bounding `len`; decoders check it against
    /// [`crate::Limits::max_bitmap_bits`] first.
    pub fn new(first: u64, len: u64) -> Self {
        Self {
            first,
            len,
            bytes: vec![0; byte_len(len)],
        }
    }

    /// A map with every chunk of the range held.
    pub fn full(first: u64, len: u64) -> Self {
        let mut map = Self {
            first,
            len,
            bytes: vec![0xff; byte_len(len)],
        };
        map.clear_padding();
        map
    }

    /// Builds a map from packed MSB-first bytes; pad bits are cleared.
    ///
    /// # Errors
    /// [`DecodeErrorKind::ChunkMap`] when the byte count is not `ceil(len / 8)`.
    pub fn from_bytes(first: u64, len: u64, bytes: Vec<u8>) -> Result<Self, DecodeError> {
        if bytes.len() != byte_len(len) {
            return Err(
                DecodeErrorKind::ChunkMap("bitmap length does not match bitmapsize").into(),
            );
        }
        if first.checked_add(len).is_none() {
            return Err(DecodeErrorKind::ChunkMap("range overflows").into());
        }
        let mut map = Self { first, len, bytes };
        map.clear_padding();
        Ok(map)
    }

    /// Decodes base64 text (RFC 4648 §4 alphabet). Whitespace is ignored and missing or
    /// surplus `=` padding is tolerated.
    ///
    /// # Errors
    /// [`DecodeErrorKind::ChunkMap`] when `len` exceeds `max_bits` or the decoded length does
    /// not match; [`DecodeErrorKind::InvalidBase64`] when the text is not base64.
    pub fn from_base64(
        first: u64,
        len: u64,
        text: &str,
        max_bits: u64,
    ) -> Result<Self, DecodeError> {
        if len > max_bits {
            return Err(DecodeErrorKind::ChunkMap("more bits than the limit").into());
        }
        let expected = byte_len(len);
        // Base64 expands 3 bytes into 4 characters; anything much longer cannot match.
        if text.len() > expected.saturating_mul(2).saturating_add(64) {
            return Err(
                DecodeErrorKind::ChunkMap("bitmap length does not match bitmapsize").into(),
            );
        }
        // Maps as peers send them hold no white space: decoded straight from the text.
        let compact: Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
            Cow::Owned(text.chars().filter(|c| !c.is_ascii_whitespace()).collect())
        } else {
            Cow::Borrowed(text)
        };
        let mut bytes = Vec::with_capacity(expected);
        STANDARD_NO_PAD
            .decode_vec(compact.trim_end_matches('=').as_bytes(), &mut bytes)
            .map_err(|_| DecodeError::new(DecodeErrorKind::InvalidBase64("Segment")))?;
        Self::from_bytes(first, len, bytes)
    }

    /// Standard padded base64 of the packed bits.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }

    /// First chunk of the range.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last chunk of the range (inclusive), or `None` for a zero-length map.
    pub fn last(&self) -> Option<u64> {
        (self.len > 0).then(|| self.first + self.len - 1)
    }

    /// Number of chunks the range covers (`bitmapsize`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the range covers no chunk.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed MSB-first bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn index(&self, chunk: u64) -> Option<(usize, u8)> {
        let offset = chunk.checked_sub(self.first)?;
        if offset >= self.len {
            return None;
        }
        let byte = usize::try_from(offset / 8).ok()?;
        Some((byte, 0x80 >> (offset % 8)))
    }

    /// True when `chunk` is in range and held.
    pub fn contains(&self, chunk: u64) -> bool {
        self.index(chunk)
            .is_some_and(|(byte, mask)| self.bytes[byte] & mask != 0)
    }

    /// Marks `chunk` held. Returns false (and changes nothing) when it is out of range.
    pub fn insert(&mut self, chunk: u64) -> bool {
        match self.index(chunk) {
            Some((byte, mask)) => {
                self.bytes[byte] |= mask;
                true
            }
            None => false,
        }
    }

    /// Marks `chunk` not held. Returns false when it is out of range.
    pub fn remove(&mut self, chunk: u64) -> bool {
        match self.index(chunk) {
            Some((byte, mask)) => {
                self.bytes[byte] &= !mask;
                true
            }
            None => false,
        }
    }

    /// Number of chunks held.
    pub fn count(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// True when every chunk of the range is held.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// True when at least one chunk of the inclusive range `from..=to` is held.
    pub fn any_in(&self, from: u64, to: u64) -> bool {
        let Some(last) = self.last() else {
            return false;
        };
        let lo = from.max(self.first);
        let hi = to.min(last);
        if lo > hi {
            return false;
        }
        let mut chunk = lo;
        while chunk <= hi {
            let offset = chunk - self.first;
            if offset % 8 == 0 && hi - chunk >= 7 {
                // A whole byte lies inside the range: test it at once.
                if let Ok(byte) = usize::try_from(offset / 8)
                    && self.bytes[byte] != 0
                {
                    return true;
                }
                chunk += 8;
            } else {
                if self.contains(chunk) {
                    return true;
                }
                chunk += 1;
            }
        }
        false
    }

    /// The union of two maps, covering the smallest range that holds both.
    pub fn union(&self, other: &Self) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let first = self.first.min(other.first);
        let end = (self.first + self.len).max(other.first + other.len);
        let mut out = Self::new(first, end - first);
        out.or_from(self);
        out.or_from(other);
        out
    }

    /// ORs `other` into `self` where the ranges overlap; chunks of `other` outside
    /// `self`'s range are ignored.
    pub fn or_from(&mut self, other: &Self) {
        if other.first >= self.first && (other.first - self.first) % 8 == 0 {
            // Byte-aligned: OR whole bytes.
            let start = usize::try_from((other.first - self.first) / 8).unwrap_or(usize::MAX);
            for (dst, src) in self.bytes.iter_mut().skip(start).zip(&other.bytes) {
                *dst |= *src;
            }
            self.clear_padding();
        } else {
            for chunk in other.iter() {
                self.insert(chunk);
            }
        }
    }

    /// The held chunks in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let first = self.first;
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(move |(i, b)| {
                (0..8u64).filter_map(move |bit| {
                    (b & (0x80 >> bit) != 0).then_some(first + i as u64 * 8 + bit)
                })
            })
    }

    fn clear_padding(&mut self) {
        let rem = self.len % 8;
        if rem != 0
            && let Some(last) = self.bytes.last_mut()
        {
            *last &= 0xffu8 << (8 - rem);
        }
    }
}

/// Bookkeeping charged per stored segment on top of its bitmap bytes, so that many tiny
/// segments cost what they really take in memory.
pub const SEGMENT_OVERHEAD_BYTES: usize = 48;

impl ChunkMap {
    /// One past the last chunk of the range.
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.len)
    }

    /// The part of the map inside `from..end` (half open), as a map of its own.
    pub fn slice(&self, from: u64, end: u64) -> Self {
        let lo = from.max(self.first);
        let hi = end.min(self.end());
        if lo >= hi {
            return Self::new(lo, 0);
        }
        let mut out = Self::new(lo, hi - lo);
        out.or_from_range(self, lo, hi);
        out
    }

    /// ORs the chunks of `other` that lie in `lo..hi` into `self`.
    fn or_from_range(&mut self, other: &Self, lo: u64, hi: u64) {
        for chunk in other.iter().skip_while(|c| *c < lo).take_while(|c| *c < hi) {
            self.insert(chunk);
        }
    }

    /// Heap bytes the bitmap holds.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// What a peer reported holding of one clip: disjoint chunk maps in increasing order.
///
/// A new report replaces exactly the bits its range covers and keeps the rest. Ranges that
/// touch are merged; ranges with a gap between them stay apart, so the memory a set takes
/// is what the peer reported, never the span between two far-apart segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet {
    segments: Vec<ChunkMap>,
}

impl ChunkSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored segments, in increasing order.
    pub fn segments(&self) -> &[ChunkMap] {
        &self.segments
    }

    /// True when no segment is stored.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The set with `map` applied: the bits of `map`'s range replaced by `map`'s bits.
    /// Nothing is changed in `self`, so a caller can check the cost before committing.
    pub fn with(&self, map: &ChunkMap) -> Self {
        if map.is_empty() {
            return self.clone();
        }
        let (lo, hi) = (map.first(), map.end());
        let mut segments: Vec<ChunkMap> = Vec::with_capacity(self.segments.len() + 2);
        for segment in &self.segments {
            if segment.end() <= lo || segment.first() >= hi {
                segments.push(segment.clone());
                continue;
            }
            if segment.first() < lo {
                segments.push(segment.slice(segment.first(), lo));
            }
            if segment.end() > hi {
                segments.push(segment.slice(hi, segment.end()));
            }
        }
        segments.push(map.clone());
        segments.sort_by_key(ChunkMap::first);
        let mut merged: Vec<ChunkMap> = Vec::with_capacity(segments.len());
        for segment in segments {
            match merged.last_mut() {
                // Adjacent: the union spans exactly the two ranges, no gap.
                Some(last) if last.end() == segment.first() => *last = last.union(&segment),
                _ => merged.push(segment),
            }
        }
        Self { segments: merged }
    }

    /// Memory charged for the set: bitmap bytes plus [`SEGMENT_OVERHEAD_BYTES`] a segment.
    pub fn charged_bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.heap_bytes() + SEGMENT_OVERHEAD_BYTES)
            .sum()
    }

    /// Chunks held over every segment.
    pub fn count(&self) -> u64 {
        self.segments.iter().map(ChunkMap::count).sum()
    }

    /// Chunks the segments cover, held or not.
    pub fn covered(&self) -> u64 {
        self.segments.iter().map(ChunkMap::len).sum()
    }

    /// True when a chunk of the inclusive range `from..=to` is held.
    pub fn any_in(&self, from: u64, to: u64) -> bool {
        self.segments.iter().any(|s| s.any_in(from, to))
    }

    /// True when `chunk` is held.
    pub fn contains(&self, chunk: u64) -> bool {
        self.segments.iter().any(|s| s.contains(chunk))
    }

    /// Lowest chunk covered, if any.
    pub fn first(&self) -> Option<u64> {
        self.segments.first().map(ChunkMap::first)
    }

    /// Highest chunk covered, if any.
    pub fn last(&self) -> Option<u64> {
        self.segments.last().and_then(ChunkMap::last)
    }

    /// Held chunks in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments.iter().flat_map(ChunkMap::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_worked_example() {
        // Chunks 0..=15 and 20..=24 of 0..=24 held: FF FF 0F 80 = "//8PgA==".
        let map = ChunkMap::from_base64(0, 25, "//8PgA==", 1 << 20).expect("decodes");
        assert_eq!(map.as_bytes(), &[0xff, 0xff, 0x0f, 0x80]);
        assert!(map.contains(15) && !map.contains(16) && !map.contains(19) && map.contains(20));
        assert_eq!(map.count(), 21);
        assert_eq!(map.to_base64(), "//8PgA==");
        let held: Vec<u64> = map.iter().collect();
        assert_eq!(held.len(), 21);
        assert_eq!(held[16], 20);
    }

    #[test]
    fn lenient_base64() {
        let a = ChunkMap::from_base64(0, 25, " //8P\ngA ", 1 << 20).expect("no padding");
        let b = ChunkMap::from_base64(0, 25, "//8PgA===", 1 << 20).expect("extra padding");
        assert_eq!(a, b);
        assert!(ChunkMap::from_base64(0, 25, "!!!!", 1 << 20).is_err());
        assert!(ChunkMap::from_base64(0, 25, "//8P", 1 << 20).is_err());
        assert!(ChunkMap::from_base64(0, 1 << 21, "", 1 << 20).is_err());
    }

    #[test]
    fn padding_bits_cleared() {
        let map = ChunkMap::from_bytes(10, 3, vec![0xff]).expect("one byte");
        assert_eq!(map.as_bytes(), &[0xe0]);
        assert_eq!(map.count(), 3);
        assert!(map.is_full());
        assert_eq!(ChunkMap::full(0, 9).as_bytes(), &[0xff, 0x80]);
    }

    #[test]
    fn union_and_any_in() {
        let mut a = ChunkMap::new(0, 16);
        a.insert(3);
        let mut b = ChunkMap::new(13, 10);
        b.insert(20);
        let u = a.union(&b);
        assert_eq!((u.first(), u.last()), (0, Some(22)));
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![3, 20]);
        assert!(u.any_in(0, 100));
        assert!(!u.any_in(4, 19));
        assert!(u.any_in(19, 20));
        assert!(!u.any_in(23, 40));
        assert!(!a.insert(16));
    }

    #[test]
    fn million_bits() {
        let mut map = ChunkMap::new(0, 1 << 20);
        for c in (0..1u64 << 20).step_by(3) {
            map.insert(c);
        }
        let text = map.to_base64();
        let back = ChunkMap::from_base64(0, 1 << 20, &text, 1 << 20).expect("round trip");
        assert_eq!(back, map);
        assert_eq!(back.count(), map.iter().count() as u64);
    }

    fn set_of(held: &[(u64, u64, &[u64])]) -> ChunkSet {
        held.iter()
            .fold(ChunkSet::new(), |set, (first, len, chunks)| {
                let mut map = ChunkMap::new(*first, *len);
                for c in *chunks {
                    map.insert(*c);
                }
                set.with(&map)
            })
    }

    #[test]
    fn chunk_set_replaces_covered_bits_and_keeps_the_rest() {
        let set = set_of(&[(0, 16, &[1, 2, 3]), (0, 16, &[5])]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![5]);
        let set = set_of(&[(0, 16, &[5]), (21, 5, &[22, 25])]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![5, 22, 25]);
        assert_eq!(set.segments().len(), 2);
        let set = set.with(&{
            let mut m = ChunkMap::new(4, 20);
            m.insert(10);
            m
        });
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![10, 25]);
        // 0..4, 4..24 and 24..26 touch: merged into one segment.
        assert_eq!(set.segments().len(), 1);
        assert!(set.any_in(9, 11));
        assert!(!set.any_in(11, 24));
    }

    #[test]
    fn far_apart_segments_are_charged_for_their_bits_only() {
        let set = set_of(&[
            (0, 8, &[1]),
            (1 << 40, 8, &[(1 << 40) + 1]),
            (1 << 50, 8, &[]),
        ]);
        assert_eq!(set.segments().len(), 3);
        assert_eq!(set.charged_bytes(), 3 * (1 + SEGMENT_OVERHEAD_BYTES));
        assert_eq!(set.count(), 2);
        assert_eq!(set.first(), Some(0));
    }

    #[test]
    fn slice_keeps_the_bits_of_its_range() {
        let mut map = ChunkMap::new(3, 20);
        for c in [3, 4, 10, 22] {
            map.insert(c);
        }
        let part = map.slice(4, 11);
        assert_eq!((part.first(), part.len()), (4, 7));
        assert_eq!(part.iter().collect::<Vec<_>>(), vec![4, 10]);
        assert!(map.slice(30, 40).is_empty());
    }
}
