//! lifewatch-core: the lifecycle engine of lifewatch.
//!
//! It parses CloudEvents lines into typed events (or rejections with a named
//! reason), folds them per entity through the account, project and dispute
//! state machines, detects stuck entities, illegal transitions, failures,
//! quota breaches and regional outages in event time, and describes each as a
//! routed incident record.
//!
//! It does no IO: no files, no sockets, no clock, no async runtime. Drivers
//! (the replay command, the SQLite store, the NATS monitor) feed it events and
//! instants and persist or publish what it reports. See [`Engine`] for the call
//! order.

pub mod comms;
mod config;
mod engine;
mod event;
mod incident;
mod machine;
mod names;
#[cfg(feature = "schema")]
mod schema;
mod time;
mod timeline;
mod wire;

pub use config::{
    Config, ConfigError, DEFAULT_CONFIG_TOML, EscalationTimes, MAX_ESCALATION_REPEATS, OwnerRule, RawConfig,
    SeverityOverride,
};
pub use engine::{Change, Engine, EngineStats, EntityRef, EntityView, OperatorRefusal, Outcome};
pub use event::{
    AccountEvent, DataFieldSpec, DisputeEvent, EntityType, Event, EventType, FieldType, MAX_ID_BYTES,
    MAX_LINE_BYTES, MAX_SUBJECT_CHARS, Payload, ProjectEvent, RejectReason, Rejection, is_valid_entity_id,
    parse_event,
};
pub use incident::{
    EntityRecord, IncidentKind, IncidentRecord, MAX_RECORD_EVENTS, MAX_RECORD_TEXT, Severity, Status,
    SubjectType, Transition, cut_text,
};
pub use machine::{
    AccountMachine, AccountState, DisputeMachine, DisputeState, Machine, ProjectMachine, ProjectState, Rule,
    State, Step, Target, step,
};
#[cfg(feature = "schema")]
pub use schema::{all_schemas, schema_file_text};
pub use time::{Duration, Timestamp};
pub use wire::{
    MAX_MESSAGE_BYTES, bounded_message, escalation_message, incident_message, incident_subject, subject_token,
};
