//! One module per command of the work side, each with its clap arguments,
//! its `Examples:` help section and a `run(args) -> anyhow::Result<ExitCode>`.
//! The database commands live in `db_commands` for now.

pub mod check;
pub mod completions;
pub mod publish;
pub mod replay;
pub mod run;
pub mod simulate;

use anyhow::anyhow;
use lifewatch_core::{IncidentKind, RejectReason, Timestamp};

/// `--kind` values.
pub fn parse_kind(text: &str) -> anyhow::Result<IncidentKind> {
    IncidentKind::parse(text).ok_or_else(|| anyhow!("{text:?} is not an incident kind"))
}

/// `--reason` values.
pub fn parse_reason(text: &str) -> anyhow::Result<RejectReason> {
    RejectReason::parse(text).ok_or_else(|| anyhow!("{text:?} is not a rejection reason"))
}

/// RFC 3339 times (`--now`, `--since`, `--start`).
pub fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| anyhow!("{text:?} is not an RFC 3339 time with an offset, e.g. 2026-11-27T12:00:00Z"))
}

/// Human durations (`--duration 5m`).
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let duration = lifewatch_core::Duration::parse_human(text).map_err(|message| anyhow!(message))?;
    u64::try_from(duration.as_nanos())
        .map(std::time::Duration::from_nanos)
        .map_err(|_| anyhow!("{text:?} is negative"))
}
