//! The streams and the durable consumer of SPEC.md section 6, and the
//! subjects lifewatch reads and writes.

use async_nats::jetstream::{self, consumer, stream};
use lifewatch_core::{EventType, IncidentKind, RejectReason, SubjectType};

use crate::error::NatsError;
use crate::options::StreamSettings;

/// Subjects of the events stream.
pub const LIFECYCLE_SUBJECTS: &str = "lifecycle.>";
/// Subjects of the incidents stream.
pub const INCIDENTS_SUBJECTS: &str = "incidents.>";
/// Subjects of the rejected-messages stream.
pub const REJECTED_SUBJECTS: &str = "lifewatch.rejected.>";
/// The header that carries the subject a rejected message arrived on.
pub const ORIGINAL_SUBJECT_HEADER: &str = "Lifewatch-Original-Subject";
/// The header that carries the reason a message was rejected.
pub const REJECT_REASON_HEADER: &str = "Lifewatch-Reject-Reason";
/// The header that carries the rejection's detail, for people.
pub const REJECT_DETAIL_HEADER: &str = "Lifewatch-Reject-Detail";
/// The header that carries the events-stream sequence of a rejected message.
pub const ORIGINAL_SEQUENCE_HEADER: &str = "Lifewatch-Original-Sequence";

/// Whether to create missing streams or only bind to existing ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CreateStreams {
    /// Create the streams that are missing (file storage, duplicate window, retention from config).
    IfMissing,
    /// Only bind; a missing stream is an error (`--no-create`).
    Never,
}

/// The three streams, bound.
#[derive(Clone, Debug)]
pub struct Streams {
    /// Events.
    pub lifecycle: stream::Stream,
    /// Incidents.
    pub incidents: stream::Stream,
    /// Rejected messages.
    pub rejected: stream::Stream,
}

/// Binds the three streams, creating the missing ones if allowed.
pub async fn ensure_streams(
    jetstream: &jetstream::Context,
    settings: &StreamSettings,
    create: CreateStreams,
) -> Result<Streams, NatsError> {
    let lifecycle =
        ensure_stream(jetstream, settings, &settings.lifecycle_stream, LIFECYCLE_SUBJECTS, create).await?;
    let incidents =
        ensure_stream(jetstream, settings, &settings.incidents_stream, INCIDENTS_SUBJECTS, create).await?;
    let rejected =
        ensure_stream(jetstream, settings, &settings.rejected_stream, REJECTED_SUBJECTS, create).await?;
    Ok(Streams { lifecycle, incidents, rejected })
}

impl Streams {
    /// Checks that each stream's configured subjects cover every subject
    /// lifewatch reads or writes on it ([`used_subjects`]), as the streams
    /// were when bound. A stream made by hand with narrower subjects would
    /// otherwise fail late and one message at a time (an incident refused,
    /// an event never seen), so the monitor refuses to start instead and
    /// names the stream, its subjects and the first subject not covered.
    pub fn check_subjects(&self) -> Result<(), NatsError> {
        for (stream, role) in [
            (&self.lifecycle, StreamRole::Lifecycle),
            (&self.incidents, StreamRole::Incidents),
            (&self.rejected, StreamRole::Rejected),
        ] {
            let config = &stream.cached_info().config;
            if let Some(missing) = uncovered(&config.subjects, &used_subjects(role)) {
                return Err(NatsError::StreamSubjects {
                    stream: config.name.clone(),
                    subjects: config.subjects.clone(),
                    missing,
                    needed: role.subjects().to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Which of the three streams, for the subjects lifewatch uses on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StreamRole {
    /// Events, consumed by the monitor.
    Lifecycle,
    /// Incidents, published by the monitor.
    Incidents,
    /// Rejected messages, republished by the monitor.
    Rejected,
}

impl StreamRole {
    /// The subjects lifewatch gives the stream when it creates it.
    pub(crate) fn subjects(self) -> &'static str {
        match self {
            StreamRole::Lifecycle => LIFECYCLE_SUBJECTS,
            StreamRole::Incidents => INCIDENTS_SUBJECTS,
            StreamRole::Rejected => REJECTED_SUBJECTS,
        }
    }
}

/// Every subject pattern lifewatch uses on a stream: one per event type
/// (`lifecycle.<entity type>.*.<event name>`), per incident kind and
/// entity type (`incidents.<kind>.<entity type>.*`), per reject reason
/// (`lifewatch.rejected.<reason>`). Listing them rather than requiring the
/// one wildcard lifewatch creates lets an operator split a stream's
/// subjects as they like, as long as nothing lifewatch uses falls outside.
pub(crate) fn used_subjects(role: StreamRole) -> Vec<String> {
    match role {
        StreamRole::Lifecycle => EventType::ALL
            .iter()
            .map(|event_type| format!("lifecycle.{}.*.{}", event_type.entity_type(), event_type.event_name()))
            .collect(),
        StreamRole::Incidents => IncidentKind::ALL
            .iter()
            .flat_map(|kind| {
                SubjectType::ALL.iter().map(move |entity| format!("incidents.{kind}.{entity}.*"))
            })
            .collect(),
        StreamRole::Rejected => RejectReason::ALL.iter().map(|reason| rejected_subject(*reason)).collect(),
    }
}

/// The first of `used` that none of `filters` covers.
fn uncovered(filters: &[String], used: &[String]) -> Option<String> {
    used.iter().find(|subject| !filters.iter().any(|filter| covers(filter, subject))).cloned()
}

/// Whether the NATS subject filter `filter` matches every subject that
/// `pattern` (itself possibly holding `*` and `>`) matches: token by token,
/// `>` covers one or more remaining tokens, `*` covers any one token
/// (including `*`), and a literal covers only itself.
fn covers(filter: &str, pattern: &str) -> bool {
    let mut filter = filter.split('.');
    let mut pattern = pattern.split('.');
    loop {
        match (filter.next(), pattern.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(_), Some("*")) => return false,
            (Some(wanted), Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
}

/// What a stream found missing while the monitor runs became.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Restored {
    /// The stream exists (it was not missing after all, or another
    /// instance created it meanwhile).
    Present,
    /// It was missing and was created again.
    Recreated,
    /// It is missing and stays so (`--no-create`, or creating it failed): why.
    Missing(String),
    /// The server could not be asked: why.
    Unknown(String),
}

/// Makes sure the stream of `config` exists while the monitor runs: a
/// stream deleted under it is created again with the configuration it had
/// when the monitor bound it, unless `create` forbids it.
pub(crate) async fn restore_stream(
    jetstream: &jetstream::Context,
    config: &stream::Config,
    create: CreateStreams,
) -> Restored {
    match jetstream.get_stream(&config.name).await {
        Ok(_) => return Restored::Present,
        Err(error) if !is_stream_not_found(&error) => return Restored::Unknown(error.to_string()),
        Err(_) => {}
    }
    if create == CreateStreams::Never {
        return Restored::Missing("it was deleted and --no-create forbids creating it".to_string());
    }
    match jetstream.create_stream(config.clone()).await {
        Ok(_) => Restored::Recreated,
        Err(error) => match jetstream.get_stream(&config.name).await {
            Ok(_) => Restored::Present,
            Err(_) => Restored::Missing(format!("it was deleted and creating it again failed: {error}")),
        },
    }
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(ref js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The configuration of a stream lifewatch creates.
pub fn stream_config(settings: &StreamSettings, name: &str, subjects: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: settings.duplicate_window,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        num_replicas: 1,
        ..Default::default()
    }
}

async fn ensure_stream(
    jetstream: &jetstream::Context,
    settings: &StreamSettings,
    name: &str,
    subjects: &str,
    create: CreateStreams,
) -> Result<stream::Stream, NatsError> {
    let stream_error = |message: String| NatsError::Stream { stream: name.to_string(), message };
    match jetstream.get_stream(name).await {
        Ok(stream) => {
            tracing::debug!(stream = name, "bound to existing stream");
            return Ok(stream);
        }
        Err(error) if !is_stream_not_found(&error) => return Err(stream_error(error.to_string())),
        Err(_) => {}
    }
    if create == CreateStreams::Never {
        return Err(stream_error("does not exist (and --no-create forbids creating it)".into()));
    }
    let config = stream_config(settings, name, subjects);
    match jetstream.create_stream(config).await {
        Ok(stream) => {
            tracing::info!(stream = name, subjects, "created stream");
            Ok(stream)
        }
        // Another instance may have created it in the meantime.
        Err(error) => jetstream.get_stream(name).await.map_err(|_| stream_error(error.to_string())),
    }
}

/// How long a pull request of the monitor waits on the server before it
/// expires and the monitor sends another.
pub(crate) const PULL_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a consumer owned by another monitor must have been idle (no
/// pull request waiting, nothing delivered or acknowledged) before a
/// monitor takes it over: twice [`PULL_EXPIRY`], because a running monitor
/// always has a pull request waiting and renews it before it expires, so a
/// consumer idle that long has no monitor behind it.
pub const OWNER_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2 * PULL_EXPIRY.as_secs());

/// The metadata keys of the owner description lifewatch writes into the
/// consumers it creates (NATS 2.10 and later keep consumer metadata).
const OWNER_DATABASE: &str = "lifewatch.database";
const OWNER_HOST: &str = "lifewatch.host";
const OWNER_PID: &str = "lifewatch.pid";
const OWNER_STARTED: &str = "lifewatch.started";
/// Set when the owner stopped cleanly: the consumer is free at once.
const OWNER_RELEASED: &str = "lifewatch.released";

/// The monitor that binds the durable consumer: written into the consumer's
/// metadata when lifewatch creates it, and compared with the owner written
/// there when it binds, so that a second monitor configured with the same
/// consumer name refuses to start instead of deleting the consumer under
/// the first (SPEC.md section 6).
///
/// The owner is the database on a host: the store's lock allows one
/// monitor per database, so a consumer whose metadata names this database
/// on this host belongs to this monitor or to an earlier run of it that
/// stopped, and is always taken back. The process id and start time are
/// there for the message that names another owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerOwner {
    database: String,
    host: String,
    pid: u32,
    started: String,
    /// The creation time (Unix nanoseconds) of the consumer this process
    /// created last: that consumer is this monitor's own even on a server
    /// that does not keep metadata.
    created: Option<i128>,
}

impl ConsumerOwner {
    /// This process, monitoring the database at `database` (made canonical
    /// when it can be, so that two spellings of one path are one owner).
    pub fn this_process(database: &std::path::Path) -> ConsumerOwner {
        let database = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_path_buf());
        let started =
            crate::validate::wall_clock().map_or_else(|| "unknown".to_string(), |now| now.to_string());
        ConsumerOwner {
            database: database.display().to_string(),
            host: host_name(),
            pid: std::process::id(),
            started,
            created: None,
        }
    }

    fn metadata(&self) -> std::collections::HashMap<String, String> {
        [
            (OWNER_DATABASE, self.database.clone()),
            (OWNER_HOST, self.host.clone()),
            (OWNER_PID, self.pid.to_string()),
            (OWNER_STARTED, self.started.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }
}

/// The host name, for the owner description: the kernel's on Linux, else
/// `HOSTNAME` from the environment, else `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// What a monitor found bound to the consumer name it was configured with.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Claim {
    /// This monitor's own consumer, or an earlier run's on the same database.
    Own,
    /// Another monitor's, released when it stopped cleanly: taken over. The
    /// owner, for the log.
    Released(String),
    /// Another monitor's (or one of unknown owner), idle for longer than
    /// [`OWNER_IDLE_LIMIT`]: taken over. The owner, for the log.
    Idle(String),
    /// Another monitor's, in use: the owner and what shows it is in use.
    InUse { owner: String, activity: String },
}

/// What the server says about an existing consumer, as [`judge`] needs it.
struct Seen<'a> {
    metadata: &'a std::collections::HashMap<String, String>,
    /// When the server created it (Unix nanoseconds).
    created: i128,
    /// Pull requests waiting on it.
    waiting: usize,
    /// The latest delivery or acknowledgement (Unix nanoseconds), if any.
    last_active: Option<i128>,
}

/// Decides whether `seen` may be taken by `me` at `now` (Unix nanoseconds).
///
/// The rule: a consumer whose metadata names this database on this host, or
/// that this process created, is this monitor's own. One whose owner
/// released it when it stopped cleanly is free. Any other consumer
/// (another owner, or no owner when an older lifewatch created it) is in
/// use when a pull request waits on it or something was delivered or
/// acknowledged within [`OWNER_IDLE_LIMIT`]; otherwise it is idle and
/// taken over. A running monitor always has a pull request waiting, so a
/// live one is never taken over, and one that stopped releases the name
/// within [`OWNER_IDLE_LIMIT`].
fn judge(seen: &Seen<'_>, me: &ConsumerOwner, now: i128) -> Claim {
    if me.created == Some(seen.created) {
        return Claim::Own;
    }
    let field = |key: &str| seen.metadata.get(key).map(String::as_str);
    if field(OWNER_DATABASE) == Some(me.database.as_str()) && field(OWNER_HOST) == Some(me.host.as_str()) {
        return Claim::Own;
    }
    let owner = match (field(OWNER_DATABASE), field(OWNER_HOST)) {
        (Some(database), host) => format!(
            "lifewatch pid {} on host {} with database {database}, started {}",
            field(OWNER_PID).unwrap_or("unknown"),
            host.unwrap_or("unknown"),
            field(OWNER_STARTED).unwrap_or("at an unknown time"),
        ),
        (None, _) => "an unknown owner (the consumer has no lifewatch owner metadata)".to_string(),
    };
    if let Some(released) = field(OWNER_RELEASED) {
        return Claim::Released(format!("{owner}, stopped {released}"));
    }
    if seen.waiting > 0 {
        return Claim::InUse { owner, activity: format!("{} pull request(s) waiting on it", seen.waiting) };
    }
    let limit = OWNER_IDLE_LIMIT.as_nanos() as i128;
    match seen.last_active {
        Some(last) if now - last < limit => Claim::InUse {
            owner,
            activity: format!("last active {} s ago", ((now - last).max(0) / 1_000_000_000)),
        },
        _ => Claim::Idle(owner),
    }
}

/// The durable pull consumer of the monitor: explicit acks, delivering the
/// stream in sequence order from `start` (the sequence after the last one
/// committed; `None`: from the beginning).
///
/// The consumer is deleted and created afresh every time: its own record of
/// what was delivered cannot be trusted after a crash, because messages
/// delivered but never committed would only come back after `ack_wait`,
/// behind newer ones, and the engine must see events in stream order to
/// reach the state `replay` reaches. The store's checkpoint is the truth.
///
/// Before that, the existing consumer's owner is checked ([`judge`]): a
/// consumer another running monitor uses is left as it is, and binding
/// fails with [`NatsError::ConsumerInUse`]. The consumer is created with
/// `owner` in its metadata, and with the strict create action, so that a
/// monitor that created it between this one's delete and create is found
/// too rather than having its consumer changed.
pub async fn bind_consumer(
    lifecycle: &stream::Stream,
    stream_name: &str,
    settings: &StreamSettings,
    start: Option<u64>,
    owner: &mut ConsumerOwner,
) -> Result<consumer::PullConsumer, NatsError> {
    let consumer_error = |source: Box<dyn std::error::Error + Send + Sync>| NatsError::Consumer {
        stream: stream_name.to_string(),
        consumer: settings.consumer.clone(),
        source,
    };
    let in_use = |owner: String, activity: String| NatsError::ConsumerInUse {
        stream: stream_name.to_string(),
        consumer: settings.consumer.clone(),
        owner,
        activity,
    };
    match lifecycle.consumer_info(&settings.consumer).await {
        Ok(info) => match judge(&seen(&info), owner, now_nanos()) {
            Claim::Own => {}
            Claim::Released(other) => {
                tracing::info!(consumer = %settings.consumer, owner = %other, "taking over a consumer another monitor released")
            }
            Claim::Idle(other) => tracing::warn!(
                consumer = %settings.consumer,
                owner = %other,
                idle_limit_s = OWNER_IDLE_LIMIT.as_secs(),
                "taking over a consumer another monitor left idle"
            ),
            Claim::InUse { owner, activity } => return Err(in_use(owner, activity)),
        },
        Err(error) if error.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {}
        Err(error) => return Err(consumer_error(Box::new(error))),
    }
    if let Err(error) = lifecycle.delete_consumer(&settings.consumer).await {
        let missing = matches!(
            error.kind(),
            stream::ConsumerErrorKind::JetStream(ref js)
                if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
        );
        if !missing {
            return Err(consumer_error(Box::new(error)));
        }
    }
    let deliver_policy = match start {
        Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        None => consumer::DeliverPolicy::All,
    };
    let config = consumer::pull::Config {
        durable_name: Some(settings.consumer.clone()),
        description: Some("lifewatch live monitor".to_string()),
        deliver_policy,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_ack_pending: settings.max_ack_pending,
        metadata: owner.metadata(),
        ..Default::default()
    };
    match lifecycle.create_consumer_strict(config).await {
        Ok(consumer) => {
            owner.created = Some(consumer.cached_info().created.unix_timestamp_nanos());
            Ok(consumer)
        }
        Err(error) if error.kind() == stream::ConsumerCreateStrictErrorKind::AlreadyExists => {
            // Another monitor created it after this one deleted it.
            let other = match lifecycle.consumer_info(&settings.consumer).await {
                Ok(info) => match judge(&seen(&info), owner, now_nanos()) {
                    Claim::InUse { owner, .. } | Claim::Idle(owner) | Claim::Released(owner) => owner,
                    Claim::Own => "this monitor's database".to_string(),
                },
                Err(_) => "another monitor".to_string(),
            };
            Err(in_use(other, "created by it while this monitor was binding".to_string()))
        }
        Err(error) => Err(consumer_error(Box::new(error))),
    }
}

/// How long a stopping monitor waits for the server to release its consumer.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Marks the consumer this process created as released (`lifewatch.released`
/// in its metadata, the only change), when its monitor stops cleanly: it
/// sends no pull request any more, so another monitor may take the consumer
/// at once rather than after [`OWNER_IDLE_LIMIT`]. Nothing is done when
/// the consumer on the server is not the one this process created (it was
/// taken over, or deleted). A failure is only logged: the consumer is then
/// free once it has been idle for [`OWNER_IDLE_LIMIT`].
pub(crate) async fn release_consumer(
    jetstream: &jetstream::Context,
    stream_name: &str,
    consumer_name: &str,
    owner: &ConsumerOwner,
) {
    let Some(created) = owner.created else { return };
    let release = async {
        let stream = jetstream.get_stream(stream_name).await?;
        let info = stream.consumer_info(consumer_name).await?;
        if info.created.unix_timestamp_nanos() != created {
            return Ok(false);
        }
        let mut config = info.config;
        let released = crate::validate::wall_clock()
            .map_or_else(|| "at an unknown time".to_string(), |now| format!("at {now}"));
        config.metadata.insert(OWNER_RELEASED.to_string(), released);
        stream.update_consumer(config).await?;
        Ok::<bool, Box<dyn std::error::Error + Send + Sync>>(true)
    };
    match tokio::time::timeout(RELEASE_WAIT, release).await {
        Ok(Ok(true)) => tracing::info!(consumer = consumer_name, "consumer released for another monitor"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => {
            tracing::warn!(consumer = consumer_name, %error, "could not release the consumer; it is free once idle")
        }
        Err(_) => tracing::warn!(
            consumer = consumer_name,
            "the server did not answer in time to release the consumer; it is free once idle"
        ),
    }
}

fn seen(info: &consumer::Info) -> Seen<'_> {
    let active = |sequence: &consumer::SequenceInfo| sequence.last_active.map(|at| at.unix_timestamp_nanos());
    Seen {
        metadata: &info.config.metadata,
        created: info.created.unix_timestamp_nanos(),
        waiting: info.num_waiting,
        last_active: active(&info.delivered).max(active(&info.ack_floor)),
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i128::try_from(since.as_nanos()).unwrap_or(i128::MAX))
}

/// The subject a rejected message is republished to: `lifewatch.rejected.<reason>`.
pub fn rejected_subject(reason: lifewatch_core::RejectReason) -> String {
    format!("lifewatch.rejected.{reason}")
}

/// `text` made safe as one token of the lifecycle subject of a raw line
/// (`lifewatch publish --raw`): characters that NATS gives a meaning (`.`,
/// `*`, `>`, white space) become `_`. Such a line is invalid and is
/// rejected by the monitor whatever its subject, so readability matters more
/// than keeping two texts apart; incident subjects are built by
/// [`lifewatch_core::incident_subject`], which does keep them apart.
pub fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "_".to_string();
    }
    text.chars()
        .map(
            |c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() { '_' } else { c },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(database: &str, host: &str) -> ConsumerOwner {
        ConsumerOwner {
            database: database.to_string(),
            host: host.to_string(),
            pid: 7,
            started: "2026-12-04T21:00:00Z".to_string(),
            created: None,
        }
    }

    const SECOND: i128 = 1_000_000_000;
    const NOW: i128 = 1_000_000 * SECOND;

    fn seen(
        metadata: &std::collections::HashMap<String, String>,
        waiting: usize,
        idle_s: Option<i128>,
    ) -> Seen<'_> {
        Seen { metadata, created: 5, waiting, last_active: idle_s.map(|idle| NOW - idle * SECOND) }
    }

    #[test]
    fn the_same_database_on_the_same_host_is_the_same_owner_even_while_pulls_wait() {
        let me = owner("/data/a.db", "h1");
        let metadata = owner("/data/a.db", "h1").metadata();
        assert_eq!(judge(&seen(&metadata, 3, Some(0)), &me, NOW), Claim::Own);
    }

    #[test]
    fn another_database_or_host_in_use_is_refused_and_named() {
        let me = owner("/data/a.db", "h1");
        for other in [owner("/data/b.db", "h1"), owner("/data/a.db", "h2")] {
            let metadata = other.metadata();
            let Claim::InUse { owner, activity } = judge(&seen(&metadata, 1, None), &me, NOW) else {
                panic!("a waiting pull request means in use")
            };
            assert!(owner.contains(&other.database) && owner.contains(&other.host), "{owner}");
            assert!(activity.contains("1 pull request"), "{activity}");
            assert!(matches!(judge(&seen(&metadata, 0, Some(59)), &me, NOW), Claim::InUse { .. }));
            assert!(matches!(judge(&seen(&metadata, 0, Some(61)), &me, NOW), Claim::Idle(_)));
            assert!(matches!(judge(&seen(&metadata, 0, None), &me, NOW), Claim::Idle(_)));
        }
    }

    #[test]
    fn a_consumer_released_by_another_owner_is_free_at_once() {
        let me = owner("/data/a.db", "h1");
        let mut metadata = owner("/data/b.db", "h1").metadata();
        metadata.insert(OWNER_RELEASED.to_string(), "at 2026-12-04T21:00:00Z".to_string());
        let Claim::Released(other) = judge(&seen(&metadata, 1, Some(0)), &me, NOW) else {
            panic!("released")
        };
        assert!(other.contains("/data/b.db") && other.contains("stopped at"), "{other}");
    }

    #[test]
    fn a_consumer_without_owner_is_judged_by_activity_only() {
        let me = owner("/data/a.db", "h1");
        let none = std::collections::HashMap::new();
        let Claim::InUse { owner, .. } = judge(&seen(&none, 1, None), &me, NOW) else { panic!("in use") };
        assert!(owner.contains("unknown owner"), "{owner}");
        assert!(matches!(judge(&seen(&none, 0, Some(120)), &me, NOW), Claim::Idle(_)));
    }

    #[test]
    fn the_consumer_this_process_created_is_its_own_without_metadata() {
        let mut me = owner("/data/a.db", "h1");
        me.created = Some(5);
        let none = std::collections::HashMap::new();
        assert_eq!(judge(&seen(&none, 2, Some(0)), &me, NOW), Claim::Own);
    }

    #[test]
    fn wildcards_cover_as_nats_matches() {
        assert!(covers("incidents.>", "incidents.stuck.account.*"));
        assert!(covers("incidents.*.account.*", "incidents.stuck.account.*"));
        assert!(covers("incidents.stuck.account.*", "incidents.stuck.account.*"));
        assert!(covers(">", "lifewatch.rejected.malformed"));
        assert!(!covers("incidents.stuck.>", "incidents.quota_breach.account.*"));
        assert!(!covers("incidents.stuck.account.acc_1", "incidents.stuck.account.*"));
        assert!(!covers("incidents.*", "incidents.stuck.account.*"));
        assert!(!covers("incidents.stuck.account.*.>", "incidents.stuck.account.*"));
        assert!(!covers("incidents.*.*.*", "incidents.>"));
        assert!(!covers("lifecycle.>", "lifecycle"));
    }

    #[test]
    fn the_subjects_lifewatch_creates_cover_everything_it_uses() {
        for role in [StreamRole::Lifecycle, StreamRole::Incidents, StreamRole::Rejected] {
            let used = used_subjects(role);
            assert!(!used.is_empty());
            assert_eq!(uncovered(&[role.subjects().to_string()], &used), None, "{role:?}");
        }
    }

    #[test]
    fn a_narrow_stream_names_the_first_subject_it_misses() {
        let used = used_subjects(StreamRole::Incidents);
        let missing = uncovered(&["incidents.stuck.>".to_string()], &used);
        assert_eq!(missing.as_deref(), Some("incidents.provisioning_failed.account.*"));
        let split: Vec<String> = IncidentKind::ALL.iter().map(|kind| format!("incidents.{kind}.>")).collect();
        assert_eq!(uncovered(&split, &used), None, "subjects split per kind still cover everything");
    }
}
