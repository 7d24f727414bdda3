//! Chunk picking suited to streaming.
//!
//! The order in which a leech asks for missing chunks decides both how soon playback can
//! start and how well the swarm shares:
//!
//! 1. **Playback window first.** Chunks from the playback position up to `window` chunks
//!    ahead come first, in playback order, so a player never waits on a chunk that the
//!    picker put off.
//! 2. **Rarest first.** Every other chunk is ordered by how many known peers hold it (from
//!    their chunk maps), fewest first, so rare chunks get copied before their only holder
//!    leaves and a seed's upload spreads over distinct chunks. Ties are broken by a
//!    per-peer pseudo-random key, so different leeches start on different chunks.
//! 3. **Endgame.** When every missing chunk that some peer holds is already requested, the
//!    outstanding ones are requested again from another peer (up to a limit per chunk), and
//!    the first answer wins, so one slow peer cannot stall the last chunks.
//!
//! Chunks no known peer holds are left out: nobody could serve them.

/// One missing chunk as the picker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Chunk index.
    pub index: u64,
    /// How many usable peers hold it.
    pub availability: u32,
    /// How many requests for it are outstanding.
    pub in_flight: u32,
}

/// Orders chunk requests; see the module documentation.
#[derive(Clone, Debug)]
pub struct Picker {
    window: u64,
    max_requests_per_chunk: u32,
    salt: u64,
}

/// splitmix64: a cheap, well-mixed hash for tie-breaking.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Picker {
    /// A picker with a playback window of `window` chunks, at most
    /// `max_requests_per_chunk` concurrent requests per chunk in the endgame, and a
    /// tie-breaking `salt` (random per peer).
    pub fn new(window: u64, max_requests_per_chunk: u32, salt: u64) -> Self {
        Self {
            window,
            max_requests_per_chunk: max_requests_per_chunk.max(1),
            salt,
        }
    }

    /// The playback window length in chunks.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Orders the missing chunks for requesting.
    ///
    /// Returns chunk indexes best first. Outside the endgame the list holds only chunks
    /// with no outstanding request; in the endgame (no such chunk left) it holds the
    /// outstanding chunks that may take one more request. `position` is the playback
    /// position, when something is playing.
    pub fn order(&self, missing: &[Candidate], position: Option<u64>) -> Vec<u64> {
        let in_window =
            |c: &Candidate| position.is_some_and(|p| c.index >= p && c.index - p < self.window);
        let fresh: Vec<&Candidate> = missing
            .iter()
            .filter(|c| c.availability > 0 && c.in_flight == 0)
            .collect();
        let pool: Vec<&Candidate> = if fresh.is_empty() {
            missing
                .iter()
                // Another holder must exist for a duplicate to help.
                .filter(|c| {
                    c.availability > c.in_flight && c.in_flight < self.max_requests_per_chunk
                })
                .collect()
        } else {
            fresh
        };
        let mut urgent: Vec<u64> = pool
            .iter()
            .filter(|c| in_window(c))
            .map(|c| c.index)
            .collect();
        urgent.sort_unstable();
        let mut rest: Vec<(u32, u64, u64)> = pool
            .iter()
            .filter(|c| !in_window(c))
            .map(|c| (c.availability, mix(c.index ^ self.salt), c.index))
            .collect();
        rest.sort_unstable();
        urgent.extend(rest.into_iter().map(|(_, _, index)| index));
        urgent
    }

    /// True when `missing` is in the endgame: every chunk some peer holds is requested.
    pub fn is_endgame(missing: &[Candidate]) -> bool {
        !missing.is_empty()
            && missing
                .iter()
                .all(|c| c.availability == 0 || c.in_flight > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: u64, availability: u32, in_flight: u32) -> Candidate {
        Candidate {
            index,
            availability,
            in_flight,
        }
    }

    #[test]
    fn playback_window_first_in_order() {
        let picker = Picker::new(3, 2, 1);
        let missing: Vec<Candidate> = (0..10).map(|i| cand(i, 5, 0)).collect();
        let order = picker.order(&missing, Some(4));
        assert_eq!(&order[..3], &[4, 5, 6]);
        assert_eq!(order.len(), 10);
    }

    #[test]
    fn rarest_first_outside_window() {
        let picker = Picker::new(2, 2, 7);
        let missing = vec![
            cand(0, 4, 0),
            cand(1, 1, 0),
            cand(2, 3, 0),
            cand(3, 2, 0),
            cand(4, 0, 0),
            cand(5, 9, 0),
        ];
        assert_eq!(picker.order(&missing, None), vec![1, 3, 2, 0, 5]);
        // With a playback position the window leads, then rarity.
        assert_eq!(picker.order(&missing, Some(2)), vec![2, 3, 1, 0, 5]);
    }

    #[test]
    fn ties_broken_differently_per_salt() {
        let missing: Vec<Candidate> = (0..64).map(|i| cand(i, 1, 0)).collect();
        let a = Picker::new(0, 2, 1).order(&missing, None);
        let b = Picker::new(0, 2, 2).order(&missing, None);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b, "different leeches start on different chunks");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn in_flight_chunks_skipped_until_endgame() {
        let picker = Picker::new(0, 2, 3);
        let missing = vec![cand(0, 2, 1), cand(1, 2, 0), cand(2, 0, 0)];
        assert!(!Picker::is_endgame(&missing));
        assert_eq!(picker.order(&missing, None), vec![1]);
    }

    #[test]
    fn endgame_duplicates_outstanding_chunks() {
        let picker = Picker::new(0, 2, 3);
        // Everything available is requested: duplicate those with a second holder and
        // room under the per-chunk limit.
        let missing = vec![cand(0, 3, 1), cand(1, 1, 1), cand(2, 3, 2), cand(3, 0, 0)];
        assert!(Picker::is_endgame(&missing));
        assert_eq!(picker.order(&missing, None), vec![0]);
    }
}
