//! `show`: an entity's timeline, its incidents and its rejected events.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::EntityType;
use lifewatch_store::Store;
use lifewatch_store::query::{
    self, EntityDetail, EntitySummary, IncidentQuery, RejectedEvent, TimelineEntry,
};
use serde::Serialize;

use crate::commands::DbArg;
use crate::output::{self, Format, Table, TableView, terminal_safe};

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

/// Every line `show --format jsonl` prints for `detail`, in order.
fn lines(detail: &EntityDetail) -> serde_json::Result<Vec<Line<'_>>> {
    let mut lines: Vec<Line<'_>> = detail.entities.iter().map(Line::Entity).collect();
    lines.extend(detail.timeline.iter().map(Line::Event));
    for record in &detail.incidents {
        lines.push(Line::Incident(serde_json::to_value(record)?));
    }
    lines.extend(detail.rejected.iter().map(|rejection| Line::Rejected(rejection.into())));
    Ok(lines)
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
  lifewatch show --db /tmp/lifewatch-stuck.db dsp_late
  lifewatch replay fixtures/regional_outage.jsonl --db /tmp/lifewatch-outage.db > /dev/null
  lifewatch show --db /tmp/lifewatch-outage.db eu-west-1";

/// `lifewatch show` arguments.
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArg,
    /// What to show, tried in this order: an incident id (`inc_…`: the
    /// record, its transitions and its entity), an entity id (account,
    /// project or dispute: its timeline, incidents and rejected events), or
    /// a region (its regional outage and every incident in it).
    target: String,
    /// What standard output holds. table: for people; jsonl: one JSON object
    /// per line, each named by what it is (`incident`, `transition`,
    /// `entity`, `event`, `rejected`); json: one array of the same objects.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch show`.
pub fn main(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db)?;
    if let Some(detail) = query::incident(&store, &args.target)? {
        show_incident(&store, &detail, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if query::entity(&store, &args.target)?.is_some() {
        return run(&args.db.db, &args.target, args.format);
    }
    let in_region = IncidentQuery { region: Some(args.target.clone()), ..Default::default() };
    let incidents = query::incidents(&store, &in_region)?.incidents;
    if !incidents.is_empty() {
        show_region(&store, &args.target, &incidents, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "lifewatch: nothing is known about {} in {}: no incident, entity or region has that name",
        terminal_safe(&format!("{:?}", args.target)),
        args.db.db.display()
    );
    Ok(ExitCode::FAILURE)
}

/// One line of `show INCIDENT_ID --format jsonl`.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum IncidentLine<'a> {
    Incident(&'a lifewatch_core::IncidentRecord),
    Transition(&'a query::IncidentChange),
    Action(&'a lifewatch_store::OperatorAction),
    Entity(&'a EntitySummary),
}

/// An incident: its record, its transitions and the entity it is about.
fn show_incident(store: &Store, detail: &query::IncidentDetail, format: Format) -> anyhow::Result<()> {
    let record = &detail.record;
    let entities = match query::entity(store, &record.entity.id)? {
        Some(entity) => entity.entities,
        None => Vec::new(),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let lines = || {
        std::iter::once(IncidentLine::Incident(record))
            .chain(detail.transitions.iter().map(IncidentLine::Transition))
            .chain(detail.actions.iter().map(IncidentLine::Action))
            .chain(entities.iter().map(IncidentLine::Entity))
    };
    match format {
        Format::Jsonl => {
            for line in lines() {
                output::write_json_line(&mut out, &line)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, lines())?,
        Format::Table => {
            let clock = store.clock()?;
            let status = match (record.resolved_at, clock) {
                (Some(resolved), _) => {
                    format!(
                        "resolved at {resolved} after {}",
                        output::rounded_duration(resolved.since(record.opened_at))
                    )
                }
                (None, Some(clock)) => {
                    format!(
                        "open for {} as of {clock}",
                        output::rounded_duration(clock.since(record.opened_at))
                    )
                }
                (None, None) => "open".to_string(),
            };
            let mut table = Table::new(&["FIELD", "VALUE"]);
            let none = || "-".to_string();
            table.row(["id".to_string(), record.id.clone()]);
            table.row(["kind".to_string(), format!("{} ({})", record.kind, record.severity)]);
            table.row(["status".to_string(), status]);
            table.row(["opened".to_string(), record.opened_at.to_string()]);
            table.row(["entity".to_string(), format!("{} {}", record.entity.entity_type, record.entity.id)]);
            table.row(["account".to_string(), record.account_id.clone().unwrap_or_else(none)]);
            table.row(["region".to_string(), record.region.clone().unwrap_or_else(none)]);
            table.row(["state".to_string(), record.state.clone().unwrap_or_else(none)]);
            table.row(["owner".to_string(), record.owner.clone()]);
            table.row(["runbook".to_string(), record.runbook.clone()]);
            table.row(["count".to_string(), record.count.to_string()]);
            table.row(["summary".to_string(), record.summary.clone()]);
            table.row(["events".to_string(), record.events.join(", ")]);
            table.write(&mut out)?;
            writeln!(out, "\ntransitions:")?;
            let mut table = Table::new(&["TRANSITION", "AFTER EVENT #"]);
            for change in &detail.transitions {
                table.row([change.transition.to_string(), change.after_seq.to_string()]);
            }
            table.write(&mut out)?;
            if !detail.actions.is_empty() {
                writeln!(out, "\noperator actions:")?;
                let mut table = Table::new(&["AT", "ACTION", "BY", "STATE", "NOTE"]);
                for action in &detail.actions {
                    let state = match &action.refusal {
                        Some(refusal) => format!("refused: {refusal}"),
                        None => action.state.clone(),
                    };
                    table.row([
                        action.requested_at.to_string(),
                        action.action.as_str().to_string(),
                        action.by.clone(),
                        state,
                        action.note.clone().unwrap_or_default(),
                    ]);
                }
                table.write(&mut out)?;
            }
            writeln!(
                out,
                "\nfor its entity's timeline: lifewatch show {}",
                terminal_safe(&record.entity.id)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A region: its regional outage (open or not), the projects with
/// incidents there, and every incident whose record names the region.
fn show_region(
    store: &Store,
    region: &str,
    incidents: &[lifewatch_core::IncidentRecord],
    format: Format,
) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for record in incidents {
                output::write_json_line(&mut out, record)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, incidents.iter())?,
        Format::Table => {
            let outages: Vec<_> = incidents
                .iter()
                .filter(|record| record.kind == lifewatch_core::IncidentKind::RegionalOutage)
                .collect();
            match outages.iter().find(|record| record.resolved_at.is_none()) {
                Some(open) => writeln!(
                    out,
                    "region {}: regional outage {} open since {} ({})",
                    terminal_safe(region),
                    open.id,
                    open.opened_at,
                    terminal_safe(&open.summary)
                )?,
                None => writeln!(
                    out,
                    "region {}: no regional outage open ({} resolved)",
                    terminal_safe(region),
                    outages.len()
                )?,
            }
            let projects: std::collections::BTreeSet<&str> = incidents
                .iter()
                .filter(|record| record.entity.entity_type == lifewatch_core::SubjectType::Project)
                .map(|record| record.entity.id.as_str())
                .collect();
            let projects: Vec<&str> = projects.into_iter().collect();
            writeln!(
                out,
                "{} with incidents there: {}\n",
                output::plural(projects.len(), "project"),
                terminal_safe(&projects.join(", "))
            )?;
            let view = TableView { wide: false, clock: store.clock()? };
            output::write_incident_table(&mut out, incidents, output::colour_stdout(), view)?;
        }
    }
    out.flush()?;
    Ok(())
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
            for line in lines(&detail)? {
                output::write_json_line(&mut out, &line)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, lines(&detail)?.into_iter())?,
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
                    (Some(stayed), true) => format!("{} so far", output::rounded_duration(stayed)),
                    (Some(stayed), false) => output::rounded_duration(stayed),
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
                let view = TableView { wide: false, clock: store.clock()? };
                output::write_incident_table(&mut out, &detail.incidents, false, view)?;
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
