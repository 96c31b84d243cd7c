//! `lifewatch backtest --db DB --config NEW.toml [--since T]`: what a changed
//! configuration would have done to the incidents of a stored log, before it
//! ships. The log (events, the live clock's ticks and people's actions) is
//! refolded under NEW in memory, read-only, and its incidents are compared
//! with the stored ones, which the current configuration produced.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{IncidentRecord, Timestamp};
use lifewatch_store::{Store, query};
use serde::Serialize;

use crate::commands::{DbArg, parse_time};
use crate::config::AppConfig;
use crate::output::{self, Format, Table};
use crate::progress::{Measure, Progress};

/// The `Examples:` section of `lifewatch backtest --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  printf '[deadlines.project]\\nprovisioning = \"5m\"\\n' > /tmp/shorter.toml
  lifewatch backtest --db /tmp/lifewatch.db --config /tmp/shorter.toml
  lifewatch backtest --db /tmp/lifewatch.db --config /tmp/shorter.toml --since 2026-11-27T12:00:00Z -o json

The database is only read (a monitor may be writing it). Incidents are
paired by their key and, for a key that opened several times, in order of
opening. Exit 0 whether or not anything differs; 2 for a bad --config.";

/// `lifewatch backtest` arguments.
#[derive(Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    db: DbArg,
    /// The changed configuration (overlaid on the built-in one, as everywhere).
    #[arg(long, value_name = "NEW.toml")]
    config: PathBuf,
    /// Compare only incidents opened at or after this time (RFC 3339, `now`
    /// or `-7d`); the whole log is still refolded.
    #[arg(long, value_name = "T", value_parser = parse_time, allow_hyphen_values = true)]
    since: Option<Timestamp>,
    /// Output format: table for people, json or jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// What a changed configuration does to one incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Opened under NEW, not under the current configuration.
    Opened,
    /// Opened under the current configuration, not under NEW.
    Closed,
    /// Another owner.
    Rerouted,
    /// Another severity.
    Regraded,
    /// The same incident at other times (opened, or resolved).
    Retimed,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What changes (an incident can be rerouted and regraded: one each).
    pub change: ChangeKind,
    /// The incident as stored (absent when NEW opens it).
    pub current: Option<IncidentRecord>,
    /// The incident under NEW (absent when NEW does not open it).
    pub new: Option<IncidentRecord>,
}

/// The totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Incidents compared under the current configuration.
    pub current: usize,
    /// Incidents compared under NEW.
    pub new: usize,
    /// Per kind of change.
    pub opened: usize,
    /// See [`ChangeKind::Closed`].
    pub closed: usize,
    /// See [`ChangeKind::Rerouted`].
    pub rerouted: usize,
    /// See [`ChangeKind::Regraded`].
    pub regraded: usize,
    /// See [`ChangeKind::Retimed`].
    pub retimed: usize,
}

/// The differences between two sets of incidents of one log: paired by key
/// and, within a key, by order of opening; only incidents opened at or
/// after `since` count. Sans-IO.
pub fn compare(
    current: &[IncidentRecord],
    new: &[IncidentRecord],
    since: Option<Timestamp>,
) -> (Summary, Vec<Difference>) {
    let keep = |record: &&IncidentRecord| since.is_none_or(|since| record.opened_at >= since);
    let group = |records: &[IncidentRecord]| {
        let mut by_key: BTreeMap<String, Vec<IncidentRecord>> = BTreeMap::new();
        for record in records.iter().filter(keep) {
            by_key.entry(record.key.clone()).or_default().push(record.clone());
        }
        for list in by_key.values_mut() {
            list.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        }
        by_key
    };
    let (current, new) = (group(current), group(new));
    let mut summary = Summary {
        current: current.values().map(Vec::len).sum(),
        new: new.values().map(Vec::len).sum(),
        ..Summary::default()
    };
    let mut differences = Vec::new();
    let keys: std::collections::BTreeSet<&String> = current.keys().chain(new.keys()).collect();
    for key in keys {
        let before = current.get(key).map_or(&[][..], Vec::as_slice);
        let after = new.get(key).map_or(&[][..], Vec::as_slice);
        for index in 0..before.len().max(after.len()) {
            let pair = (before.get(index), after.get(index));
            let mut push = |change| {
                differences.push(Difference { change, current: pair.0.cloned(), new: pair.1.cloned() })
            };
            match pair {
                (Some(_), None) => push(ChangeKind::Closed),
                (None, Some(_)) => push(ChangeKind::Opened),
                (Some(old), Some(changed)) => {
                    if old.owner != changed.owner {
                        push(ChangeKind::Rerouted);
                    }
                    if old.severity != changed.severity {
                        push(ChangeKind::Regraded);
                    }
                    if old.opened_at != changed.opened_at || old.resolved_at != changed.resolved_at {
                        push(ChangeKind::Retimed);
                    }
                }
                (None, None) => {}
            }
        }
    }
    differences.sort_by(|a, b| {
        let at = |difference: &Difference| {
            difference.current.as_ref().or(difference.new.as_ref()).map(|record| record.opened_at)
        };
        at(a).cmp(&at(b)).then_with(|| a.change.cmp(&b.change))
    });
    for difference in &differences {
        match difference.change {
            ChangeKind::Opened => summary.opened += 1,
            ChangeKind::Closed => summary.closed += 1,
            ChangeKind::Rerouted => summary.rerouted += 1,
            ChangeKind::Regraded => summary.regraded += 1,
            ChangeKind::Retimed => summary.retimed += 1,
        }
    }
    (summary, differences)
}

/// `lifewatch backtest`.
pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(Some(&args.config))?;
    let store = Store::open_read_only(&args.db.db)?;
    let progress = std::cell::OnceCell::new();
    let mut refolded = |done: u64, total: u64| {
        progress
            .get_or_init(|| Progress::on_terminal(false, "backtest", Measure::Count("events"), Some(total)))
            .set_position(done);
    };
    let (current, new) = store.snapshot(|store| {
        let current = query::incidents(store, &query::IncidentQuery::default())?.incidents;
        let (engine, _) = store.restore_with_progress(config.engine.clone(), &mut refolded)?;
        Ok((current, engine.records()))
    })?;
    if let Some(progress) = progress.get() {
        progress.finish();
    }
    let (summary, differences) = compare(&current, &new, args.since);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"summary": summary, "differences": differences}),
            )?;
            writeln!(out)?;
        }
        Format::Jsonl => {
            for difference in &differences {
                output::write_json_line(&mut out, difference)?;
            }
        }
        Format::Table => {
            let mut table =
                Table::new(&["CHANGE", "KIND", "ENTITY", "OPENED", "OWNER", "SEVERITY", "NOW → UNDER NEW"]);
            for difference in &differences {
                let record = difference.current.as_ref().or(difference.new.as_ref());
                let Some(record) = record else { continue };
                let side = |record: Option<&IncidentRecord>| {
                    record.map_or_else(
                        || "-".to_string(),
                        |record| {
                            let resolved = record
                                .resolved_at
                                .map_or_else(|| "open".to_string(), |at| format!("resolved {at}"));
                            format!(
                                "{} {} {} {}",
                                record.owner,
                                record.severity.as_str(),
                                record.opened_at,
                                resolved
                            )
                        },
                    )
                };
                table.row([
                    format!("{:?}", difference.change).to_lowercase(),
                    record.kind.as_str().to_string(),
                    format!("{} {}", record.entity.entity_type.as_str(), record.entity.id),
                    record.opened_at.to_string(),
                    record.owner.clone(),
                    record.severity.as_str().to_string(),
                    format!("{} → {}", side(difference.current.as_ref()), side(difference.new.as_ref())),
                ]);
            }
            if !differences.is_empty() {
                table.write(&mut out)?;
            }
            writeln!(
                out,
                "backtest: {} incidents now, {} under {}: {} opened, {} closed, {} rerouted, {} regraded, {} retimed",
                summary.current,
                summary.new,
                output::terminal_safe(&args.config.display().to_string()),
                summary.opened,
                summary.closed,
                summary.rerouted,
                summary.regraded,
                summary.retimed
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifewatch_core::{EntityRecord, IncidentKind, Severity, Status, SubjectType};

    fn record(key: &str, opened: i64, owner: &str, severity: Severity) -> IncidentRecord {
        IncidentRecord {
            id: format!("inc_{key}_{opened}"),
            key: key.to_string(),
            kind: IncidentKind::Stuck,
            severity,
            status: Status::Open,
            entity: EntityRecord { entity_type: SubjectType::Project, id: key.to_string() },
            account_id: None,
            region: None,
            state: Some("provisioning".into()),
            owner: owner.to_string(),
            runbook: "ops/runbooks/stuck.md".into(),
            opened_at: Timestamp::from_unix_seconds(opened),
            resolved_at: None,
            summary: String::new(),
            count: 1,
            events: Vec::new(),
        }
    }

    #[test]
    fn each_kind_of_difference_is_found_once() {
        let current = vec![
            record("a", 100, "platform-oncall", Severity::Error),
            record("b", 100, "platform-oncall", Severity::Error),
            record("c", 100, "platform-oncall", Severity::Error),
            record("same", 100, "platform-oncall", Severity::Error),
        ];
        let new = vec![
            record("a", 100, "launch-ops", Severity::Warning),
            record("c", 40, "platform-oncall", Severity::Error),
            record("d", 100, "platform-oncall", Severity::Error),
            record("same", 100, "platform-oncall", Severity::Error),
        ];
        let (summary, differences) = compare(&current, &new, None);
        assert_eq!(
            (summary.opened, summary.closed, summary.rerouted, summary.regraded, summary.retimed),
            (1, 1, 1, 1, 1),
            "{differences:#?}"
        );
        assert_eq!((summary.current, summary.new), (4, 4));
        let (summary, _) = compare(&current, &current, None);
        assert_eq!(
            (summary.opened, summary.closed, summary.rerouted, summary.regraded, summary.retimed),
            (0, 0, 0, 0, 0)
        );
        // --since keeps only what opened from then on.
        let (summary, differences) = compare(&current, &new, Some(Timestamp::from_unix_seconds(50)));
        assert_eq!((summary.current, summary.new), (4, 3), "{differences:#?}");
    }
}
