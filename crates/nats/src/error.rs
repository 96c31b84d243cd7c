//! The errors of the NATS adapter.

use std::path::PathBuf;

/// Why the NATS adapter could not go on. Bad events are never errors: they are
/// rejected with a reason and kept; these are failures of the setup, the
/// server or the store.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The `[nats]` configuration or the command-line connection options are invalid.
    #[error("bad NATS configuration: {0}")]
    Config(String),
    /// A file named in the configuration could not be read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the credentials.
    #[error("NATS server at {url} refused the credentials (authorization violation)")]
    Unauthorized {
        /// The server URL, without any password in it.
        url: String,
    },
    /// The first connection could not be made.
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The server URL, without any password in it.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream could not be created, or a stream to bind to is missing.
    #[error("stream {stream}: {message}")]
    Stream {
        /// The stream name.
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// An existing stream's subjects do not cover a subject lifewatch uses on it.
    #[error(
        "stream {stream} has subjects {}, which do not cover {missing} (lifewatch uses {needed} on it): \
         add the missing subjects to the stream, or delete it so that lifewatch creates it",
        subjects.join(" ")
    )]
    StreamSubjects {
        /// The stream name.
        stream: String,
        /// Its configured subjects.
        subjects: Vec<String>,
        /// The first subject lifewatch uses that none of them covers.
        missing: String,
        /// The subjects lifewatch gives the stream when it creates it.
        needed: String,
    },
    /// No stream takes a subject being published to.
    #[error("no stream takes subject {subject}: the server has no stream whose subjects cover it")]
    NoStream {
        /// The subject.
        subject: String,
    },
    /// The durable consumer could not be created or bound.
    #[error("consumer {consumer} on stream {stream}")]
    Consumer {
        /// The stream name.
        stream: String,
        /// The consumer name.
        consumer: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The durable consumer belongs to another monitor that is running; it
    /// was left as it was.
    #[error(
        "consumer {consumer} on stream {stream} is in use by another monitor: {owner} ({activity}); \
         give each monitor its own `[nats] consumer` name (and its own database), or stop the other \
         monitor (a consumer idle for {idle_s} s is taken over); the consumer was left untouched",
        idle_s = crate::streams::OWNER_IDLE_LIMIT.as_secs()
    )]
    ConsumerInUse {
        /// The stream name.
        stream: String,
        /// The consumer name.
        consumer: String,
        /// Who owns it, as its metadata says.
        owner: String,
        /// What shows that it is in use.
        activity: String,
    },
    /// Publishing failed for good (after the retries the caller allows).
    #[error("publishing to {subject}")]
    Publish {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// The event store failed.
    #[error("event store")]
    Store(#[source] lifewatch_store::StoreError),
    /// The local clock is before 1970 or after 2262.
    #[error("the system clock is out of range")]
    Clock,
}

impl From<lifewatch_store::StoreError> for NatsError {
    fn from(error: lifewatch_store::StoreError) -> Self {
        NatsError::Store(error)
    }
}
