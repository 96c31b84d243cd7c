//! The read side's typed answers: what the on-call commands print and what
//! the web API will serve, as serde structs, each read from one committed
//! state of the database (one statement, or one read transaction).
//!
//! Fields of the structs that the CLI prints as JSON Lines are declared in
//! alphabetical order: those lines were made with `serde_json::json!`, which
//! sorts keys, and their bytes stay the same.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use lifewatch_core::{
    Config, Duration, Engine, EntityType, IncidentKind, IncidentRecord, Severity, State, Status, SubjectType,
    Timestamp, Transition, parse_event,
};
use rusqlite::ToSql;
use serde::{Serialize, Serializer};

use crate::error::{Context, StoreError};
use crate::read::{RECORD, Store, StoredEvent, StoredRejection};

/// The order incidents are listed in.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Order {
    /// By `opened_at`, then key, oldest first: the order `replay` prints.
    #[default]
    OldestFirst,
    /// The reverse: newest first.
    NewestFirst,
}

/// Which incidents to list, and which page of them; every filter narrows
/// the list.
#[derive(Clone, Default, Debug)]
pub struct IncidentQuery {
    /// Only open, or only resolved, incidents.
    pub status: Option<Status>,
    /// Only this team's.
    pub owner: Option<String>,
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only incidents about the entity (or region) with this id.
    pub entity: Option<String>,
    /// Only incidents whose record names this region.
    pub region: Option<String>,
    /// Only incidents that were open at some moment at or after this instant:
    /// still open, or resolved at or after it.
    pub since: Option<Timestamp>,
    /// At most this many incidents; all of them without a limit.
    pub limit: Option<u32>,
    /// Only incidents after this one in `order` (from [`IncidentPage::next_cursor`]).
    pub cursor: Option<Cursor>,
    /// The order of the list.
    pub order: Order,
}

/// Where a page of incidents ended: the sort key of its last incident, so
/// that the next page starts after it however the table changed meanwhile
/// (keyset pagination). Printed and parsed as `opened_at.slot.key`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cursor {
    opened_at: i64,
    slot: i64,
    key: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.opened_at, self.slot, self.key)
    }
}

/// A cursor that is not one [`Cursor`]'s text.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0:?} is not a cursor of a page of incidents")]
pub struct BadCursor(String);

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Cursor, BadCursor> {
        let bad = || BadCursor(text.to_string());
        let mut parts = text.splitn(3, '.');
        let opened_at = parts.next().and_then(|part| part.parse().ok()).ok_or_else(bad)?;
        let slot = parts.next().and_then(|part| part.parse().ok()).ok_or_else(bad)?;
        let key = parts.next().ok_or_else(bad)?.to_string();
        Ok(Cursor { opened_at, slot, key })
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A page of incidents.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct IncidentPage {
    /// The incidents, in the query's order.
    pub incidents: Vec<IncidentRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// The incidents `query` asks for.
pub fn incidents(store: &Store, query: &IncidentQuery) -> Result<IncidentPage, StoreError> {
    let (sql, values) = incidents_sql(query);
    // One statement sees one committed state: no snapshot of its own, so that
    // other reads can call this inside theirs.
    let mut rows = store.records_with(&sql, rusqlite::params_from_iter(values.iter()), |row| {
        Ok(Cursor { opened_at: row.get(1)?, slot: row.get(2)?, key: row.get(3)? })
    })?;
    let mut next_cursor = None;
    if let Some(limit) = query.limit
        && rows.len() > limit as usize
    {
        rows.truncate(limit as usize);
        next_cursor = rows.last().map(|(_, cursor)| cursor.clone());
    }
    Ok(IncidentPage { incidents: rows.into_iter().map(|(record, _)| record).collect(), next_cursor })
}

/// The SQL of `query` and the values of its parameters.
fn incidents_sql(query: &IncidentQuery) -> (String, Vec<Box<dyn ToSql>>) {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    // A literal, not a parameter: the partial indexes of open incidents
    // (schema 17) are used only for a condition SQLite can see is theirs.
    if let Some(status) = query.status {
        conditions.push(match status {
            Status::Open => "status = 'open'",
            Status::Resolved => "status = 'resolved'",
        });
    }
    if let Some(owner) = &query.owner {
        conditions.push("owner = ?");
        values.push(Box::new(owner.clone()));
    }
    if let Some(kind) = query.kind {
        conditions.push("kind = ?");
        values.push(Box::new(kind.as_str()));
    }
    if let Some(entity) = &query.entity {
        conditions.push("entity_id = ?");
        values.push(Box::new(entity.clone()));
    }
    if let Some(since) = query.since {
        conditions.push("(resolved_at IS NULL OR resolved_at >= ?)");
        values.push(Box::new(since.unix_nanos()));
    }
    // Severity and region are only in the record: the table has no column
    // for them, and a filter on them reads the record of each row the
    // other conditions leave.
    let severity_condition = format!("json_extract({RECORD}, '$.severity') = ?");
    if let Some(severity) = query.severity {
        conditions.push(&severity_condition);
        values.push(Box::new(severity.as_str()));
    }
    let region_condition = format!("json_extract({RECORD}, '$.region') = ?");
    if let Some(region) = &query.region {
        conditions.push(&region_condition);
        values.push(Box::new(region.clone()));
    }
    let (after, direction) = match query.order {
        Order::OldestFirst => ("(opened_at, key, slot) > (?, ?, ?)", "ASC"),
        Order::NewestFirst => ("(opened_at, key, slot) < (?, ?, ?)", "DESC"),
    };
    if let Some(cursor) = &query.cursor {
        conditions.push(after);
        values.push(Box::new(cursor.opened_at));
        values.push(Box::new(cursor.key.clone()));
        values.push(Box::new(cursor.slot));
    }
    let condition =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    // One row more than the page tells whether there is a next page.
    let limit = match query.limit {
        Some(limit) => {
            values.push(Box::new(i64::from(limit) + 1));
            "LIMIT ?"
        }
        None => "",
    };
    let sql = format!(
        "SELECT {RECORD}, opened_at, slot, key FROM incidents {condition}
         ORDER BY opened_at {direction}, key {direction}, slot {direction} {limit}"
    );
    (sql, values)
}

/// One change of an incident, in the order they happened.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct IncidentChange {
    /// Opened, updated, resolved, reopened or retracted.
    pub transition: Transition,
    /// The last event in the log when it happened (0 before any).
    pub after_seq: i64,
}

/// An incident with its history.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct IncidentDetail {
    /// The record as it stands.
    pub record: IncidentRecord,
    /// Every transition it went through, oldest first.
    pub transitions: Vec<IncidentChange>,
    /// What people did to it (acknowledged, resolved, noted), oldest first,
    /// with requests not applied yet and refused ones.
    pub actions: Vec<crate::OperatorAction>,
}

/// For a regional outage, how many distinct projects of its region had a
/// `stuck` or `provisioning_failed` incident open at some moment while it
/// was open (the figure its comms templates quote); 0 for other kinds.
pub fn outage_projects(store: &Store, record: &IncidentRecord) -> Result<u64, StoreError> {
    if record.kind != IncidentKind::RegionalOutage {
        return Ok(0);
    }
    let query = IncidentQuery {
        region: Some(record.entity.id.clone()),
        since: Some(record.opened_at),
        ..IncidentQuery::default()
    };
    let end = record.resolved_at;
    let projects: std::collections::BTreeSet<String> = incidents(store, &query)?
        .incidents
        .into_iter()
        .filter(|incident| matches!(incident.kind, IncidentKind::Stuck | IncidentKind::ProvisioningFailed))
        .filter(|incident| incident.entity.entity_type == lifewatch_core::SubjectType::Project)
        .filter(|incident| end.is_none_or(|end| incident.opened_at <= end))
        .map(|incident| incident.entity.id)
        .collect();
    Ok(projects.len() as u64)
}

/// The incident with this id, if there is one.
pub fn incident(store: &Store, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
    store.snapshot(|store| {
        let sql = format!("SELECT {RECORD} FROM incidents WHERE id = ?1");
        let Some((record, ())) = store.records_with(&sql, [id], |_| Ok(()))?.into_iter().next() else {
            return Ok(None);
        };
        let transitions = store.transitions_of(id)?;
        let actions = crate::operator::actions_of(store.connection(), store.path(), id)?;
        Ok(Some(IncidentDetail { record, transitions, actions }))
    })
}

/// An entity's projection as stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct EntitySummary {
    /// The account it belongs to, when known.
    pub account_id: Option<String>,
    /// When it entered its state (`None` without a state).
    pub entered_at: Option<Timestamp>,
    /// The entity id.
    pub id: String,
    /// Live projects counted against the plan (accounts).
    pub live_projects: u32,
    /// Its plan (accounts).
    pub plan: Option<String>,
    /// Its region, when known.
    pub region: Option<String>,
    /// Its state; `None` for an entity only referred to by others.
    #[serde(serialize_with = "state_name")]
    pub state: Option<State>,
    /// Account, project or dispute.
    #[serde(rename = "type", serialize_with = "entity_type_name")]
    pub entity_type: EntityType,
}

/// One accepted event in an entity's timeline.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct TimelineEntry {
    /// The state the event moved the entity to, when it entered one.
    #[serde(serialize_with = "state_name")]
    pub entered: Option<State>,
    /// The type of entity the event is about (`None` for an event this
    /// version no longer accepts).
    #[serde(serialize_with = "optional_entity_type_name")]
    pub entity_type: Option<EntityType>,
    /// The event id.
    #[serde(rename = "id")]
    pub event_id: String,
    /// Its place in arrival order.
    pub seq: i64,
    /// The emitting service.
    pub source: String,
    /// The state after the event.
    #[serde(rename = "state", serialize_with = "state_name")]
    pub state_after: Option<State>,
    /// How long the entity stayed in the state it entered: until the next
    /// entry, or until the store's clock for the state it is still in.
    #[serde(rename = "stayed_seconds", serialize_with = "optional_seconds")]
    pub stayed: Option<Duration>,
    /// Whether it is still in that state.
    pub still_there: bool,
    /// The event time.
    pub time: Timestamp,
    /// The CloudEvents type.
    #[serde(rename = "type")]
    pub event_type: String,
}

/// A rejected input as kept.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct RejectedEvent {
    /// Whether only the input's first 64 KiB were kept (see `length`).
    pub cut: bool,
    /// What exactly was wrong.
    pub detail: String,
    /// Its id in the rejected table.
    pub id: i64,
    /// The input's length in bytes.
    pub length: u64,
    /// Where it came from (`file:line`, a NATS subject).
    pub origin: String,
    /// The input as received (invalid UTF-8 replaced), or its beginning
    /// when `cut`.
    pub payload: String,
    /// The named reason.
    pub reason: String,
    /// What re-driving it did (`accepted as event N`, `duplicate`), if it was.
    pub redriven: Option<String>,
    /// Its `subject`, when it had a readable one.
    pub subject: Option<String>,
}

impl From<StoredRejection> for RejectedEvent {
    fn from(stored: StoredRejection) -> RejectedEvent {
        RejectedEvent {
            detail: stored.detail,
            id: stored.id,
            origin: stored.origin,
            cut: stored.length > stored.payload.len() as u64,
            length: stored.length,
            payload: String::from_utf8_lossy(&stored.payload).into_owned(),
            reason: stored.reason,
            redriven: stored.redriven,
            subject: stored.subject,
        }
    }
}

/// Everything known about the entities with one id (an account and a
/// project may share one).
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct EntityDetail {
    /// Their projections.
    pub entities: Vec<EntitySummary>,
    /// Their accepted events, in arrival order, with the states they led to.
    pub timeline: Vec<TimelineEntry>,
    /// The incidents about them, by `opened_at` then key.
    pub incidents: Vec<IncidentRecord>,
    /// Inputs rejected with this subject, re-driven ones included.
    pub rejected: Vec<RejectedEvent>,
    /// The store's clock, which open visits are measured to.
    pub clock: Option<Timestamp>,
}

/// What is known about the entities with this id; `None` when nothing is.
pub fn entity(store: &Store, id: &str) -> Result<Option<EntityDetail>, StoreError> {
    let (entities, events, incidents, rejected, clock) = store.snapshot(|store| {
        Ok((
            store.entities_named(id)?,
            store.events_of(id)?,
            store.incidents_of_entity(id)?,
            store.rejected(None, Some(id), true)?,
            store.clock()?,
        ))
    })?;
    if entities.is_empty() && events.is_empty() && rejected.is_empty() {
        return Ok(None);
    }
    let entities = entities
        .into_iter()
        .map(|entity| EntitySummary {
            account_id: entity.account_id,
            entered_at: entity.entered_at,
            id: entity.id,
            live_projects: entity.live_projects,
            plan: entity.plan,
            region: entity.region,
            state: entity.state,
            entity_type: entity.entity_type,
        })
        .collect();
    Ok(Some(EntityDetail {
        entities,
        timeline: timeline(&events, clock),
        incidents,
        rejected: rejected.into_iter().map(RejectedEvent::from).collect(),
        clock,
    }))
}

/// The states an entity went through: its own events refolded in a scratch
/// engine (an entity's state depends on its own events only), so the state
/// machines are not written down twice.
fn timeline(events: &[StoredEvent], clock: Option<Timestamp>) -> Vec<TimelineEntry> {
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
            entered,
            entity_type,
            event_id: event.event_id.clone(),
            seq: event.seq,
            source: event.source.clone(),
            state_after: after.and_then(|(state, _)| state),
            stayed: None,
            still_there: false,
            time: event.time,
            event_type: event.event_type.clone(),
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

/// What a stuck entity is.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct EntityName {
    /// The entity id.
    pub id: String,
    /// Account, project or dispute.
    #[serde(rename = "type", serialize_with = "entity_type_name")]
    pub entity_type: EntityType,
}

/// An entity past the deadline of the state it is in.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct StuckEntity {
    /// The account it belongs to, when known.
    pub account_id: Option<String>,
    /// When its deadline passed.
    pub due: Timestamp,
    /// When it entered the state.
    pub entered_at: Timestamp,
    /// Which entity.
    pub entity: EntityName,
    /// The open `stuck` incident about it, once the engine's clock opened one.
    pub incident_id: Option<String>,
    /// The team a `stuck` incident about it goes to.
    pub owner: String,
    /// How long past its deadline it is at the report's instant.
    #[serde(rename = "past_deadline_seconds", serialize_with = "seconds")]
    pub past_deadline: Duration,
    /// Its region, when known.
    pub region: Option<String>,
    /// The state it is stuck in.
    #[serde(serialize_with = "state_of")]
    pub state: State,
}

/// What is stuck at one instant.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct StuckReport {
    /// The instant it is judged at.
    pub now: Timestamp,
    /// Where that instant came from.
    pub judged_at: JudgedAt,
    /// The stuck entities by owner, entity type, state, then oldest deadline first.
    pub entities: Vec<StuckEntity>,
}

/// The clock a stuck report is judged at.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgedAt {
    /// The instant the caller gave.
    Given,
    /// The engine's clock as last committed.
    StoreClock,
    /// The store's clock was never set (a `replay --db` still running, or
    /// interrupted before its last tick): the latest time at which a
    /// committed event moved an entity, so that what is committed is judged
    /// rather than nothing.
    LatestCommittedEvent,
}

/// What is stuck at `now` (default: the store's clock; where that was never
/// set, the latest committed event time), by the engine's own rule
/// ([`Config::past_deadline`]) and `config`'s deadlines and owners; `None`
/// when the store holds no events yet and no `now` is given.
pub fn stuck_report(
    store: &Store,
    config: &Config,
    now: Option<Timestamp>,
) -> Result<Option<StuckReport>, StoreError> {
    let filter = crate::IncidentFilter {
        status: Some(Status::Open),
        kind: Some(IncidentKind::Stuck),
        ..Default::default()
    };
    let (entities, open_stuck, clock) = store
        .snapshot(|store| Ok((store.entities_with_state()?, store.incidents(&filter)?, store.clock()?)))?;
    let latest_event = entities.iter().filter_map(|entity| entity.entered_at).max();
    let (now, judged_at) = match (now, clock, latest_event) {
        (Some(now), _, _) => (now, JudgedAt::Given),
        (None, Some(clock), _) => (clock, JudgedAt::StoreClock),
        (None, None, Some(latest)) => (latest, JudgedAt::LatestCommittedEvent),
        (None, None, None) => return Ok(None),
    };
    // The open stuck incident of each (entity, state), found by what its
    // record says rather than by rebuilding the engine's key.
    let mut incident_of: HashMap<(&str, &str, &str), &str> = HashMap::new();
    for record in &open_stuck {
        if let Some(state) = &record.state {
            incident_of.insert(
                (record.entity.entity_type.as_str(), record.entity.id.as_str(), state.as_str()),
                record.id.as_str(),
            );
        }
    }
    let mut stuck = Vec::new();
    for entity in entities {
        let (Some(state), Some(entered_at)) = (entity.state, entity.entered_at) else { continue };
        let Some(due) = config.past_deadline(state, entered_at, now) else { continue };
        let subject = SubjectType::from(entity.entity_type);
        let incident_id =
            incident_of.get(&(subject.as_str(), entity.id.as_str(), state.as_str())).map(|id| id.to_string());
        stuck.push(StuckEntity {
            account_id: entity.account_id,
            due,
            entered_at,
            entity: EntityName { id: entity.id, entity_type: entity.entity_type },
            incident_id,
            owner: config.owner(IncidentKind::Stuck, subject).to_string(),
            past_deadline: now.since(due),
            region: entity.region,
            state,
        });
    }
    stuck.sort_by(|a, b| {
        (&a.owner, a.entity.entity_type, a.state.as_str(), a.due, &a.entity.id).cmp(&(
            &b.owner,
            b.entity.entity_type,
            b.state.as_str(),
            b.due,
            &b.entity.id,
        ))
    });
    Ok(Some(StuckReport { now, judged_at, entities: stuck }))
}

/// How many incidents are open, by kind (kinds with none left out), read
/// from the `(status, kind)` index.
pub fn open_counts(store: &Store) -> Result<Vec<(IncidentKind, u64)>, StoreError> {
    let path = store.path();
    let rows: Vec<(String, i64)> = store
        .connection()
        .prepare(OPEN_COUNTS_SQL)
        .and_then(|mut statement| statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
        .context(path, "count open incidents")?;
    rows.into_iter()
        .map(|(kind, count)| {
            let kind = IncidentKind::parse(&kind).ok_or_else(|| StoreError::BadData {
                path: path.to_path_buf(),
                detail: format!("an incident has an unknown kind {kind:?}"),
            })?;
            Ok((kind, u64::try_from(count).unwrap_or(0)))
        })
        .collect()
}

/// Open incidents by kind: a range of the `(status, kind)` index.
const OPEN_COUNTS_SQL: &str =
    "SELECT kind, count(*) FROM incidents WHERE status = 'open' GROUP BY kind ORDER BY kind";

/// One notification of an incident, as the dashboard shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct NotificationState {
    /// The delivery's id.
    pub id: i64,
    /// The channel.
    pub channel: String,
    /// The transition it carries.
    pub transition: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The notifications of incident `id`, oldest first (none before schema 15's deliveries).
pub fn notifications_of(store: &Store, id: &str) -> Result<Vec<NotificationState>, StoreError> {
    store
        .connection()
        .prepare_cached(NOTIFICATIONS_SQL)
        .and_then(|mut statement| {
            statement
                .query_map([id], |row| {
                    Ok(NotificationState {
                        id: row.get(0)?,
                        channel: row.get(1)?,
                        transition: row.get(2)?,
                        state: row.get(3)?,
                        attempts: row.get(4)?,
                        last_error: row.get(5)?,
                    })
                })?
                .collect()
        })
        .context(store.path(), "read an incident's notifications")
}

/// An incident's deliveries, by the incident index.
const NOTIFICATIONS_SQL: &str = "SELECT id, channel, transition, state, attempts, last_error FROM deliveries
     WHERE incident_id = ?1 ORDER BY id";

/// Which rejected inputs to list.
#[derive(Clone, Default, Debug)]
pub struct RejectedFilter {
    /// Only those rejected for this reason.
    pub reason: Option<lifewatch_core::RejectReason>,
    /// Only those with this subject.
    pub subject: Option<String>,
    /// Re-driven ones too.
    pub include_redriven: bool,
}

/// The rejected inputs `filter` asks for, oldest first.
pub fn rejected(store: &Store, filter: &RejectedFilter) -> Result<Vec<RejectedEvent>, StoreError> {
    let rejected = store.rejected(
        filter.reason.map(lifewatch_core::RejectReason::as_str),
        filter.subject.as_deref(),
        filter.include_redriven,
    )?;
    Ok(rejected.into_iter().map(RejectedEvent::from).collect())
}

/// The transitions of one incident, by the primary key (its id's number, then position).
const TRANSITIONS_SQL: &str =
    "SELECT transition, after_seq FROM incident_transitions WHERE incident = ?1 ORDER BY position";

impl Store {
    /// The transitions of the incident with this id, oldest first.
    fn transitions_of(&self, id: &str) -> Result<Vec<IncidentChange>, StoreError> {
        let path = self.path();
        let rows: Vec<(String, i64)> = self
            .connection()
            .prepare(TRANSITIONS_SQL)
            .and_then(|mut statement| {
                statement
                    .query_map([crate::schema::incident_number(id)], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .context(path, "read incident transitions")?;
        rows.into_iter()
            .map(|(transition, after_seq)| {
                let transition = parse_transition(&transition).ok_or_else(|| StoreError::BadData {
                    path: path.to_path_buf(),
                    detail: format!("incident {id} has an unknown transition {transition:?}"),
                })?;
                Ok(IncidentChange { transition, after_seq })
            })
            .collect()
    }
}

fn parse_transition(name: &str) -> Option<Transition> {
    Transition::parse(name)
}

fn state_name<S: Serializer>(state: &Option<State>, serializer: S) -> Result<S::Ok, S::Error> {
    state.map(State::as_str).serialize(serializer)
}

fn state_of<S: Serializer>(state: &State, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(state.as_str())
}

fn entity_type_name<S: Serializer>(entity_type: &EntityType, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(entity_type.as_str())
}

fn optional_entity_type_name<S: Serializer>(
    entity_type: &Option<EntityType>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    entity_type.map(EntityType::as_str).serialize(serializer)
}

fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_i64(duration.as_nanos() / 1_000_000_000)
}

fn optional_seconds<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    duration.map(|duration| duration.as_nanos() / 1_000_000_000).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql` with `values`, one step a line.
    fn plan(store: &Store, sql: &str, values: impl rusqlite::Params) -> String {
        let mut statement = store.connection().prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps: Vec<String> =
            statement.query_map(values, |row| row.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
        steps.join("\n")
    }

    #[test]
    fn the_read_side_queries_use_indexes() {
        let dir = std::env::temp_dir().join(format!("lifewatch-query-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lifewatch.db");
        drop(crate::Writer::open(&path, Config::shipped()).unwrap());
        let store = Store::open_read_only(&path).unwrap();
        let cursor = Cursor { opened_at: 5, slot: 3, key: "stuck:project:prj_1:requested".into() };
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let query =
                IncidentQuery { limit: Some(50), cursor: Some(cursor.clone()), order, ..Default::default() };
            let (sql, values) = incidents_sql(&query);
            let plan = plan(&store, &sql, rusqlite::params_from_iter(values.iter()));
            assert!(plan.contains("USING INDEX incidents_by_opened"), "{order:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{order:?}: a page sorts the whole table: {plan}");
        }
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let query =
                IncidentQuery { status: Some(Status::Open), limit: Some(100), order, ..Default::default() };
            let (sql, values) = incidents_sql(&query);
            let plan = plan(&store, &sql, rusqlite::params_from_iter(values.iter()));
            assert!(
                plan.lines().any(|line| line.ends_with("USING INDEX incidents_open")),
                "{order:?}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{order:?}: {plan}");
        }
        let (sql, values) =
            incidents_sql(&IncidentQuery { entity: Some("prj_1".into()), ..Default::default() });
        let entity_plan = plan(&store, &sql, rusqlite::params_from_iter(values.iter()));
        assert!(entity_plan.contains("USING INDEX incidents_by_entity"), "{entity_plan}");
        // The dashboard's reads: open counts by kind, and the open incidents
        // of one kind in either order, with or without a page limit.
        let counts = plan(&store, OPEN_COUNTS_SQL, []);
        assert!(counts.contains("USING COVERING INDEX incidents_open_by_kind"), "{counts}");
        for order in [Order::OldestFirst, Order::NewestFirst] {
            for limit in [None, Some(200)] {
                let query = IncidentQuery {
                    status: Some(Status::Open),
                    kind: Some(IncidentKind::Stuck),
                    limit,
                    order,
                    ..Default::default()
                };
                let (sql, values) = incidents_sql(&query);
                let plan = plan(&store, &sql, rusqlite::params_from_iter(values.iter()));
                assert!(plan.contains("USING INDEX incidents_open_by_kind"), "{order:?} {limit:?}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{order:?} {limit:?}: {plan}");
            }
        }
        let notifications = plan(&store, NOTIFICATIONS_SQL, ["inc_1"]);
        assert!(notifications.contains("USING INDEX deliveries_by_incident"), "{notifications}");
        let transitions = plan(&store, TRANSITIONS_SQL, [1_i64]);
        assert!(transitions.contains("USING PRIMARY KEY (incident=?)"), "{transitions}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
