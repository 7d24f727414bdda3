//! Protocol rules that a store applies inside its atomic operations: which peers qualify
//! for a list, and which swarm actions of an RFC 7846 CONNECT are valid. Pure functions of
//! their inputs, so every store backend applies the same rules.

use ppsp_proto::{Clip, MediaType, PeerMode, SwarmAction, SwarmActionKind, SwarmId};

use crate::TrackerError;
use crate::store::ClipChunks;

/// The chunks a FIND asks for: one clip, an optional media type, inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkScope {
    clip: String,
    media: Option<MediaType>,
    ranges: Vec<(u64, u64)>,
}

impl ChunkScope {
    /// Everything from `clip`'s first segment onward: the start point of a JOIN. `None`
    /// when the clip names no chunk.
    pub fn from_start(clip: &Clip) -> Option<Self> {
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
    pub fn from_clip(clip: &Clip) -> Self {
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
    pub fn admits(&self, mode: PeerMode, clips: &[ClipChunks]) -> bool {
        mode.is_seed()
            || clips.iter().any(|c| {
                *c.clip == *self.clip
                    && self.media.is_none_or(|m| m == c.media)
                    && self
                        .ranges
                        .iter()
                        .any(|&(from, to)| c.chunks.any_in(from, to))
            })
    }
}

/// Whether a list should favour peers others can connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// No preference.
    Any,
    /// Reachable peers first (the requester cannot traverse NATs).
    Prefer,
    /// Decide from what is known of the requester: behind a NAT with no STUN-like help
    /// means [`Reachability::Prefer`].
    AsRequesterNeeds,
}

/// What a peer list is asked to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criteria {
    /// Peers wanted; 0 means no list.
    pub wanted: usize,
    /// NAT preference.
    pub reachability: Reachability,
    /// Only members holding one of these chunks qualify (chunk-scoped FIND).
    pub scope: Option<ChunkScope>,
    /// Members holding one of these chunks come first (JOIN with a start point).
    pub prefer: Option<ChunkScope>,
}

impl Criteria {
    /// No list at all.
    pub fn none() -> Self {
        Self {
            wanted: 0,
            reachability: Reachability::Any,
            scope: None,
            prefer: None,
        }
    }

    /// True when a list was asked for and it may not come back empty (a chunk-scoped FIND
    /// that found nobody is 404).
    pub fn empty_is_not_found(&self) -> bool {
        self.scope.is_some() && self.wanted > 0
    }
}

/// Which actions of an RFC 7846 CONNECT are valid, by index into the request's list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionPlan {
    /// LEAVEs to apply first.
    pub leaves: Vec<usize>,
    /// JOINs to apply after the LEAVEs, in request order.
    pub joins: Vec<usize>,
}

impl ActionPlan {
    /// True when at least one action is valid.
    pub fn any_valid(&self) -> bool {
        !self.leaves.is_empty() || !self.joins.is_empty()
    }
}

/// Applies RFC 7846 Table 6 to a CONNECT's swarm actions. `current` is the peer's swarms
/// and modes (`None` when it is not registered). LEAVEs go first so a channel switch works
/// in either order; a JOIN is invalid when the peer is already in the swarm, over
/// `max_swarms`, or a LEECH already leeching elsewhere.
///
/// # Errors
/// [`TrackerError::NoValidSwarmAction`] from START when any action is a LEAVE.
pub fn plan_swarm_actions(
    current: Option<&[(SwarmId, PeerMode)]>,
    actions: &[SwarmAction],
    max_swarms: usize,
) -> Result<ActionPlan, TrackerError> {
    let Some(current) = current else {
        if actions.iter().any(|a| a.action == SwarmActionKind::Leave) {
            return Err(TrackerError::NoValidSwarmAction);
        }
        return Ok(plan_joins(Vec::new(), actions, max_swarms, Vec::new()));
    };
    let mut after: Vec<(SwarmId, PeerMode)> = current.to_vec();
    let mut leaves = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        if action.action == SwarmActionKind::Leave
            && let Some(position) = after.iter().position(|(s, _)| *s == action.swarm_id)
        {
            after.swap_remove(position);
            leaves.push(index);
        }
    }
    Ok(plan_joins(after, actions, max_swarms, leaves))
}

fn plan_joins(
    mut after: Vec<(SwarmId, PeerMode)>,
    actions: &[SwarmAction],
    max_swarms: usize,
    leaves: Vec<usize>,
) -> ActionPlan {
    let mut joins = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let leeching = after.iter().any(|(_, m)| *m == PeerMode::Leech);
        if action.action != SwarmActionKind::Join
            || after.iter().any(|(s, _)| *s == action.swarm_id)
            || after.len() >= max_swarms
            || (action.mode == PeerMode::Leech && leeching)
        {
            continue;
        }
        after.push((action.swarm_id.clone(), action.mode));
        joins.push(index);
    }
    ActionPlan { leaves, joins }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(swarm: &str, action: SwarmActionKind, mode: PeerMode) -> SwarmAction {
        SwarmAction {
            swarm_id: SwarmId::new(swarm).expect("id"),
            action,
            mode,
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
        assert_eq!(ChunkScope::from_clip(&clip).ranges, vec![(9, 9)]);
        let any = ChunkScope::from_clip(&Clip {
            chunk_segment_index: None,
            ..clip
        });
        assert_eq!(any.ranges, vec![(0, u64::MAX)]);
    }

    #[test]
    fn table6_plans() {
        use SwarmActionKind::{Join, Leave};
        let from_start = plan_swarm_actions(None, &[action("a", Leave, PeerMode::Seed)], 8);
        assert_eq!(from_start, Err(TrackerError::NoValidSwarmAction));
        let two_leeches = [
            action("a", Join, PeerMode::Leech),
            action("b", Join, PeerMode::Leech),
            action("a", Join, PeerMode::Seed),
        ];
        let plan = plan_swarm_actions(None, &two_leeches, 8).expect("plan");
        assert_eq!(plan.joins, vec![0]);
        let current = [(SwarmId::new("a").expect("id"), PeerMode::Leech)];
        let switch = [
            action("b", Join, PeerMode::Leech),
            action("a", Leave, PeerMode::Leech),
        ];
        let plan = plan_swarm_actions(Some(&current), &switch, 8).expect("plan");
        assert_eq!((plan.leaves, plan.joins), (vec![1], vec![0]));
        let full = plan_swarm_actions(Some(&current), &[action("c", Join, PeerMode::Seed)], 1);
        assert!(!full.expect("plan").any_valid());
    }
}
