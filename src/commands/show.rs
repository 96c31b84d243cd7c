//! `show`: an entity's timeline, its incidents and its rejected events.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::EntityType;
use lifewatch_store::Store;
use lifewatch_store::query::{self, EntitySummary, RejectedEvent, TimelineEntry};
use serde::Serialize;

use crate::commands::DbArg;
use crate::output::{self, Format, Table, terminal_safe};

/// One line of `show --format jsonl`: an object with one member that says
/// what the line is.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Line<'a> {
    Entity(&'a EntitySummary),
    Event(&'a TimelineEntry),
    /// The record with its members in alphabetical order, as `show` has
    /// always printed it (through a `serde_json::Value`, whose map is sorted).
    Incident(serde_json::Value),
    Rejected(ShownRejection<'a>),
}

/// A rejected input as `show` prints it: its subject is the entity shown,
/// and its id is left out.
#[derive(Serialize)]
struct ShownRejection<'a> {
    detail: &'a str,
    origin: &'a str,
    payload: &'a str,
    reason: &'a str,
    redriven: Option<&'a str>,
}

impl<'a> From<&'a RejectedEvent> for ShownRejection<'a> {
    fn from(rejection: &'a RejectedEvent) -> ShownRejection<'a> {
        ShownRejection {
            detail: &rejection.detail,
            origin: &rejection.origin,
            payload: &rejection.payload,
            reason: &rejection.reason,
            redriven: rejection.redriven.as_deref(),
        }
    }
}

/// The `Examples:` section of `lifewatch show --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/stuck.jsonl --db /tmp/lifewatch-stuck.db > /dev/null
  lifewatch show --db /tmp/lifewatch-stuck.db dsp_late";

/// `lifewatch show` arguments.
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArg,
    /// The entity id (account, project or dispute).
    entity_id: String,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch show`.
pub fn main(args: ShowArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, &args.entity_id, args.format)
}

/// Prints what is known about the entities with this id; exit 1 when nothing is.
pub fn run(db: &Path, entity_id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(db)?;
    let Some(detail) = query::entity(&store, entity_id)? else {
        eprintln!("lifewatch: nothing is known about {entity_id:?} in {}", db.display());
        return Ok(ExitCode::FAILURE);
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for entity in &detail.entities {
                output::write_json_line(&mut out, &Line::Entity(entity))?;
            }
            for entry in &detail.timeline {
                output::write_json_line(&mut out, &Line::Event(entry))?;
            }
            for record in &detail.incidents {
                output::write_json_line(&mut out, &Line::Incident(serde_json::to_value(record)?))?;
            }
            for rejection in &detail.rejected {
                output::write_json_line(&mut out, &Line::Rejected(rejection.into()))?;
            }
        }
        Format::Table => {
            for entity in &detail.entities {
                let state = entity.state.map_or("-".to_string(), |state| state.to_string());
                let since = entity.entered_at.map_or(String::new(), |at| format!(" since {at}"));
                let mut line = format!("{} {}: {state}{since}", entity.entity_type, entity.id);
                if let Some(account) = &entity.account_id {
                    line.push_str(&format!(", account {account}"));
                }
                if let Some(region) = &entity.region {
                    line.push_str(&format!(", region {region}"));
                }
                if let Some(plan) = &entity.plan {
                    line.push_str(&format!(", plan {plan}"));
                }
                if entity.entity_type == EntityType::Account {
                    line.push_str(&format!(", {} live projects", entity.live_projects));
                }
                writeln!(out, "{}", terminal_safe(&line))?;
            }
            writeln!(out)?;
            let mut table = Table::new(&["TIME", "EVENT", "SOURCE", "STATE", "STAYED", "EVENT ID"]);
            for entry in &detail.timeline {
                let state = match (entry.entered, entry.state_after) {
                    (Some(state), _) => format!("→ {state}"),
                    (None, Some(state)) => format!("  {state}"),
                    (None, None) => "-".to_string(),
                };
                let stayed = match (entry.stayed, entry.still_there) {
                    (Some(stayed), true) => format!("{stayed} so far"),
                    (Some(stayed), false) => stayed.to_string(),
                    (None, _) => String::new(),
                };
                table.row([
                    entry.time.to_string(),
                    entry.event_type.clone(),
                    entry.source.clone(),
                    state,
                    stayed,
                    entry.event_id.clone(),
                ]);
            }
            table.write(&mut out)?;
            writeln!(out, "\n{} events", detail.timeline.len())?;
            if !detail.incidents.is_empty() {
                writeln!(out)?;
                output::write_incident_table(&mut out, &detail.incidents, false)?;
            }
            if !detail.rejected.is_empty() {
                writeln!(out, "\nrejected events for {}:", terminal_safe(entity_id))?;
                let mut table = Table::new(&["ORIGIN", "REASON", "DETAIL", "REDRIVEN"]);
                for rejection in &detail.rejected {
                    table.row([
                        rejection.origin.as_str(),
                        rejection.reason.as_str(),
                        rejection.detail.as_str(),
                        rejection.redriven.as_deref().unwrap_or_default(),
                    ]);
                }
                table.write(&mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
