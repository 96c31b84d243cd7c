//! lifewatch-nats: the NATS JetStream adapter of lifewatch.
//!
//! It creates or binds the streams of SPEC.md section 6 (`LIFECYCLE` on
//! `lifecycle.>`, `INCIDENTS` on `incidents.>`, and `LIFEWATCH_REJECTED` on
//! `lifewatch.rejected.>` so that rejected messages are kept), binds the
//! monitor's durable pull consumer, and runs the live monitor loop
//! ([`run_monitor`]): fetch a batch, validate, feed the sans-IO engine,
//! persist in one store transaction, acknowledge, publish the outbox, re-arm
//! the deadline timer. The outbox's publishing protocol (one message per
//! incident subject in flight, retries, rows refused for good set aside) is
//! [`Outbox`], a state machine without IO that the monitor drives. It also publishes events ([`Publisher`]) for
//! `lifewatch publish` and `lifewatch simulate --nats`, and turns the `[nats]`
//! configuration section and command-line options into connection options
//! ([`NatsConfig`]), and follows the incidents stream for `lifewatch tail`
//! ([`Tail`]).
//!
//! It does not decide anything about events: parsing and detection are
//! lifewatch-core's, persistence is lifewatch-store's. It installs no signal
//! handler and no tracing subscriber: the binary passes the shutdown future
//! in and chooses the log format.

mod connect;
mod error;
mod monitor;
mod options;
mod outbox;
mod publish;
mod streams;
mod tail;
mod telemetry;
mod validate;

pub use connect::{backoff, connect, redact_url};
pub use error::NatsError;
pub use monitor::{MonitorOptions, MonitorTotals, run_monitor};
pub use options::{
    Auth, ConnectKeys, ConnectSettings, NatsConfig, RawNatsConfig, Secret, StreamSettings, Tls,
};
pub use outbox::{FailureKind, Outbox, Ticket};
pub use publish::{Outgoing, PublishTotals, Publisher, publish_one, publishing_context};
pub use streams::{
    ConsumerOwner, CreateStreams, INCIDENTS_SUBJECTS, LIFECYCLE_SUBJECTS, ORIGINAL_SEQUENCE_HEADER,
    ORIGINAL_SUBJECT_HEADER, OWNER_IDLE_LIMIT, REJECT_DETAIL_HEADER, REJECT_REASON_HEADER, REJECTED_SUBJECTS,
    Streams, bind_consumer, ensure_streams, rejected_subject, stream_config, subject_token,
};
pub use tail::{Tail, TailMessage, TailStart};
pub use telemetry::{BatchFigures, CONTENT_TYPE, Readiness, Telemetry, TelemetryError};
pub use validate::{check_future, subject_matches, validate_message, wall_clock};

/// Re-exported so that the binary and tests use the same client version.
pub use async_nats;
