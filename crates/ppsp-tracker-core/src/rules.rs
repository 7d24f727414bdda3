//! Protocol rules that a store applies inside its atomic operations: which request may act
//! on which session, which peers qualify for a list, how a reported chunk map is merged,
//! and which swarm actions of an RFC 7846 CONNECT are valid. Pure functions of their
//! inputs, so every store backend applies the same rules.

use std::net::IpAddr;

use ppsp_proto::{
    ChunkMap, ChunkMapReport, ChunkSet, Clip, Format, MediaType, PeerMode, SwarmAction,
    SwarmActionKind, SwarmId,
};

use crate::store::{ClipChunks, Proof, Registration, SessionCheck};
use crate::{Cap, Limits, TrackerError};

/// What the session rules look at in a live session, whichever store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveSession {
    /// The dialect it registered in.
    pub format: Format,
    /// Its generation (named by its AuthTokens).
    pub generation: u32,
    /// The IP its registering request came from.
    pub observed_ip: IpAddr,
}

/// Whether a request tied to a session by `check` may act on `live`, the live session of
/// its PeerID (`None`: there is none).
///
/// # Errors
/// [`TrackerError::BadToken`] (XML) or [`TrackerError::NotRegistered`] (JSON) when no live
/// session matches; [`TrackerError::DialectMismatch`] for a JSON request to an XML session;
/// [`TrackerError::SessionOwned`] for an unproven JSON request from another IP.
pub fn check_session(check: SessionCheck, live: Option<&LiveSession>) -> Result<(), TrackerError> {
    match (check, live) {
        (SessionCheck::Generation(generation), Some(session))
            if session.format == Format::Xml && session.generation == generation =>
        {
            Ok(())
        }
        (SessionCheck::Generation(_), _) => Err(TrackerError::BadToken),
        (SessionCheck::Json { .. }, None) => Err(TrackerError::NotRegistered),
        (SessionCheck::Json { .. }, Some(session)) if session.format != Format::Json => {
            Err(TrackerError::DialectMismatch)
        }
        (SessionCheck::Json { source: Some(ip) }, Some(session)) if session.observed_ip != ip => {
            Err(TrackerError::SessionOwned)
        }
        (SessionCheck::Json { .. }, Some(_)) => Ok(()),
    }
}

/// Whether `registration` may replace `live`, the live session of its PeerID (a new
/// CONNECT replaces a session as if it had sent DISCONNECT; see [`Proof`]).
///
/// # Errors
/// [`TrackerError::DialectMismatch`] when the live session speaks the other dialect;
/// [`TrackerError::SessionOwned`] when the proof does not cover it.
pub fn may_replace(
    live: &LiveSession,
    registration: &Registration<'_>,
) -> Result<(), TrackerError> {
    if live.format != registration.format {
        return Err(TrackerError::DialectMismatch);
    }
    let owner = match registration.proof {
        Proof::Credentials => true,
        Proof::Token(generation) => generation == live.generation,
        Proof::SourceAddress => live.observed_ip == registration.observed.ip(),
    };
    if owner {
        Ok(())
    } else {
        Err(TrackerError::SessionOwned)
    }
}

/// Merges one reported map into a member's clips: into the clip of the same name and media
/// type, else as a new clip, dropping the oldest past `max_clips`. An empty map changes
/// nothing.
pub fn merge_chunk_map(
    clips: &mut Vec<ClipChunks>,
    name: &str,
    media: MediaType,
    map: &ChunkMap,
    max_clips: usize,
) {
    if map.is_empty() {
        return;
    }
    if let Some(existing) = clips
        .iter_mut()
        .find(|c| c.media == media && *c.clip == *name)
    {
        existing.chunks = existing.chunks.with(map);
        return;
    }
    if clips.len() >= max_clips.max(1) {
        clips.remove(0);
    }
    clips.push(ClipChunks {
        clip: name.into(),
        media,
        chunks: ChunkSet::new().with(map),
    });
}

/// A member's chunk maps after one swarm's part of a STAT_REPORT, and their cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedMaps {
    /// The maps, per clip and media type.
    pub clips: Vec<ClipChunks>,
    /// Chunk-map bytes they are charged.
    pub charged: usize,
    /// Bytes more (or, negative, fewer) than before; a store checks a growth against the
    /// tracker-wide cap, which only it can read.
    pub growth: i64,
    /// True when they hold every chunk they cover.
    pub complete: bool,
}

/// Merges the maps of `report` into a member's `clips` (charged `charged_before` bytes)
/// and checks the caps of one member and of its session (which holds `session_bytes`).
///
/// # Errors
/// [`Cap::ChunkMapBytesPerMember`] or [`Cap::ChunkMapBytesPerSession`]; nothing is to be
/// stored then.
pub fn merge_report_maps(
    mut clips: Vec<ClipChunks>,
    charged_before: usize,
    session_bytes: usize,
    report: &ChunkMapReport,
    limits: &Limits,
) -> Result<MergedMaps, Cap> {
    for clip in &report.clips {
        let Some(segments) = &clip.segments else {
            continue;
        };
        for map in segments.segments.iter().filter_map(|s| s.map.as_ref()) {
            merge_chunk_map(
                &mut clips,
                &clip.name,
                segments.media,
                map,
                limits.max_clips_per_member,
            );
        }
    }
    let charged: usize = clips.iter().map(|c| c.chunks.charged_bytes()).sum();
    let growth = charged as i64 - charged_before as i64;
    if charged > limits.max_chunk_map_bytes_per_member {
        return Err(Cap::ChunkMapBytesPerMember);
    }
    if growth > 0
        && session_bytes.saturating_add(growth as usize) > limits.max_chunk_map_bytes_per_session
    {
        return Err(Cap::ChunkMapBytesPerSession);
    }
    let complete = holds_everything(&clips);
    Ok(MergedMaps {
        clips,
        charged,
        growth,
        complete,
    })
}

/// True when a member's chunk maps hold every chunk they cover (it completed).
pub fn holds_everything(clips: &[ClipChunks]) -> bool {
    !clips.is_empty()
        && clips
            .iter()
            .all(|c| c.chunks.segments().iter().all(ChunkMap::is_full))
}

/// The chunks a FIND asks for: one clip, an optional media type, inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkScope {
    clip: String,
    media: Option<MediaType>,
    ranges: Vec<(u64, u64)>,
}

/// Where a JOIN says its peer starts: a clip, a media type and the first chunk wanted
/// (draft-gu-ppsp-tracker-protocol-06, JOIN `Clip`: the tracker records any declared start
/// point). Every store keeps this, not the whole `Clip` of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPoint {
    /// Clip name.
    pub clip: String,
    /// Media type of the segments.
    pub media: MediaType,
    /// The lowest `from` of the clip's segments.
    pub chunk: u64,
}

impl StartPoint {
    /// The start point a JOIN's `Clip` declares; `None` when it names no chunk.
    pub fn of(clip: &Clip) -> Option<Self> {
        let segments = clip.segments.as_ref()?;
        let chunk = segments.segments.iter().filter_map(|s| s.from).min()?;
        Some(Self {
            clip: clip.name.clone(),
            media: segments.media,
            chunk,
        })
    }
}

impl ChunkScope {
    /// Everything from `clip`'s first segment onward: the start point of a JOIN. `None`
    /// when the clip names no chunk.
    pub fn from_start(clip: &Clip) -> Option<Self> {
        let start = StartPoint::of(clip)?;
        Some(Self {
            clip: start.clip,
            media: Some(start.media),
            ranges: vec![(start.chunk, u64::MAX)],
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

    fn live(format: Format, generation: u32, ip: &str) -> LiveSession {
        LiveSession {
            format,
            generation,
            observed_ip: ip.parse().expect("ip"),
        }
    }

    #[test]
    fn session_checks() {
        let xml = live(Format::Xml, 7, "192.0.2.1");
        let json = live(Format::Json, 7, "192.0.2.1");
        let other_ip = "192.0.2.2".parse().expect("ip");
        assert_eq!(
            check_session(SessionCheck::Generation(7), Some(&xml)),
            Ok(())
        );
        for (check, session) in [
            (SessionCheck::Generation(8), Some(&xml)),
            (SessionCheck::Generation(7), Some(&json)),
            (SessionCheck::Generation(7), None),
        ] {
            assert_eq!(check_session(check, session), Err(TrackerError::BadToken));
        }
        let unproven = SessionCheck::Json {
            source: Some(other_ip),
        };
        let proven = SessionCheck::Json { source: None };
        assert_eq!(check_session(proven, Some(&json)), Ok(()));
        assert_eq!(
            check_session(unproven, Some(&json)),
            Err(TrackerError::SessionOwned)
        );
        assert_eq!(
            check_session(proven, Some(&xml)),
            Err(TrackerError::DialectMismatch)
        );
        assert_eq!(
            check_session(proven, None),
            Err(TrackerError::NotRegistered)
        );
    }

    #[test]
    fn replacing_a_live_session_needs_a_proof() {
        let peer = ppsp_proto::PeerId::new("p").expect("id");
        let registration = |format, proof, ip: &str| Registration {
            peer_id: &peer,
            format,
            observed: std::net::SocketAddr::new(ip.parse().expect("ip"), 4000),
            declared: &[],
            ability_nat: None,
            proof,
        };
        let xml = live(Format::Xml, 7, "192.0.2.1");
        let same_host = registration(Format::Xml, Proof::SourceAddress, "192.0.2.1");
        let elsewhere = registration(Format::Xml, Proof::SourceAddress, "192.0.2.2");
        assert_eq!(may_replace(&xml, &same_host), Ok(()));
        assert_eq!(
            may_replace(&xml, &elsewhere),
            Err(TrackerError::SessionOwned)
        );
        let token = |g| registration(Format::Xml, Proof::Token(g), "192.0.2.2");
        assert_eq!(may_replace(&xml, &token(7)), Ok(()));
        assert_eq!(
            may_replace(&xml, &token(6)),
            Err(TrackerError::SessionOwned)
        );
        let account = registration(Format::Xml, Proof::Credentials, "192.0.2.2");
        assert_eq!(may_replace(&xml, &account), Ok(()));
        let json = registration(Format::Json, Proof::Credentials, "192.0.2.1");
        assert_eq!(may_replace(&xml, &json), Err(TrackerError::DialectMismatch));
    }

    #[test]
    fn chunk_maps_merge_per_clip_and_the_oldest_clip_goes() {
        let mut map = ChunkMap::new(0, 4);
        map.insert(1);
        let mut clips = Vec::new();
        merge_chunk_map(&mut clips, "a", MediaType::Video, &ChunkMap::new(0, 0), 2);
        assert!(clips.is_empty(), "an empty map adds no clip");
        merge_chunk_map(&mut clips, "a", MediaType::Video, &map, 2);
        merge_chunk_map(&mut clips, "a", MediaType::Audio, &map, 2);
        let mut more = ChunkMap::new(0, 4);
        more.insert(3);
        merge_chunk_map(&mut clips, "a", MediaType::Video, &more, 2);
        // The later report of the same range replaces it: chunk 3 held, chunk 1 no more.
        assert_eq!(clips.len(), 2);
        assert!(clips[0].chunks.any_in(3, 3) && !clips[0].chunks.any_in(1, 1));
        merge_chunk_map(&mut clips, "b", MediaType::Video, &map, 2);
        let names: Vec<_> = clips.iter().map(|c| (&*c.clip, c.media)).collect();
        assert_eq!(
            names,
            vec![("a", MediaType::Audio), ("b", MediaType::Video)]
        );
        assert!(!holds_everything(&clips));
        assert!(!holds_everything(&[]));
        let mut full = ChunkMap::new(0, 2);
        full.insert(0);
        full.insert(1);
        let mut whole = Vec::new();
        merge_chunk_map(&mut whole, "a", MediaType::Video, &full, 2);
        assert!(holds_everything(&whole));
    }

    #[test]
    fn report_maps_are_charged_and_capped() {
        use ppsp_proto::{ChunkSegments, Segment};
        let mut map = ChunkMap::new(0, 64 * 8);
        for c in 0..64 * 8 {
            map.insert(c);
        }
        let report = ChunkMapReport {
            swarm_id: SwarmId::new("s").expect("id"),
            clips: vec![Clip {
                name: "c".into(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment::with_map(map)],
                }),
            }],
        };
        let limits = Limits::default();
        let merged = merge_report_maps(Vec::new(), 0, 0, &report, &limits).expect("merged");
        assert!(merged.complete);
        assert!(merged.charged >= 64);
        assert_eq!(merged.growth, merged.charged as i64);
        // The same report again costs nothing more.
        let again = merge_report_maps(merged.clips.clone(), merged.charged, 0, &report, &limits)
            .expect("merged");
        assert_eq!(again.growth, 0);
        let tight = Limits {
            max_chunk_map_bytes_per_member: merged.charged - 1,
            ..Limits::default()
        };
        assert_eq!(
            merge_report_maps(Vec::new(), 0, 0, &report, &tight),
            Err(Cap::ChunkMapBytesPerMember)
        );
        let session_full = limits.max_chunk_map_bytes_per_session - merged.charged + 1;
        assert_eq!(
            merge_report_maps(Vec::new(), 0, session_full, &report, &limits),
            Err(Cap::ChunkMapBytesPerSession)
        );
        assert!(merge_report_maps(Vec::new(), 0, session_full - 1, &report, &limits).is_ok());
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
