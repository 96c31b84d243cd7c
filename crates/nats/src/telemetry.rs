//! The monitor's metrics (Prometheus, through prometheus-client) and its
//! readiness.
//!
//! One [`Telemetry`] per process: the live monitor records into it batch by
//! batch (never per event: counts are summed per batch first), and
//! `/metrics` encodes it together with gauges read from the store at scrape
//! time, so that `lifewatch serve` (no monitor) shows the read side's
//! figures too.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lifewatch_core::{IncidentKind, RejectReason};
use lifewatch_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Telemetry::encode`]'s text: the classic
/// Prometheus text format 0.0.4 (see [`classic_text`]).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    kind: String,
    owner: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Why the monitor is not ready, or that it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Readiness {
    /// It can do its work.
    Ready,
    /// It cannot: the reason, one line for a person.
    NotReady(String),
}

/// What one committed batch adds to the counters.
#[derive(Default, Debug)]
pub struct BatchFigures {
    /// Accepted events by type name.
    pub accepted: Vec<(&'static str, u64)>,
    /// Rejected messages by reason.
    pub rejected: Vec<(RejectReason, u64)>,
    /// Duplicates (redelivered or re-sent events).
    pub duplicates: u64,
    /// Messages still pending on the consumer after the batch.
    pub consumer_pending: Option<u64>,
    /// How long the commit took.
    pub commit: Duration,
    /// From the stream's receipt of the batch's oldest message to the end of its commit.
    pub receipt_to_commit: Option<Duration>,
}

/// The metrics registry and the readiness state of one process.
pub struct Telemetry {
    registry: Registry,
    accepted: Family<TypeLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    duplicates: Counter,
    opened: Family<KindLabel, Counter>,
    resolved: Family<KindLabel, Counter>,
    consumer_pending: Gauge,
    ack_pending: Gauge,
    commit_seconds: Histogram,
    event_to_incident_seconds: Histogram,
    // The read side's, set from the store at each scrape.
    open_incidents: Family<OpenLabels, Gauge>,
    outbox_waiting: Gauge,
    outbox_oldest_age_seconds: Gauge,
    outbox_set_aside: Gauge,
    store_bytes: Gauge,
    store_events: Gauge,
    deliveries: Family<StateLabel, Gauge>,
    nats_connected: Gauge,
    /// Scrapes set the read-side gauges and encode under this lock, so two
    /// concurrent scrapes never mix their values.
    scrape: Mutex<()>,
    state: LiveState,
}

/// What readiness is judged from, set by the monitor.
struct LiveState {
    attached: AtomicBool,
    client: Mutex<Option<async_nats::Client>>,
    consumer_bound: AtomicBool,
    last_commit_failed: AtomicBool,
    /// Nanoseconds since `started` of the outbox's last progress (or of the
    /// moment it became non-empty).
    outbox_progress: AtomicU64,
    outbox_waiting: AtomicBool,
    started: Instant,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("live", &self.live()).finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A registry with every family registered and the build info set.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("lifewatch");
        let accepted = Family::<TypeLabel, Counter>::default();
        registry.register("events_accepted", "Events accepted and stored, by event type", accepted.clone());
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register("events_rejected", "Messages rejected, by reason", rejected.clone());
        let duplicates = Counter::default();
        registry.register(
            "events_duplicate",
            "Events whose id was seen before (redeliveries, re-sends)",
            duplicates.clone(),
        );
        let opened = Family::<KindLabel, Counter>::default();
        registry.register("incidents_opened", "Incidents opened or reopened, by kind", opened.clone());
        let resolved = Family::<KindLabel, Counter>::default();
        registry.register("incidents_resolved", "Incidents resolved, by kind", resolved.clone());
        let consumer_pending = Gauge::default();
        registry.register(
            "consumer_pending_messages",
            "Messages on the events stream not yet delivered to the monitor (consumer lag)",
            consumer_pending.clone(),
        );
        let ack_pending = Gauge::default();
        registry.register(
            "consumer_ack_pending_messages",
            "Messages delivered to the monitor and not yet acknowledged",
            ack_pending.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_5, 2.0, 14));
        registry.register_with_unit(
            "batch_commit_duration",
            "Time to commit one batch (events, rejections, incidents, outbox) to the store",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let event_to_incident_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "event_to_incident_latency",
            "From the stream's receipt of the oldest event of a batch to the commit of an incident that batch opened",
            Unit::Seconds,
            event_to_incident_seconds.clone(),
        );
        let open_incidents = Family::<OpenLabels, Gauge>::default();
        registry.register(
            "open_incidents",
            "Open incidents by kind, owner and severity",
            open_incidents.clone(),
        );
        let outbox_waiting = Gauge::default();
        registry.register(
            "outbox_backlog_transitions",
            "Incident transitions committed and not yet published to INCIDENTS",
            outbox_waiting.clone(),
        );
        let outbox_oldest_age_seconds = Gauge::default();
        registry.register_with_unit(
            "outbox_oldest_undelivered_age",
            "Age of the oldest incident transition not yet published (0 when none waits)",
            Unit::Seconds,
            outbox_oldest_age_seconds.clone(),
        );
        let outbox_set_aside = Gauge::default();
        registry.register(
            "outbox_set_aside_transitions",
            "Incident transitions the server refused for good (see `lifewatch outbox`)",
            outbox_set_aside.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "store_size",
            "Size of the SQLite database and its write-ahead log",
            Unit::Bytes,
            store_bytes.clone(),
        );
        let store_events = Gauge::default();
        registry.register("store_events", "Events in the store's log", store_events.clone());
        let deliveries = Family::<StateLabel, Gauge>::default();
        registry.register(
            "notification_deliveries",
            "Notification deliveries waiting (pending) and given up (dead)",
            deliveries.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "nats_connected",
            "1 while the monitor's NATS connection is up",
            nats_connected.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "The running build: always 1, with its version as a label", build);
        Telemetry {
            registry,
            accepted,
            rejected,
            duplicates,
            opened,
            resolved,
            consumer_pending,
            ack_pending,
            commit_seconds,
            event_to_incident_seconds,
            open_incidents,
            outbox_waiting,
            outbox_oldest_age_seconds,
            outbox_set_aside,
            store_bytes,
            store_events,
            deliveries,
            nats_connected,
            scrape: Mutex::new(()),
            state: LiveState {
                attached: AtomicBool::new(false),
                client: Mutex::new(None),
                consumer_bound: AtomicBool::new(false),
                last_commit_failed: AtomicBool::new(false),
                outbox_progress: AtomicU64::new(0),
                outbox_waiting: AtomicBool::new(false),
                started: Instant::now(),
            },
        }
    }

    /// Whether a live monitor is attached (`run`), rather than a read-only server.
    pub fn live(&self) -> bool {
        self.state.attached.load(Ordering::Relaxed)
    }

    /// The monitor attaches with its NATS client: readiness then follows
    /// the connection's state.
    pub fn attach(&self, client: &async_nats::Client) {
        if let Ok(mut slot) = self.state.client.lock() {
            *slot = Some(client.clone());
        }
        self.state.attached.store(true, Ordering::Relaxed);
        self.note_outbox(0);
    }

    /// The consumer is bound (or is being bound again).
    pub fn consumer_bound(&self, bound: bool) {
        self.state.consumer_bound.store(bound, Ordering::Relaxed);
    }

    /// A commit succeeded or failed.
    pub fn commit_result(&self, ok: bool) {
        self.state.last_commit_failed.store(!ok, Ordering::Relaxed);
    }

    /// Adds one committed batch.
    pub fn batch(&self, figures: &BatchFigures, committed: &lifewatch_store::Committed) {
        for &(name, count) in &figures.accepted {
            self.accepted.get_or_create(&TypeLabel { r#type: name.to_string() }).inc_by(count);
        }
        for &(reason, count) in &figures.rejected {
            self.rejected.get_or_create(&ReasonLabel { reason: reason.as_str().to_string() }).inc_by(count);
        }
        self.duplicates.inc_by(figures.duplicates);
        if let Some(pending) = figures.consumer_pending {
            self.consumer_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        self.commit_seconds.observe(figures.commit.as_secs_f64());
        self.incidents(committed, figures.receipt_to_commit);
        self.commit_result(true);
    }

    /// Adds the incidents a commit opened and resolved (a batch's, or a clock tick's).
    pub fn incidents(&self, committed: &lifewatch_store::Committed, latency: Option<Duration>) {
        for kind in IncidentKind::ALL {
            let opened = committed.opened[kind as usize];
            if opened > 0 {
                self.opened.get_or_create(&KindLabel { kind: kind.as_str().to_string() }).inc_by(opened);
                if let Some(latency) = latency {
                    for _ in 0..opened.min(1000) {
                        self.event_to_incident_seconds.observe(latency.as_secs_f64());
                    }
                }
            }
            let resolved = committed.resolved[kind as usize];
            if resolved > 0 {
                self.resolved.get_or_create(&KindLabel { kind: kind.as_str().to_string() }).inc_by(resolved);
            }
        }
    }

    /// Messages not yet delivered, as the consumer reports them.
    pub fn consumer_pending(&self, pending: u64) {
        self.consumer_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Messages delivered and not yet acknowledged, as the consumer reports them.
    pub fn ack_pending(&self, pending: u64) {
        self.ack_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// The outbox's state after the monitor handled an input: `waiting`
    /// transitions not yet published. Progress is any change of the count
    /// or an empty outbox.
    pub fn note_outbox(&self, waiting: usize) {
        let was_waiting = self.state.outbox_waiting.swap(waiting > 0, Ordering::Relaxed);
        if waiting == 0 || !was_waiting {
            self.outbox_progressed();
        }
    }

    /// The outbox published something.
    pub fn outbox_progressed(&self) {
        let nanos = u64::try_from(self.state.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.state.outbox_progress.store(nanos, Ordering::Relaxed);
    }

    /// Ready when a monitor is attached, its NATS connection is up, its
    /// consumer bound, its last commit succeeded and its outbox has not
    /// waited without progress for longer than `max_outbox_stall`. A
    /// process without a monitor (`serve`) is always ready here.
    pub fn readiness(&self, max_outbox_stall: Duration) -> Readiness {
        if !self.live() {
            return Readiness::Ready;
        }
        let connected = self
            .state
            .client
            .lock()
            .ok()
            .and_then(|client| client.as_ref().map(|client| client.connection_state()));
        match connected {
            Some(async_nats::connection::State::Connected) => {}
            Some(state) => return Readiness::NotReady(format!("NATS is not connected ({state})")),
            None => return Readiness::NotReady("NATS is not connected yet".to_string()),
        }
        if !self.state.consumer_bound.load(Ordering::Relaxed) {
            return Readiness::NotReady("the events consumer is not bound".to_string());
        }
        if self.state.last_commit_failed.load(Ordering::Relaxed) {
            return Readiness::NotReady("the last commit to the database failed".to_string());
        }
        if self.state.outbox_waiting.load(Ordering::Relaxed) {
            let since = Duration::from_nanos(self.state.outbox_progress.load(Ordering::Relaxed));
            let stalled = self.state.started.elapsed().saturating_sub(since);
            if stalled > max_outbox_stall {
                return Readiness::NotReady(format!(
                    "the outbox has published nothing for {}s while transitions wait",
                    stalled.as_secs()
                ));
            }
        }
        Readiness::Ready
    }

    /// The exposition: every family, the read side's gauges set from
    /// `store` first (left as they were when it is `None`).
    pub fn encode(&self, store: Option<&Store>) -> Result<String, TelemetryError> {
        let _scrape = self.scrape.lock().map_err(|_| TelemetryError::Poisoned)?;
        if let Some(store) = store {
            self.read_side(store)?;
        }
        let connected = self.state.client.lock().ok().and_then(|client| {
            client
                .as_ref()
                .map(|client| client.connection_state() == async_nats::connection::State::Connected)
        });
        self.nats_connected.set(i64::from(connected.unwrap_or(false)));
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|_| TelemetryError::Encode)?;
        Ok(classic_text(&text))
    }

    fn read_side(&self, store: &Store) -> Result<(), TelemetryError> {
        let counts = store.open_incident_counts()?;
        self.open_incidents.clear();
        for count in counts {
            self.open_incidents
                .get_or_create(&OpenLabels { kind: count.kind, owner: count.owner, severity: count.severity })
                .set(i64::try_from(count.count).unwrap_or(i64::MAX));
        }
        let outbox = store.outbox_state()?;
        self.outbox_waiting.set(i64::try_from(outbox.waiting).unwrap_or(i64::MAX));
        self.outbox_set_aside.set(i64::try_from(outbox.set_aside).unwrap_or(i64::MAX));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        let age = outbox.oldest_queued_ms.map_or(0, |queued| (now_ms - queued).max(0) / 1000);
        self.outbox_oldest_age_seconds.set(age);
        self.store_bytes.set(i64::try_from(store.size_bytes()).unwrap_or(i64::MAX));
        self.store_events.set(store.summary()?.events);
        let (pending, dead) = store.delivery_counts()?;
        for (state, count) in [("pending", pending), ("dead", dead)] {
            self.deliveries
                .get_or_create(&StateLabel { state: state.to_string() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}

/// prometheus-client writes OpenMetrics text, where a counter's HELP and
/// TYPE lines name it without its `_total` sample suffix and `# UNIT` and
/// `# EOF` lines appear. Parsers of the classic text format 0.0.4 (promtool
/// and older scrapers) then see samples without HELP or TYPE (`promtool
/// check metrics` fails on them). This names counters' HELP and TYPE lines
/// with `_total` and drops the two OpenMetrics-only lines: the result is
/// valid in both formats' readers for the metric types used here.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Why the metrics could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Reading the store's gauges failed.
    #[error("cannot read the store's figures")]
    Store(#[from] lifewatch_store::StoreError),
    /// Writing the text failed.
    #[error("cannot encode the metrics")]
    Encode,
    /// A scrape panicked while holding the lock.
    #[error("a previous scrape failed midway")]
    Poisoned,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_with_units_and_totals() {
        let telemetry = Telemetry::new();
        let mut committed = lifewatch_store::Committed::default();
        committed.opened[IncidentKind::Stuck as usize] = 2;
        committed.resolved[IncidentKind::Stuck as usize] = 1;
        let figures = BatchFigures {
            accepted: vec![("project.requested", 3)],
            rejected: vec![(RejectReason::MalformedJson, 1)],
            duplicates: 4,
            consumer_pending: Some(7),
            commit: Duration::from_millis(3),
            receipt_to_commit: Some(Duration::from_millis(20)),
        };
        telemetry.batch(&figures, &committed);
        let text = telemetry.encode(None).unwrap();
        for line in [
            "lifewatch_events_accepted_total{type=\"project.requested\"} 3",
            "lifewatch_events_rejected_total{reason=\"malformed_json\"} 1",
            "lifewatch_events_duplicate_total 4",
            "lifewatch_incidents_opened_total{kind=\"stuck\"} 2",
            "lifewatch_incidents_resolved_total{kind=\"stuck\"} 1",
            "lifewatch_consumer_pending_messages 7",
            "lifewatch_batch_commit_duration_seconds_count 1",
            "lifewatch_event_to_incident_latency_seconds_count 2",
            "lifewatch_nats_connected 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("lifewatch_build_info{version=\""), "{text}");
        assert!(text.contains("# TYPE lifewatch_events_duplicate_total counter"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    }

    #[test]
    fn a_read_only_server_is_ready_and_a_monitor_without_nats_is_not() {
        let telemetry = Telemetry::new();
        assert_eq!(telemetry.readiness(Duration::from_secs(60)), Readiness::Ready);
        telemetry.state.attached.store(true, Ordering::Relaxed);
        assert!(
            matches!(telemetry.readiness(Duration::from_secs(60)), Readiness::NotReady(reason) if reason.contains("NATS"))
        );
    }
}
