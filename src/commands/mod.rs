//! One module per command, each with its clap arguments (where it has its
//! own), its `Examples:` help section and a `run` function. The commands
//! over a database read through `lifewatch_store` (the typed answers of
//! `lifewatch_store::query`) and render with `crate::output`.

pub mod act;
pub mod backtest;
pub mod backup;
pub mod check;
pub mod comms;
pub mod completions;
pub mod config;
pub mod deliveries;
pub mod demo;
pub mod drill;
pub mod incidents;
pub mod notify;
pub mod outbox;
pub mod publish;
pub mod rebuild;
pub mod redrive;
pub mod rejected;
pub mod replay;
pub mod replay_db;
pub mod report;
pub mod risks;
pub mod run;
pub mod serve;
pub mod show;
pub mod simulate;
pub mod tail;
pub mod verify;

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use lifewatch_core::{IncidentKind, RejectReason, Timestamp};

use crate::config::AppConfig;

/// `--db` of the commands that read or repair a database. `LIFEWATCH_DB`
/// gives it when the flag is left out. (`replay --db` has its own flag
/// without the variable: there `--db` switches to persisting, which a
/// variable set for the on-call commands must not do behind one's back.)
#[derive(Args)]
pub struct DbArg {
    /// The database.
    #[arg(long, env = "LIFEWATCH_DB", value_name = "PATH")]
    pub db: PathBuf,
}

/// `--config` of the commands that need the engine's settings.
#[derive(Args)]
pub struct ConfigArg {
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration named, or the built-in one.
    pub fn load(&self) -> anyhow::Result<AppConfig> {
        Ok(AppConfig::load(self.config.as_deref())?)
    }
}

/// `--kind` values.
pub fn parse_kind(text: &str) -> anyhow::Result<IncidentKind> {
    IncidentKind::parse(text).ok_or_else(|| anyhow!("{text:?} is not an incident kind"))
}

/// `--reason` values.
pub fn parse_reason(text: &str) -> anyhow::Result<RejectReason> {
    RejectReason::parse(text).ok_or_else(|| anyhow!("{text:?} is not a rejection reason"))
}

/// Times as a person types them (`--now`, `--since`, `--start`): RFC 3339,
/// `now` (the wall clock), or a time before now such as `-1h`, `-30m` or
/// `-2d`.
pub fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    parse_time_at(text, wall_clock())
}

/// [`parse_time`] with the wall clock given, for tests.
fn parse_time_at(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = lifewatch_core::Duration::parse_human(ago)
            .map_err(|message| anyhow!("{text:?} is not a time before now such as -1h or -2d: {message}"))?;
        return Ok(now.saturating_sub(ago));
    }
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        anyhow!("{text:?} is not a time: give RFC 3339 with an offset (2026-11-27T12:00:00Z), now, or -1h")
    })
}

/// The wall clock as a [`Timestamp`].
fn wall_clock() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    Timestamp::from_unix_nanos(nanos)
}

/// Human durations (`--duration 5m`).
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let duration = lifewatch_core::Duration::parse_human(text).map_err(|message| anyhow!(message))?;
    u64::try_from(duration.as_nanos())
        .map(std::time::Duration::from_nanos)
        .map_err(|_| anyhow!("{text:?} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_taken_as_a_person_types_them() {
        let now = Timestamp::parse_rfc3339("2026-12-04T12:00:00Z").unwrap();
        assert_eq!(parse_time_at("now", now).unwrap(), now);
        assert_eq!(parse_time_at("-1h", now).unwrap().to_string(), "2026-12-04T11:00:00Z");
        assert_eq!(parse_time_at("-2d", now).unwrap().to_string(), "2026-12-02T12:00:00Z");
        assert_eq!(parse_time_at("-1h30m", now).unwrap().to_string(), "2026-12-04T10:30:00Z");
        assert_eq!(
            parse_time_at("2026-11-27T12:00:00+01:00", now).unwrap().to_string(),
            "2026-11-27T11:00:00Z"
        );
        for wrong in ["-", "-1x", "yesterday", "1h", "-15m15m"] {
            assert!(parse_time_at(wrong, now).is_err(), "{wrong}");
        }
    }
}
