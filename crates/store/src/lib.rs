//! lifewatch-store: the durable, event-sourced state of lifewatch in SQLite.
//!
//! The append-only log of accepted events (raw bytes, arrival order) and the
//! clock ticks between them are the truth; entity projections, incidents,
//! their transitions and the outbox of transitions to publish are derived from
//! it and written in the same transaction as the batch that caused them.
//! Opening a database for writing restores the engine by refolding the log.
//!
//! It does not read files of events, talk to NATS or print anything: drivers
//! (the `replay --db` command, the NATS monitor) feed it, and the on-call
//! commands read through [`Store`] and the typed answers of [`query`]
//! (incidents by page, an incident's history, an entity's timeline, the
//! stuck report, rejected inputs), which the web API serves as they are.
//!
//! Damage never goes unnoticed: [`Store::verify`] runs every check (SQLite's
//! integrity check, the log's blocks, the projections against the log, the
//! log's end against the checkpoints) without writing, a [`Writer`] refuses
//! to open a file whose quick check fails ([`StoreError::Damaged`]), and
//! [`Store::backup`] copies a database safely while a writer runs.
//!
//! # The driver loop
//!
//! ```no_run
//! # fn demo(path: &std::path::Path, batches: Vec<Vec<(Vec<u8>, String)>>) -> Result<(), lifewatch_store::StoreError> {
//! use lifewatch_store::{Fed, Writer};
//!
//! // Takes the single-writer lock, migrates, and refolds the log into the engine.
//! let mut writer = Writer::open(path, lifewatch_core::Config::shipped())?;
//! for batch in batches {
//!     for (raw, origin) in &batch {
//!         // Validates and applies; duplicates (by event id) change nothing.
//!         match writer.feed(raw, origin) {
//!             Fed::Accepted | Fed::Duplicate | Fed::Rejected(_) => {}
//!         }
//!     }
//!     // When the wall clock passes a deadline (see `next_deadline`):
//!     // writer.tick(now);
//!     // The batch, its rejected inputs, ticks and every change the engine
//!     // reported, in one transaction. Acknowledge the batch only after this.
//!     writer.commit()?;
//!     // Publish what the commit queued, then mark it delivered.
//!     let entries = writer.pending_outbox(0, 500)?;
//!     let ids: Vec<i64> = entries.iter().map(|entry| entry.id).collect();
//!     writer.mark_delivered(&ids)?;
//! }
//! # Ok(()) }
//! ```
//!
//! A commit that fails leaves the writer poisoned (the engine is ahead of the
//! database): exit, or open it again, which restores from what was committed.
//!
//! **Architecture Invariant:** everything the engine is fed goes through
//! [`Writer`], so the log holds exactly what the engine saw, and refolding it
//! gives the same state.

mod backup;
mod batch;
mod blocks;
mod checkpoint;
mod deliveries;
mod error;
mod lock;
mod log;
mod operator;
mod project;
pub mod query;
mod read;
mod schema;
mod seqs;
mod verify;
mod writer;

pub use deliveries::{Deliveries, Delivery, DeliveryRouter, RouteQuery, Routing};
pub use error::StoreError;
pub use log::RestoreStats;
pub use operator::{
    ActionKind, MAX_OPERATOR_TEXT, OperatorAction, action_state as operator_action,
    clean_text as clean_operator_text, refusal_before_asking, request as request_operator_action,
};
pub use project::{Difference, StoredEntity};
pub use read::{IncidentFilter, OpenCount, OutboxState, Store, StoreSummary, StoredEvent, StoredRejection};
pub use schema::Durability;
pub use verify::{Check, Verification};
pub use writer::{
    Committed, Fed, OutboxEntry, RedriveSummary, SetAsideEntry, Writer, WriterOptions, derived_under,
    set_aside_outbox,
};
