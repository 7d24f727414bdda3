//! The last hour of activity, sampled every few seconds, for the dashboard's chart and
//! rates: a newly opened page shows the history at once instead of starting empty.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ppsp_proto::Method;
use serde::Serialize;

use crate::metrics::{Direction, Metrics};
use crate::state::AppState;

/// How far back the history reaches.
pub(crate) const HISTORY_SPAN: Duration = Duration::from_secs(3600);

/// Cumulative counters and state totals at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    unix_ms: u64,
    requests_by_method: [u64; 7],
    joins: u64,
    uploaded: u64,
    downloaded: u64,
    sessions: usize,
    swarms: usize,
    peers: usize,
}

impl Sample {
    /// Reads the counters now; `sessions`, `swarms` and `peers` come from the tracker.
    pub(crate) fn take(metrics: &Metrics, sessions: usize, swarms: usize, peers: usize) -> Self {
        Self {
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            requests_by_method: metrics.requests_by_method(),
            joins: metrics.swarm_joins.get(),
            uploaded: metrics.reported_bytes(Direction::uploaded),
            downloaded: metrics.reported_bytes(Direction::downloaded),
            sessions,
            swarms,
            peers,
        }
    }
}

/// Rates between two samples, and the state at the later one: one point of `/api/history`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct Point {
    /// End of the interval, seconds since the Unix epoch.
    pub(crate) t: f64,
    /// Requests per second, by method.
    pub(crate) requests_per_second: BTreeMap<&'static str, f64>,
    /// Memberships started per minute.
    pub(crate) joins_per_minute: f64,
    /// Memberships ended per minute (LEAVE, DISCONNECT, expiry): joins minus the growth
    /// in memberships.
    pub(crate) leaves_per_minute: f64,
    /// Bytes per second peers reported uploading.
    pub(crate) uploaded_bytes_per_second: f64,
    /// Bytes per second peers reported downloading.
    pub(crate) downloaded_bytes_per_second: f64,
    /// Sessions at the end of the interval.
    pub(crate) sessions: usize,
    /// Swarms at the end of the interval.
    pub(crate) swarms: usize,
    /// Memberships at the end of the interval.
    pub(crate) peers: usize,
}

impl Point {
    /// The rates from `before` to `after`; `None` when no time passed.
    pub(crate) fn between(before: &Sample, after: &Sample) -> Option<Self> {
        let millis = after.unix_ms.checked_sub(before.unix_ms)?;
        if millis == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let per_second = |b: u64, a: u64| a.saturating_sub(b) as f64 * 1000.0 / millis as f64;
        let joined = after.joins.saturating_sub(before.joins);
        let grown = after.peers.saturating_sub(before.peers) as u64;
        let shrunk = before.peers.saturating_sub(after.peers) as u64;
        let left = (joined + shrunk).saturating_sub(grown);
        #[allow(clippy::cast_precision_loss)]
        Some(Self {
            t: after.unix_ms as f64 / 1000.0,
            requests_per_second: Method::ALL
                .iter()
                .zip(
                    before
                        .requests_by_method
                        .iter()
                        .zip(after.requests_by_method),
                )
                .map(|(method, (b, a))| (method.as_str(), per_second(*b, a)))
                .collect(),
            joins_per_minute: per_second(before.joins, after.joins) * 60.0,
            leaves_per_minute: per_second(0, left) * 60.0,
            uploaded_bytes_per_second: per_second(before.uploaded, after.uploaded),
            downloaded_bytes_per_second: per_second(before.downloaded, after.downloaded),
            sessions: after.sessions,
            swarms: after.swarms,
            peers: after.peers,
        })
    }
}

/// A ring buffer of samples covering [`HISTORY_SPAN`].
#[derive(Debug)]
pub(crate) struct History {
    interval: Duration,
    capacity: usize,
    samples: Mutex<VecDeque<Sample>>,
}

/// The `/api/history` document.
#[derive(Serialize)]
struct HistoryJson {
    interval_secs: u64,
    span_secs: u64,
    points: Vec<Point>,
}

impl History {
    /// An empty history sampled every `interval` (at least a second).
    pub(crate) fn new(interval: Duration) -> Self {
        let interval = interval.max(Duration::from_secs(1));
        let capacity = usize::try_from(HISTORY_SPAN.as_secs() / interval.as_secs())
            .unwrap_or(1)
            .max(1)
            + 1;
        Self {
            interval,
            capacity,
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Time between two samples.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Appends a sample, dropping the oldest past the span.
    pub(crate) fn push(&self, sample: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() == self.capacity {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// The rates over the latest interval.
    pub(crate) fn latest(&self) -> Point {
        self.samples
            .lock()
            .ok()
            .and_then(|samples| {
                let mut newest = samples.iter().rev();
                let after = newest.next()?;
                Point::between(newest.next()?, after)
            })
            .unwrap_or_default()
    }

    /// Every point, oldest first.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.samples.lock().map_or_else(
            |_| Vec::new(),
            |samples| {
                samples
                    .iter()
                    .zip(samples.iter().skip(1))
                    .filter_map(|(before, after)| Point::between(before, after))
                    .collect()
            },
        )
    }

    /// The `/api/history` JSON.
    pub(crate) fn to_json(&self) -> String {
        let doc = HistoryJson {
            interval_secs: self.interval.as_secs(),
            span_secs: HISTORY_SPAN.as_secs(),
            points: self.points(),
        };
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Samples the counters every history interval until `stop` is set, and forgets the byte
/// totals of peers silent for two session timeouts.
pub(crate) async fn sample_loop(
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(state.history.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        // Totals come from the tracker's counters: cheap, no walk of its state.
        let Ok(totals) = crate::pages::read_totals(&state.tracker).await else {
            continue;
        };
        state.history.push(Sample::take(
            &state.metrics,
            totals.sessions,
            totals.swarms,
            totals.peers(),
        ));
        state
            .reported
            .prune(Instant::now(), state.session_idle_timeout.saturating_mul(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(second: u64, connects: u64, joins: u64, peers: usize, up: u64) -> Sample {
        let mut requests_by_method = [0; 7];
        requests_by_method[0] = connects;
        Sample {
            unix_ms: second * 1000,
            requests_by_method,
            joins,
            uploaded: up,
            downloaded: 0,
            sessions: peers,
            swarms: 1,
            peers,
        }
    }

    #[test]
    fn rates_between_samples() {
        let point =
            Point::between(&sample(10, 0, 0, 0, 0), &sample(15, 50, 10, 6, 5000)).expect("point");
        assert_eq!(point.requests_per_second["CONNECT"], 10.0);
        assert_eq!(point.joins_per_minute, 120.0);
        // Ten joined, memberships grew by six: four left.
        assert_eq!(point.leaves_per_minute, 48.0);
        assert_eq!(point.uploaded_bytes_per_second, 1000.0);
        assert_eq!(point.t, 15.0);
        assert!(Point::between(&sample(10, 0, 0, 0, 0), &sample(10, 1, 0, 0, 0)).is_none());
    }

    #[test]
    fn the_ring_keeps_one_hour() {
        let history = History::new(Duration::from_secs(600));
        for i in 0..20 {
            history.push(sample(i * 600, i, 0, 0, 0));
        }
        let points = history.points();
        assert_eq!(points.len(), 6);
        assert_eq!(points.last().map(|p| p.t), Some(19.0 * 600.0));
        assert_eq!(history.latest().t, 19.0 * 600.0);
        let doc: serde_json::Value = serde_json::from_str(&history.to_json()).expect("json");
        assert_eq!(doc["interval_secs"], 600);
        assert_eq!(doc["points"].as_array().map(Vec::len), Some(6));
    }
}
