//! Byte scans eight bytes at a time, for the checks every request body and identifier goes
//! through: a cheap test of a whole word rules out most of the input, and only the words it
//! cannot clear are looked at byte by byte.

/// Every byte of a word set to `byte`.
pub(crate) const fn repeat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of every byte of a word.
pub(crate) const HIGH_BITS: u64 = repeat(0x80);

/// True when `refused(at, byte)` holds for some byte of `bytes` (`at` is its index).
/// `suspect` is asked first of each eight-byte word (native byte order) and must be true of
/// every word holding a refused byte; only those words, and the bytes after the last whole
/// word, are passed to `refused`.
pub(crate) fn any_refused(
    bytes: &[u8],
    suspect: impl Fn(u64) -> bool,
    refused: impl Fn(usize, u8) -> bool,
) -> bool {
    let words = bytes.chunks_exact(8);
    let tail_start = bytes.len() - words.remainder().len();
    let in_words = words.enumerate().any(|(index, word)| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        suspect(u64::from_ne_bytes(eight))
            && word
                .iter()
                .enumerate()
                .any(|(i, &byte)| refused(index * 8 + i, byte))
    });
    in_words
        || bytes[tail_start..]
            .iter()
            .enumerate()
            .any(|(i, &byte)| refused(tail_start + i, byte))
}
