//! Read-only views of the tracker state for statistics pages and metrics: totals from
//! counters, pages of swarms, one swarm with a page of its members. Every view is bounded
//! in size and built without holding a lock that requests wait on for more than a short,
//! bounded step.

use ppsp_proto::{ChunkMap, MediaType, PeerId, PeerMode, SwarmId};

use crate::rules::StartPoint;
use crate::store::ClipChunks;
use crate::{Cap, Timestamp};

/// Counts over the whole state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Live sessions (registered PeerIDs).
    pub sessions: u64,
    /// Swarms with at least one member.
    pub swarms: u64,
    /// Memberships in SEED mode.
    pub seeds: u64,
    /// Memberships in LIVESEED mode.
    pub live_seeds: u64,
    /// Memberships in LEECH mode.
    pub leeches: u64,
    /// Chunk-map bytes held for all members.
    pub chunk_map_bytes: u64,
    /// Sessions removed by the inactivity timer since start.
    pub sessions_expired: u64,
    /// Memberships removed because their ExpireTime passed, since start.
    pub memberships_expired: u64,
    /// Requests refused at each cap since start, indexed like [`Cap::ALL`].
    pub refusals: [u64; Cap::ALL.len()],
}

/// Which swarms a page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmQuery {
    /// Swarms to skip, largest first.
    pub offset: usize,
    /// Swarms to show at most.
    pub limit: usize,
    /// Only swarms whose ID contains this text, compared case-insensitively.
    pub filter: Option<String>,
}

impl Default for SwarmQuery {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 50,
            filter: None,
        }
    }
}

/// One swarm in a [`SwarmPage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmSummary {
    /// The swarm.
    pub swarm_id: SwarmId,
    /// True when a LIVESEED is a member or the swarm is configured as live.
    pub live: bool,
    /// Members in SEED mode.
    pub seeds: u64,
    /// Members in LIVESEED mode.
    pub live_seeds: u64,
    /// Members in LEECH mode.
    pub leeches: u64,
}

impl SwarmSummary {
    /// Every member.
    pub fn members(&self) -> u64 {
        self.seeds + self.live_seeds + self.leeches
    }
}

/// A page of swarms, largest first (ties by SwarmID).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmPage {
    /// Swarms matching the query's filter.
    pub total: usize,
    /// The query's offset.
    pub offset: usize,
    /// The page.
    pub swarms: Vec<SwarmSummary>,
}

/// Most members a [`SwarmDetail`] lists as recently completed.
pub const RECENT_COMPLETIONS: usize = 10;

/// One member of a swarm in a [`SwarmDetail`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDetail {
    /// The member.
    pub peer_id: PeerId,
    /// Its mode in the swarm.
    pub mode: PeerMode,
    /// When it joined (a later re-JOIN keeps the original time).
    pub joined_at: Timestamp,
    /// When it first reported holding every chunk it covers, if it did.
    pub completed_at: Option<Timestamp>,
    /// The start point its latest JOIN declared, if any.
    pub start: Option<StartPoint>,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub uploaded_bytes: u64,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub downloaded_bytes: u64,
    /// From its latest StreamStats report for the swarm; 0 if none.
    pub available_bandwidth: u64,
    /// Chunks its chunk maps mark as held.
    pub chunks_held: u64,
    /// Chunks its chunk maps cover, held or not.
    pub chunks_covered: u64,
    /// Behind a NAT, as reported or inferred; `None` when unknown.
    pub behind_nat: Option<bool>,
    /// Supports STUN-like traversal, as reported; `None` when unknown.
    pub stun: Option<bool>,
}

/// Chunk availability of one clip and media type in a [`SwarmDetail`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipAvailability {
    /// Clip name.
    pub clip: String,
    /// Media type.
    pub media: MediaType,
    /// Lowest chunk of any reported range.
    pub first: u64,
    /// Highest chunk of any reported range.
    pub last: u64,
    /// Distinct chunks at least one member reported holding (a lower bound when the
    /// range is too wide to count exactly).
    pub chunks_available: u64,
    /// The range `first..=last` cut into equal buckets: how many members reported holding
    /// a chunk in each.
    pub heat: Vec<u32>,
}

/// One swarm with a page of its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmDetail {
    /// Counts.
    pub summary: SwarmSummary,
    /// Members skipped before `peers` (in join order).
    pub offset: usize,
    /// A page of members, in join order.
    pub peers: Vec<PeerDetail>,
    /// Per clip and media type.
    pub chunk_availability: Vec<ClipAvailability>,
    /// True when availability, byte sums and completions were computed from a sample of
    /// the reporting members.
    pub availability_sampled: bool,
    /// Bytes the (sampled) members reported uploading, summed.
    pub uploaded_bytes: u64,
    /// Bytes the (sampled) members reported downloading, summed.
    pub downloaded_bytes: u64,
    /// Members that reported holding every chunk they cover, most recent first (at most
    /// [`RECENT_COMPLETIONS`]).
    pub recently_completed: Vec<PeerDetail>,
}

/// Widest range whose distinct chunks are counted exactly, in bits.
const AVAILABILITY_SPAN_BITS: u64 = 1 << 24;
/// Buckets of a heat map.
const HEAT_BUCKETS: u64 = 32;

/// Chunk availability per clip and media type over the chunk maps of some members (each
/// item is one member's clips), sorted by clip and media type. Every store computes a
/// swarm's availability with it, over all its reporting members or a bounded sample.
pub fn chunk_availability<'a>(
    members: impl Iterator<Item = &'a [ClipChunks]>,
) -> Vec<ClipAvailability> {
    let mut groups: Vec<(&str, MediaType, Vec<&ClipChunks>)> = Vec::new();
    for clips in members {
        for clip in clips {
            match groups
                .iter_mut()
                .find(|(c, m, _)| *c == &*clip.clip && *m == clip.media)
            {
                Some((_, _, list)) => list.push(clip),
                None => groups.push((&clip.clip, clip.media, vec![clip])),
            }
        }
    }
    let mut out: Vec<ClipAvailability> = groups
        .into_iter()
        .filter_map(|(clip, media, list)| {
            let first = list.iter().filter_map(|c| c.chunks.first()).min()?;
            let last = list.iter().filter_map(|c| c.chunks.last()).max()?;
            let span = (last - first).saturating_add(1);
            let chunks_available = if span <= AVAILABILITY_SPAN_BITS {
                let mut union = ChunkMap::new(first, span);
                for segment in list.iter().flat_map(|c| c.chunks.segments()) {
                    union.or_from(segment);
                }
                union.count()
            } else {
                list.iter().map(|c| c.chunks.count()).max().unwrap_or(0)
            };
            let width = span.div_ceil(HEAT_BUCKETS).max(1);
            let heat = (0..span.div_ceil(width))
                .map(|bucket| {
                    let from = first + bucket * width;
                    let to = from.saturating_add(width - 1).min(last);
                    list.iter().filter(|c| c.chunks.any_in(from, to)).count() as u32
                })
                .collect();
            Some(ClipAvailability {
                clip: clip.to_owned(),
                media,
                first,
                last,
                chunks_available,
                heat,
            })
        })
        .collect();
    out.sort_by(|a, b| a.clip.cmp(&b.clip).then(a.media.cmp(&b.media)));
    out
}
