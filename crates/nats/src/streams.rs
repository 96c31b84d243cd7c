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

/// The durable pull consumer of the monitor: explicit acks, delivering the
/// stream in sequence order from `start` (the sequence after the last one
/// committed; `None`: from the beginning).
///
/// The consumer is deleted and created afresh every time: its own record of
/// what was delivered cannot be trusted after a crash, because messages
/// delivered but never committed would only come back after `ack_wait`,
/// behind newer ones, and the engine must see events in stream order to
/// reach the state `replay` reaches. The store's checkpoint is the truth.
pub async fn bind_consumer(
    lifecycle: &stream::Stream,
    stream_name: &str,
    settings: &StreamSettings,
    start: Option<u64>,
) -> Result<consumer::PullConsumer, NatsError> {
    let consumer_error = |source: Box<dyn std::error::Error + Send + Sync>| NatsError::Consumer {
        stream: stream_name.to_string(),
        consumer: settings.consumer.clone(),
        source,
    };
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
        ..Default::default()
    };
    lifecycle.create_consumer(config).await.map_err(|error| consumer_error(Box::new(error)))
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
