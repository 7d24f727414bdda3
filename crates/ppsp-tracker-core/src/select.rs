//! Peer selection for LEECH JOIN and FIND.
//!
//! The cost of one selection grows with the number of peers wanted, not with the swarm:
//! members live in a vector, so a uniform sample is drawn by random indices with rejection
//! of repeats. Filters (a chunk scope, or the NAT preference of a requester that cannot
//! traverse NATs) probe a bounded number of random members, a fixed multiple of the peers
//! wanted, and keep the ones that pass.
//!
//! The trade-off: when qualifying members are rare (fewer than about one in
//! `PROBE_FACTOR × wanted`), the probes may miss them. For the NAT preference that only
//! means fewer reachable peers than possible, topped up with others. For a chunk scope it
//! would turn into a wrong 404, so when the probes find nobody the selection falls back to
//! a scan from a random position that stops as soon as enough peers are found. Only that
//! case (a chunk almost nobody holds, in a large swarm) costs time proportional to the
//! swarm.

use std::collections::HashSet;

use rand::Rng;
use rand::rngs::StdRng;

use ppsp_proto::{Clip, MediaType, PeerId};

use crate::swarm::{Member, Swarm};

/// Members probed per peer wanted when a filter applies.
const PROBE_FACTOR: usize = 8;
/// Extra probes so small requests still look at a fair number of members.
const PROBE_SLACK: usize = 64;

/// The chunks a FIND asks for: one clip, an optional media type, inclusive ranges.
#[derive(Clone, Debug)]
pub(crate) struct ChunkScope {
    clip: String,
    media: Option<MediaType>,
    ranges: Vec<(u64, u64)>,
}

impl ChunkScope {
    /// Everything from `clip`'s first segment onward: the start point of a JOIN. `None`
    /// when the clip names no chunk.
    pub(crate) fn from_start(clip: &Clip) -> Option<Self> {
        let segments = clip.segments.as_ref()?;
        let from = segments.segments.iter().filter_map(|s| s.from).min()?;
        Some(Self {
            clip: clip.name.clone(),
            media: Some(segments.media),
            ranges: vec![(from, u64::MAX)],
        })
    }

    /// The scope of a FIND `Clip`. Segments give ranges (an open `to` runs to the end); a
    /// lone `ChunkSegmentIndex` is one chunk; a clip with neither means any chunk of it.
    pub(crate) fn from_clip(clip: &Clip) -> Self {
        let media = clip.segments.as_ref().map(|s| s.media).or(clip.kind);
        let mut ranges: Vec<(u64, u64)> = clip
            .segments
            .iter()
            .flat_map(|s| &s.segments)
            .map(|segment| {
                let from = segment.from.unwrap_or(0);
                (from, segment.to.unwrap_or(u64::MAX).max(from))
            })
            .collect();
        if ranges.is_empty() {
            ranges.push(match clip.chunk_segment_index {
                Some(index) => (index, index),
                None => (0, u64::MAX),
            });
        }
        Self {
            clip: clip.name.clone(),
            media,
            ranges,
        }
    }

    /// Seeds always qualify; others when a chunk map holds at least one requested chunk.
    pub(crate) fn admits(&self, member: &Member) -> bool {
        member.mode.is_seed()
            || member.chunks.iter().any(|c| {
                c.clip == self.clip
                    && self.media.is_none_or(|m| m == c.media)
                    && self.ranges.iter().any(|&(from, to)| c.map.any_in(from, to))
            })
    }
}

/// What a selection asks for.
pub(crate) struct Criteria<'a> {
    pub(crate) requester: &'a PeerId,
    pub(crate) wanted: usize,
    pub(crate) prefer_reachable: bool,
    /// Only members holding one of these chunks qualify (chunk-scoped FIND).
    pub(crate) scope: Option<&'a ChunkScope>,
    /// Members holding one of these chunks come first (JOIN with a start point).
    pub(crate) prefer: Option<&'a ChunkScope>,
}

/// `count` distinct indices below `n`, in random order.
fn sample_distinct(n: usize, count: usize, rng: &mut StdRng) -> Vec<usize> {
    let count = count.min(n);
    if count == 0 {
        return Vec::new();
    }
    if count * 2 >= n {
        // Dense: a partial Fisher-Yates shuffle. `n` is at most twice `count` here, and
        // `count` is bounded by the probe budget.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..count {
            let j = rng.random_range(i..n);
            all.swap(i, j);
        }
        all.truncate(count);
        return all;
    }
    // Sparse: rejection sampling; fewer than two draws per index on average.
    let mut out = Vec::with_capacity(count);
    if count <= 64 {
        while out.len() < count {
            let i = rng.random_range(0..n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
    } else {
        let mut seen = HashSet::with_capacity(count * 2);
        while out.len() < count {
            let i = rng.random_range(0..n);
            if seen.insert(i) {
                out.push(i);
            }
        }
    }
    out
}

/// Chooses up to `criteria.wanted` members (indices into `swarm.members`), best first:
/// LIVESEEDs of a live swarm, then peers meeting the preferences (reachable when the
/// requester needs that, holding chunks from its start point), then the others; each
/// group a uniform random sample. Never the requester.
pub(crate) fn select(swarm: &Swarm, rng: &mut StdRng, criteria: &Criteria<'_>) -> Vec<usize> {
    let members = &swarm.members;
    let n = members.len();
    let wanted = criteria.wanted.min(n);
    let mut out: Vec<usize> = Vec::with_capacity(wanted);
    if wanted == 0 {
        return out;
    }
    if swarm.is_live() {
        for id in &swarm.live_seeds {
            if out.len() == wanted {
                break;
            }
            if id != criteria.requester
                && let Some(position) = swarm.position(id)
            {
                out.push(position);
            }
        }
    }
    let preset = out.len();
    let remaining = wanted - preset;
    if remaining == 0 {
        return out;
    }
    let filtered =
        criteria.scope.is_some() || criteria.prefer_reachable || criteria.prefer.is_some();
    let probes = if filtered {
        remaining
            .saturating_mul(PROBE_FACTOR)
            .saturating_add(PROBE_SLACK)
    } else {
        // The requester and the peers already chosen may be drawn; draw enough to skip them.
        remaining + preset + 1
    };
    let probes = probes.min(n);

    // Members that qualify but miss a preference (reachability, start point), kept to top
    // up the answer when too few preferred ones turn up.
    let mut unreachable: Vec<usize> = Vec::new();
    let consider = |index: usize, out: &mut Vec<usize>, unreachable: &mut Vec<usize>| {
        let Some(member) = members.get(index) else {
            return;
        };
        if &member.peer_id == criteria.requester || out[..preset].contains(&index) {
            return;
        }
        if criteria.scope.is_some_and(|scope| !scope.admits(member)) {
            return;
        }
        let preferred = (!criteria.prefer_reachable || member.contact.reachable())
            && criteria.prefer.is_none_or(|prefer| prefer.admits(member));
        if !preferred {
            if unreachable.len() < remaining {
                unreachable.push(index);
            }
            return;
        }
        out.push(index);
    };

    for index in sample_distinct(n, probes, rng) {
        if out.len() == wanted {
            break;
        }
        consider(index, &mut out, &mut unreachable);
    }
    if criteria.scope.is_some() && out.len() == preset && unreachable.is_empty() && probes < n {
        // Rare chunks: the probes found nobody. Scan the rest from a random position so the
        // answer is not a wrong 404.
        let start = rng.random_range(0..n);
        for offset in 0..n {
            if out.len() == wanted || (out.len() + unreachable.len()) >= wanted {
                break;
            }
            consider((start + offset) % n, &mut out, &mut unreachable);
        }
    }
    for index in unreachable {
        if out.len() == wanted {
            break;
        }
        if !out.contains(&index) {
            out.push(index);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        for (n, k) in [(10, 10), (10, 3), (1000, 50), (1000, 600), (5, 0), (0, 4)] {
            let s = sample_distinct(n, k, &mut rng);
            assert_eq!(s.len(), k.min(n));
            let set: HashSet<_> = s.iter().collect();
            assert_eq!(set.len(), s.len());
            assert!(s.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn scope_from_clip_variants() {
        let clip = Clip {
            name: "c".into(),
            kind: None,
            chunk_segment_index: Some(9),
            segments: None,
        };
        let scope = ChunkScope::from_clip(&clip);
        assert_eq!(scope.ranges, vec![(9, 9)]);
        let any = ChunkScope::from_clip(&Clip {
            chunk_segment_index: None,
            ..clip
        });
        assert_eq!(any.ranges, vec![(0, u64::MAX)]);
    }
}
