//! Chunk availability bitmaps.
//!
//! A [`ChunkMap`] covers an inclusive chunk range starting at [`ChunkMap::first`]. Bit `i`
//! stands for chunk `first + i` and is packed MSB-first, as in a BitTorrent bitfield: chunk
//! `first` is bit 7 of byte 0 (draft digest §5.5). Pad bits past the end are always zero.

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
        let compact: String = text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .trim_end_matches('=')
            .to_owned();
        let bytes = STANDARD_NO_PAD
            .decode(compact.as_bytes())
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
}
