//! The commands over a database: `replay --db` (persisting replay) and the
//! on-call commands `incidents`, `show`, `report stuck`, `rebuild`,
//! `rejected` and `redrive`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lifewatch_core::{
    Config, Engine, EntityType, IncidentKind, IncidentRecord, RejectReason, State, Status, SubjectType,
    Timestamp, parse_event,
};
use lifewatch_store::{Durability, Fed, IncidentFilter, Store, StoredEntity, Writer, WriterOptions};
use serde_json::json;

use crate::output::{self, Format};
use crate::pipeline::for_each_parsed;
use crate::replay::{RejectedLine, ReplayTotals};

/// Lines per transaction in `replay --db`. Each batch rewrites every page of
/// the projections it touches (entity rows, incidents), so larger batches
/// write fewer pages per event: at 1,000,000 events, 50,000 lines per batch
/// took 2.2 s, 100,000 2.0 s and 200,000 1.8 s; 400,000 gained nothing more,
/// nor did a first batch of 25,000 or 100,000 lines doubling up to 200,000
/// (to get the commit thread to work sooner). A batch holds its raw lines
/// (about 50 MB), and a crash redoes at most the two not yet committed.
pub const BATCH_LINES: u64 = 200_000;

/// `replay --db`: feeds the files through a [`Writer`], committing every
/// `batch_lines` lines (default [`BATCH_LINES`]) on the store's commit thread, then ticks the clock to `now` (or the latest event
/// time) and prints every incident, as the in-memory replay does.
pub fn replay(
    db: &Path,
    files: &[PathBuf],
    now: Option<Timestamp>,
    config: Config,
    format: Format,
    batch_lines: u64,
) -> anyhow::Result<()> {
    // The input file stays, so a power loss that undoes the last commits is
    // repaired by replaying it again: NORMAL durability (see Durability).
    let options = WriterOptions { durability: Durability::Normal, ..WriterOptions::default() };
    let mut writer = Writer::open_with(db, config, options)?;
    let restored = writer.restore_stats();
    if restored.no_longer_valid > 0 {
        eprintln!(
            "lifewatch: warning: {} stored events are no longer valid and were skipped while restoring",
            restored.no_longer_valid
        );
    }
    let mut totals = ReplayTotals::default();
    let default_input = [PathBuf::from("-")];
    let inputs = if files.is_empty() { &default_input[..] } else { files };
    // Lines are read and parsed on a second thread (see pipeline.rs) while
    // this one applies them and commits. The pipeline cannot stop early:
    // after a failed commit the rest of the input is read and ignored, and
    // the error is reported below.
    let mut failure: Option<lifewatch_store::StoreError> = None;
    let mut origin = String::new();
    for_each_parsed(inputs, |line| {
        if failure.is_some() {
            return;
        }
        let fed = match line.result {
            Ok(event) => writer.feed_event(line.raw, event),
            Err(rejection) => {
                // A line over the size limit was not kept (that is the point
                // of the limit): its rejection records its origin and length.
                origin.clear();
                let _ = write!(origin, "{}:{}", line.input, line.number);
                writer.reject(line.raw, rejection, &origin);
                Fed::Rejected(rejection.clone())
            }
        };
        totals.lines += 1;
        match fed {
            Fed::Accepted => totals.accepted += 1,
            Fed::Duplicate => totals.duplicates += 1,
            Fed::Rejected(rejection) => totals.rejected.push(RejectedLine {
                source: line.input.to_string(),
                line: line.number,
                rejection,
            }),
        }
        // The batch is written on the store's thread while this one
        // applies the next.
        if totals.lines % batch_lines == 0
            && let Err(error) = writer.commit_in_background()
        {
            failure = Some(error);
        }
    })?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    if let Some(now) = now.or(writer.engine().latest_event_time()) {
        writer.tick(now);
    }
    writer.commit()?;
    // Closing copies the WAL into the database file: start on it while the
    // incidents are printed.
    writer.checkpoint_soon();
    let engine = writer.engine();
    totals.entities = engine.entity_count();
    let order = engine.sorted_incidents();
    output::print_record_stream(order.into_iter().filter_map(|index| engine.record(index)), format)?;
    crate::replay::report(&totals)?;
    Ok(())
}

/// `incidents`: the stored incident records, filtered.
pub fn incidents(db: &Path, filter: &IncidentFilter, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let records = store.incidents(filter)?;
    output::print_record_stream(records.into_iter(), format)?;
    Ok(())
}

/// One line of an entity's timeline.
struct TimelineEntry {
    seq: i64,
    time: Timestamp,
    event_type: String,
    source: String,
    event_id: String,
    entity_type: Option<EntityType>,
    /// The state the event moved the entity to, when it entered one.
    entered: Option<State>,
    /// The state after the event.
    state_after: Option<State>,
    /// How long the entity stayed in the state it entered (until the next
    /// entry, or until the clock for the current state).
    stayed: Option<lifewatch_core::Duration>,
    still_there: bool,
}

/// `show`: the timeline of the entities with this id.
pub fn show(db: &Path, entity_id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(db)?;
    let (entities, events, incidents, rejected, clock) = store.snapshot(|store| {
        Ok((
            store.entities_named(entity_id)?,
            store.events_of(entity_id)?,
            store.incidents_of_entity(entity_id)?,
            store.rejected(None, Some(entity_id), true)?,
            store.clock()?,
        ))
    })?;
    if entities.is_empty() && events.is_empty() && rejected.is_empty() {
        eprintln!("lifewatch: nothing is known about {entity_id:?} in {}", db.display());
        return Ok(ExitCode::FAILURE);
    }
    let timeline = timeline(&events, clock);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for entity in &entities {
                writeln!(out, "{}", json!({"entity": entity_json(entity)}))?;
            }
            for entry in &timeline {
                let value = json!({"event": {
                    "seq": entry.seq,
                    "entity_type": entry.entity_type.map(EntityType::as_str),
                    "time": entry.time,
                    "type": entry.event_type,
                    "source": entry.source,
                    "id": entry.event_id,
                    "entered": entry.entered.map(State::as_str),
                    "state": entry.state_after.map(State::as_str),
                    "stayed_seconds": entry.stayed.map(|stayed| stayed.as_nanos() / 1_000_000_000),
                    "still_there": entry.still_there,
                }});
                writeln!(out, "{value}")?;
            }
            for record in &incidents {
                writeln!(out, "{}", json!({ "incident": record }))?;
            }
            for rejection in &rejected {
                let value = json!({"rejected": {
                    "origin": rejection.origin,
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                    "redriven": rejection.redriven,
                    "payload": String::from_utf8_lossy(&rejection.payload),
                }});
                writeln!(out, "{value}")?;
            }
        }
        Format::Table => {
            for entity in &entities {
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
                writeln!(out, "{line}")?;
            }
            writeln!(out)?;
            let rows: Vec<Vec<String>> = timeline
                .iter()
                .map(|entry| {
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
                    vec![
                        entry.time.to_string(),
                        entry.event_type.clone(),
                        entry.source.clone(),
                        state,
                        stayed,
                        entry.event_id.clone(),
                    ]
                })
                .collect();
            write_columns(&mut out, &["TIME", "EVENT", "SOURCE", "STATE", "STAYED", "EVENT ID"], &rows)?;
            writeln!(out, "\n{} events", timeline.len())?;
            if !incidents.is_empty() {
                writeln!(out)?;
                output::write_table(&mut out, &incidents, false)?;
            }
            if !rejected.is_empty() {
                writeln!(out, "\nrejected events for {entity_id}:")?;
                let rows: Vec<Vec<String>> = rejected
                    .iter()
                    .map(|rejection| {
                        vec![
                            rejection.origin.clone(),
                            rejection.reason.clone(),
                            rejection.detail.clone(),
                            rejection.redriven.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                write_columns(&mut out, &["ORIGIN", "REASON", "DETAIL", "REDRIVEN"], &rows)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The states an entity went through: its own events refolded in a scratch
/// engine (an entity's state depends on its own events only), so the state
/// machines are not written down twice.
fn timeline(events: &[lifewatch_store::StoredEvent], clock: Option<Timestamp>) -> Vec<TimelineEntry> {
    let mut engine = Engine::new(Config::shipped());
    let mut entries: Vec<TimelineEntry> = Vec::new();
    // The last entry that entered a state, per entity type, to set how long it stayed.
    let mut open_visit: BTreeMap<EntityType, usize> = BTreeMap::new();
    for event in events {
        let parsed = parse_event(&event.payload).ok();
        let entity_type = parsed.as_ref().map(|parsed| parsed.event_type.entity_type());
        let before = entity_type.and_then(|entity_type| visit(&engine, entity_type, &event.subject));
        if let Some(parsed) = &parsed {
            engine.handle_event(parsed);
        }
        let after = entity_type.and_then(|entity_type| visit(&engine, entity_type, &event.subject));
        let entered = match (before, after) {
            (before, Some((Some(state), entered_at))) if before != after && entered_at == event.time => {
                Some(state)
            }
            _ => None,
        };
        if let (Some(entity_type), Some(_)) = (entity_type, entered)
            && let Some(previous) = open_visit.insert(entity_type, entries.len())
        {
            entries[previous].stayed = Some(event.time.since(entries[previous].time));
        }
        entries.push(TimelineEntry {
            seq: event.seq,
            time: event.time,
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            event_id: event.event_id.clone(),
            entity_type,
            entered,
            state_after: after.and_then(|(state, _)| state),
            stayed: None,
            still_there: false,
        });
    }
    for (_, index) in open_visit {
        let entry = &mut entries[index];
        let terminal = entry.entered.is_some_and(State::is_terminal);
        if !terminal && let Some(clock) = clock {
            entry.stayed = Some(clock.since(entry.time));
            entry.still_there = true;
        }
    }
    entries
}

fn visit(engine: &Engine, entity_type: EntityType, id: &str) -> Option<(Option<State>, Timestamp)> {
    let entity = engine.find_entity(entity_type, id)?;
    let view = engine.entity(entity)?;
    Some((view.state, view.entered_at))
}

fn entity_json(entity: &StoredEntity) -> serde_json::Value {
    json!({
        "type": entity.entity_type.as_str(),
        "id": entity.id,
        "state": entity.state.map(State::as_str),
        "entered_at": entity.entered_at,
        "account_id": entity.account_id,
        "region": entity.region,
        "plan": entity.plan,
        "live_projects": entity.live_projects,
    })
}

/// `report stuck`: what is stuck at `now`, grouped by owner and state,
/// oldest first.
pub fn report_stuck(
    db: &Path,
    now: Option<Timestamp>,
    config: &Config,
    format: Format,
) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let (entities, open_stuck, clock) = store.snapshot(|store| {
        let filter = IncidentFilter {
            status: Some(Status::Open),
            kind: Some(IncidentKind::Stuck),
            ..IncidentFilter::default()
        };
        Ok((store.entities_with_state()?, store.incidents(&filter)?, store.clock()?))
    })?;
    let Some(now) = now.or(clock) else {
        eprintln!("lifewatch: {} holds no events yet: nothing is stuck", db.display());
        return Ok(());
    };
    let incident_of: BTreeMap<&str, &IncidentRecord> =
        open_stuck.iter().map(|record| (record.key.as_str(), record)).collect();
    struct Stuck<'a> {
        owner: &'a str,
        entity: &'a StoredEntity,
        state: State,
        due: Timestamp,
        incident: Option<&'a str>,
    }
    let mut stuck: Vec<Stuck<'_>> = Vec::new();
    for entity in &entities {
        let (Some(state), Some(entered_at)) = (entity.state, entity.entered_at) else { continue };
        let Some(deadline) = config.deadline(state) else { continue };
        let due = entered_at.saturating_add(deadline);
        if now <= due {
            continue;
        }
        let subject = match entity.entity_type {
            EntityType::Account => SubjectType::Account,
            EntityType::Project => SubjectType::Project,
            EntityType::Dispute => SubjectType::Dispute,
        };
        let key = format!("stuck:{}:{}:{state}", entity.entity_type, entity.id);
        stuck.push(Stuck {
            owner: config.owner(IncidentKind::Stuck, subject),
            entity,
            state,
            due,
            incident: incident_of.get(key.as_str()).map(|record| record.id.as_str()),
        });
    }
    stuck.sort_by(|a, b| {
        (a.owner, a.entity.entity_type, a.state.as_str(), a.due, &a.entity.id).cmp(&(
            b.owner,
            b.entity.entity_type,
            b.state.as_str(),
            b.due,
            &b.entity.id,
        ))
    });
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for item in &stuck {
                let value = json!({
                    "owner": item.owner,
                    "entity": {"type": item.entity.entity_type.as_str(), "id": item.entity.id},
                    "state": item.state.as_str(),
                    "entered_at": item.entity.entered_at,
                    "due": item.due,
                    "past_deadline_seconds": now.since(item.due).as_nanos() / 1_000_000_000,
                    "account_id": item.entity.account_id,
                    "region": item.entity.region,
                    "incident_id": item.incident,
                });
                writeln!(out, "{value}")?;
            }
        }
        Format::Table => {
            writeln!(out, "stuck at {now}: {} entities", stuck.len())?;
            let mut start = 0;
            while start < stuck.len() {
                let first = &stuck[start];
                let end = stuck[start..]
                    .iter()
                    .position(|item| {
                        (item.owner, item.entity.entity_type, item.state)
                            != (first.owner, first.entity.entity_type, first.state)
                    })
                    .map_or(stuck.len(), |offset| start + offset);
                writeln!(
                    out,
                    "\n{} — {} {} ({})",
                    first.owner,
                    first.entity.entity_type,
                    first.state,
                    end - start
                )?;
                let rows: Vec<Vec<String>> = stuck[start..end]
                    .iter()
                    .map(|item| {
                        vec![
                            item.entity.id.clone(),
                            item.entity.entered_at.map_or(String::new(), |at| at.to_string()),
                            now.since(item.due).to_string(),
                            item.entity.account_id.clone().unwrap_or_else(|| "-".to_string()),
                            item.entity.region.clone().unwrap_or_else(|| "-".to_string()),
                            item.incident.unwrap_or("-").to_string(),
                        ]
                    })
                    .collect();
                write_columns(
                    &mut out,
                    &["ENTITY", "ENTERED", "PAST DEADLINE", "ACCOUNT", "REGION", "INCIDENT"],
                    &rows,
                )?;
                start = end;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `rebuild`: refolds the log into a fresh engine and compares it with the
/// stored projections. With `repair`, replaces what differs (taking the
/// writer lock). Exit 1 when anything differed.
pub fn rebuild(db: &Path, config: Config, repair: bool) -> anyhow::Result<ExitCode> {
    let differences = if repair {
        let mut writer = Writer::open(db, config)?;
        writer.repair()?
    } else {
        let store = Store::open_read_only(db)?;
        store.snapshot(|store| {
            let (engine, _) = store.restore(config)?;
            store.compare(&engine)
        })?
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    const SHOWN: usize = 50;
    for difference in differences.iter().take(SHOWN) {
        writeln!(out, "{difference}")?;
    }
    if differences.len() > SHOWN {
        writeln!(out, "… and {} more", differences.len() - SHOWN)?;
    }
    if differences.is_empty() {
        writeln!(out, "rebuild: the stored projections are identical to what the log gives")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let what =
        if repair { "replaced with what the log gives" } else { "run rebuild --repair to replace them" };
    writeln!(
        out,
        "rebuild: {} differences between the stored projections and the log; {what}",
        differences.len()
    )?;
    out.flush()?;
    Ok(ExitCode::FAILURE)
}

/// `rejected`: the rejected inputs kept.
pub fn rejected(db: &Path, reason: Option<RejectReason>, all: bool, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let rejected = store.rejected(reason.map(RejectReason::as_str), None, all)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for rejection in &rejected {
                let value = json!({
                    "id": rejection.id,
                    "origin": rejection.origin,
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                    "subject": rejection.subject,
                    "redriven": rejection.redriven,
                    "payload": String::from_utf8_lossy(&rejection.payload),
                });
                writeln!(out, "{value}")?;
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = rejected
                .iter()
                .map(|rejection| {
                    vec![
                        rejection.id.to_string(),
                        rejection.origin.clone(),
                        rejection.reason.clone(),
                        rejection.subject.as_deref().map_or_else(|| "-".to_string(), shorten),
                        rejection.detail.clone(),
                    ]
                })
                .collect();
            write_columns(&mut out, &["ID", "ORIGIN", "REASON", "SUBJECT", "DETAIL"], &rows)?;
            let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
            for rejection in &rejected {
                *by_reason.entry(rejection.reason.as_str()).or_default() += 1;
            }
            let reasons: Vec<String> =
                by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            writeln!(out, "{} rejected ({})", rejected.len(), reasons.join(", "))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `redrive`: feeds rejected inputs through validation again.
pub fn redrive(db: &Path, reason: Option<RejectReason>, config: Config) -> anyhow::Result<()> {
    let mut writer = Writer::open(db, config).with_context(|| "cannot re-drive rejected events")?;
    let summary = writer.redrive(reason)?;
    println!(
        "redrive: {} tried, {} accepted into the log, {} duplicates of accepted events, {} still rejected",
        summary.tried, summary.accepted, summary.duplicates, summary.still_rejected
    );
    Ok(())
}

/// A cell of at most 40 characters: a subject may be any length in a
/// rejected input, and one must not push the table off the screen.
fn shorten(text: &str) -> String {
    const LONGEST: usize = 40;
    if text.chars().count() <= LONGEST {
        return text.to_string();
    }
    let mut short: String = text.chars().take(LONGEST - 1).collect();
    short.push('…');
    short
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_columns(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if index < last {
                text.push_str(&" ".repeat(widths[index].saturating_sub(cell.chars().count()) + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}
