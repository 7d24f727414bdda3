//! Feeds arbitrary ranges and base64 text to the chunk map decoder, then exercises the
//! operations the tracker and the peer apply to decoded maps.
//!
//! Input layout: 8 bytes of `first`, 3 bytes of `len` (so lengths reach past the bit limit),
//! one byte splitting the rest into two base64 texts. Invariants: nothing panics; a decoded
//! map re-encodes to base64 that decodes to the same map; the held chunks are in range, in
//! increasing order and counted by `count`; `any_in` agrees with `iter`; the union of two
//! decoded maps holds exactly the chunks of either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ppsp_proto::{ChunkMap, Limits};

/// Reads `first`, `len` and the two texts; `None` when the input is too short.
fn split(data: &[u8]) -> Option<(u64, u64, String, String)> {
    let first = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    let len_bytes = data.get(8..11)?;
    let len =
        u64::from(len_bytes[0]) << 16 | u64::from(len_bytes[1]) << 8 | u64::from(len_bytes[2]);
    let cut = usize::from(*data.get(11)?);
    let rest = data.get(12..)?;
    let cut = cut.min(rest.len());
    let (a, b) = rest.split_at(cut);
    Some((
        first,
        len,
        String::from_utf8_lossy(a).into_owned(),
        String::from_utf8_lossy(b).into_owned(),
    ))
}

/// The checks that hold for any one decoded map.
fn check(map: &ChunkMap) {
    let again = ChunkMap::from_base64(map.first(), map.len(), &map.to_base64(), u64::MAX)
        .expect("a map's own base64 decodes");
    assert_eq!(&again, map, "base64 round trip");
    let held: Vec<u64> = map.iter().collect();
    assert_eq!(held.len() as u64, map.count(), "iter and count agree");
    assert!(held.windows(2).all(|w| w[0] < w[1]), "iter is increasing");
    assert!(
        held.iter().all(|&chunk| map.contains(chunk)),
        "iter yields held chunks"
    );
    if let (Some(&lowest), Some(last)) = (held.first(), map.last()) {
        assert!(lowest >= map.first() && held.last().is_some_and(|&c| c <= last));
        assert!(map.any_in(map.first(), last));
        assert!(map.any_in(lowest, lowest));
        if lowest > map.first() {
            assert!(
                !map.any_in(map.first(), lowest - 1),
                "nothing before the lowest"
            );
        }
    } else {
        assert!(map.last().is_none_or(|last| !map.any_in(map.first(), last)));
    }
    assert_eq!(map.is_full(), map.count() == map.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((first, len, text_a, text_b)) = split(data) else {
        return;
    };
    let max_bits = Limits::default().max_bitmap_bits;
    let decoded_a = ChunkMap::from_base64(first, len, &text_a, max_bits);
    if let Ok(map) = &decoded_a {
        check(map);
    }
    // The second map starts a data-chosen distance after the first, so unions cover
    // overlapping, adjacent, aligned and unaligned ranges.
    let offset = u64::from(data.get(12).copied().unwrap_or(0));
    let Some(first_b) = first.checked_add(offset) else {
        return;
    };
    let Ok(map_b) = ChunkMap::from_base64(first_b, len / 2, &text_b, max_bits) else {
        return;
    };
    check(&map_b);
    let Ok(map_a) = decoded_a else {
        return;
    };
    let union = map_a.union(&map_b);
    check(&union);
    let mut expected: Vec<u64> = map_a.iter().chain(map_b.iter()).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(
        union.iter().collect::<Vec<_>>(),
        expected,
        "union holds either's chunks"
    );
});
