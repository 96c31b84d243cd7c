//! `report stuck`: what is stuck at an instant, grouped by owner and state,
//! oldest first.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use lifewatch_core::{Config, IncidentKind, SubjectType, Timestamp};
use lifewatch_store::Store;
use lifewatch_store::query::{self, JudgedAt, StuckEntity};

use crate::commands::{ConfigArg, DbArg, parse_time};
use crate::output::{self, Format, Table};

/// The `Examples:` section of `lifewatch report --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch report stuck --db /tmp/lifewatch.db";

/// The `Examples:` section of `lifewatch report stuck --help`.
pub const STUCK_EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch report stuck --db /tmp/lifewatch.db --now 2026-11-28T00:00:00Z --format jsonl";

/// `lifewatch report` reports.
#[derive(Subcommand)]
pub enum ReportCommand {
    /// What is stuck now, grouped by owner and state, oldest first, with how long
    /// past its deadline each one is.
    #[command(after_help = STUCK_EXAMPLES)]
    Stuck(StuckArgs),
}

/// `lifewatch report stuck` arguments.
#[derive(Args)]
pub struct StuckArgs {
    #[command(flatten)]
    db: DbArg,
    /// The instant to judge at: RFC 3339, `now` (the wall clock) or a time
    /// before now such as `-1h`. Default: the database's clock.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    now: Option<Timestamp>,
    /// Only what this team owns.
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch report`.
pub fn main(report: ReportCommand) -> anyhow::Result<ExitCode> {
    match report {
        ReportCommand::Stuck(StuckArgs { db, now, owner, config, format }) => {
            stuck(&db.db, now, owner.as_deref(), &config.load()?.engine, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the stuck report at `now` (default: the database's clock), of
/// `owner`'s entities only when given.
pub fn stuck(
    db: &Path,
    now: Option<Timestamp>,
    owner: Option<&str>,
    config: &Config,
    format: Format,
) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let Some(mut report) = query::stuck_report(&store, config, now)? else {
        eprintln!("lifewatch: {} holds no events yet: nothing is stuck", db.display());
        return Ok(());
    };
    if let Some(owner) = owner {
        // A team that owns no kind of incident is a typing mistake, not an
        // all-clear: name the teams the configuration routes to.
        let owners: std::collections::BTreeSet<&str> = IncidentKind::ALL
            .iter()
            .flat_map(|&kind| SubjectType::ALL.iter().map(move |&subject| config.owner(kind, subject)))
            .collect();
        if !owners.contains(owner) {
            let known: Vec<&str> = owners.into_iter().collect();
            anyhow::bail!(crate::error::UsageError::Option {
                option: "--owner",
                message: format!(
                    "no team {} in the configuration; its teams are {}",
                    output::terminal_safe(&format!("{owner:?}")),
                    known.join(", ")
                ),
            });
        }
        report.entities.retain(|item| item.owner == owner);
    }
    // Which clock the report is judged at is said on every run: an on-call
    // engineer must never read "nothing is stuck" without knowing "as of when".
    let clock = match report.judged_at {
        JudgedAt::Given => "--now",
        JudgedAt::StoreClock => "the store's clock",
        JudgedAt::LatestCommittedEvent => {
            eprintln!(
                "lifewatch: the store's clock has not been set ({} holds committed events but no clock: \
                 a `replay --db` is still running or was interrupted); judging at the latest committed \
                 event time, {}",
                db.display(),
                report.now
            );
            "the latest committed event"
        }
    };
    if format != Format::Table {
        eprintln!(
            "lifewatch: stuck at {} ({clock}): {}",
            report.now,
            output::plural(report.entities.len(), "entity")
        );
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for item in &report.entities {
                output::write_json_line(&mut out, item)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, report.entities.iter())?,
        Format::Table => {
            writeln!(
                out,
                "stuck at {} ({clock}): {}",
                report.now,
                output::plural(report.entities.len(), "entity")
            )?;
            let group = |item: &StuckEntity| (item.owner.clone(), item.entity.entity_type, item.state);
            for items in report.entities.chunk_by(|a, b| group(a) == group(b)) {
                let first = &items[0];
                writeln!(
                    out,
                    "\n{} — {} {} ({})",
                    output::terminal_safe(&first.owner),
                    first.entity.entity_type,
                    first.state,
                    items.len()
                )?;
                let mut table =
                    Table::new(&["ENTITY", "ENTERED", "PAST DEADLINE", "ACCOUNT", "REGION", "INCIDENT"]);
                for item in items {
                    table.row([
                        item.entity.id.clone(),
                        item.entered_at.to_string(),
                        output::rounded_duration(item.past_deadline),
                        item.account_id.clone().unwrap_or_else(|| "-".to_string()),
                        item.region.clone().unwrap_or_else(|| "-".to_string()),
                        item.incident_id.clone().unwrap_or_else(|| "-".to_string()),
                    ]);
                }
                table.write(&mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
