//! The projections: writing entity and incident rows from the engine, reading
//! them back, and comparing what is stored with what the log gives.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use lifewatch_core::{
    Engine, EntityRef, EntityType, EntityView, IncidentRecord, State, Timestamp, Transition,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Context, StoreError};

/// An entity projection as stored: the engine's [`EntityView`], owned.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredEntity {
    /// Account, project or dispute.
    pub entity_type: EntityType,
    /// The entity id.
    pub id: String,
    /// Its state; `None` for an entity only referred to by others.
    pub state: Option<State>,
    /// When it entered that state (`None` without a state).
    pub entered_at: Option<Timestamp>,
    /// The account it belongs to, when known.
    pub account_id: Option<String>,
    /// Its region, when known.
    pub region: Option<String>,
    /// Its plan (accounts).
    pub plan: Option<String>,
    /// Live projects counted against the plan (accounts).
    pub live_projects: u32,
}

impl StoredEntity {
    /// The stored form of an engine view.
    pub fn from_view(view: &EntityView<'_>) -> StoredEntity {
        StoredEntity {
            entity_type: view.entity_type,
            id: view.id.to_string(),
            state: view.state,
            entered_at: view.state.map(|_| view.entered_at),
            account_id: view.account_id.map(str::to_string),
            region: view.region.map(str::to_string),
            plan: view.plan.map(str::to_string),
            live_projects: view.live_projects,
        }
    }

    /// An entity only referred to by others and holding nothing: stored or
    /// not, it means the same, so comparisons ignore it.
    fn is_placeholder(&self) -> bool {
        self.state.is_none()
            && self.account_id.is_none()
            && self.region.is_none()
            && self.plan.is_none()
            && self.live_projects == 0
    }
}

/// One way in which the stored projections disagree with the log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Difference {
    /// The log gives an incident that is not stored.
    IncidentMissing {
        /// Its id.
        id: String,
    },
    /// An incident is stored that the log does not give.
    IncidentExtra {
        /// Its id.
        id: String,
    },
    /// An incident is stored with other values than the log gives.
    IncidentDiffers {
        /// Its id.
        id: String,
        /// The record members that differ.
        fields: Vec<String>,
    },
    /// An incident's row holds other values in the columns that filters read
    /// (owner, status, kind, times) than its record as the log gives it. The
    /// row is rewritten by a repair; subscribers are not told, as the record
    /// they were sent is right.
    IncidentRowDiffers {
        /// Its id.
        id: String,
        /// The columns that differ, with the stored and the recomputed value.
        fields: Vec<String>,
    },
    /// The log gives an entity that is not stored.
    EntityMissing {
        /// Its type.
        entity_type: EntityType,
        /// Its id.
        id: String,
    },
    /// An entity is stored that the log does not give.
    EntityExtra {
        /// Its type.
        entity_type: EntityType,
        /// Its id.
        id: String,
    },
    /// An entity is stored with other values than the log gives.
    EntityDiffers {
        /// Its type.
        entity_type: EntityType,
        /// Its id.
        id: String,
        /// The fields that differ, with the stored and the recomputed value.
        fields: Vec<String>,
    },
    /// The stored clock is not the one the log gives.
    Clock {
        /// What is stored.
        stored: Option<Timestamp>,
        /// What the log gives.
        log: Option<Timestamp>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::IncidentMissing { id } => write!(f, "incident {id}: in the log, not stored"),
            Difference::IncidentExtra { id } => write!(f, "incident {id}: stored, not in the log"),
            Difference::IncidentDiffers { id, fields } => {
                write!(f, "incident {id}: stored {} differ from the log", fields.join(", "))
            }
            Difference::IncidentRowDiffers { id, fields } => {
                write!(f, "incident {id}: its stored row differs from the log: {}", fields.join(", "))
            }
            Difference::EntityMissing { entity_type, id } => {
                write!(f, "{entity_type} {id}: in the log, not stored")
            }
            Difference::EntityExtra { entity_type, id } => {
                write!(f, "{entity_type} {id}: stored, not in the log")
            }
            Difference::EntityDiffers { entity_type, id, fields } => {
                write!(f, "{entity_type} {id}: {}", fields.join(", "))
            }
            Difference::Clock { stored, log } => {
                let show =
                    |time: &Option<Timestamp>| time.map_or("none".to_string(), |time| time.to_string());
                write!(f, "clock: stored {}, the log gives {}", show(stored), show(log))
            }
        }
    }
}

/// The key of an entity row: the engine's slot. See the `entities` table.
pub(crate) fn entity_key(entity: EntityRef) -> i64 {
    let code = match entity.entity_type {
        EntityType::Account => 0,
        EntityType::Project => 1,
        EntityType::Dispute => 2,
    };
    (code << 32) | i64::from(entity.index)
}

/// The upsert of an entity's row (see [`execute_entity_upsert`]). `||` gives
/// text (byte for byte): cast it back to a blob.
pub(crate) const ENTITY_UPSERT: &str =
    "INSERT INTO entities(key, entity_type, id, state, entered_at, account_id, region, plan, live_projects, events)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
     ON CONFLICT(key) DO UPDATE SET state = excluded.state, entered_at = excluded.entered_at,
         account_id = excluded.account_id, region = excluded.region, plan = excluded.plan,
         live_projects = excluded.live_projects,
         events = CAST(events || excluded.events AS BLOB)";

/// Writes an entity's row; `events` (a segment of seqs, see seqs.rs) is
/// appended to the list of its events already stored.
pub(crate) fn upsert_entity(
    connection: &Connection,
    path: &Path,
    key: i64,
    entity: &StoredEntity,
    events: &[u8],
) -> Result<(), StoreError> {
    let mut statement =
        connection.prepare_cached(ENTITY_UPSERT).context(path, "prepare the entity upsert")?;
    execute_entity_upsert(&mut statement, path, key, entity, events)
}

/// [`upsert_entity`] with [`ENTITY_UPSERT`] prepared by the caller, once
/// for many rows.
pub(crate) fn execute_entity_upsert(
    statement: &mut rusqlite::Statement<'_>,
    path: &Path,
    key: i64,
    entity: &StoredEntity,
    events: &[u8],
) -> Result<(), StoreError> {
    statement
        .execute(params![
            key,
            entity.entity_type.as_str(),
            entity.id,
            entity.state.map(State::as_str),
            entity.entered_at.map(Timestamp::unix_nanos),
            entity.account_id,
            entity.region,
            entity.plan,
            entity.live_projects,
            events,
        ])
        .context(path, "store an entity")?;
    Ok(())
}

/// The seqs of each entity's events, by entity key, as the log gives them:
/// every stored payload parsed again and its entity found in `engine` (refolded
/// from the same log). A payload this version no longer accepts counts for the
/// entity the writer stored it with.
pub(crate) fn event_lists(
    connection: &Connection,
    path: &Path,
    engine: &Engine,
) -> Result<HashMap<i64, Vec<i64>>, StoreError> {
    let mut lists: HashMap<i64, Vec<i64>> = HashMap::new();
    crate::blocks::BlockReader::new(path)?.for_each(connection, path, |seq, stored_key, payload| {
        let found = lifewatch_core::parse_event(payload)
            .ok()
            .and_then(|event| engine.find_entity(event.event_type.entity_type(), &event.subject));
        let key = found.map_or(stored_key, entity_key);
        lists.entry(key).or_default().push(seq);
        Ok(())
    })?;
    Ok(lists)
}

/// Stores an incident record's JSON (see migration 7 in schema.rs); its id,
/// which the incident's row and the outbox entries of the batch point at.
pub(crate) fn store_record(connection: &Connection, path: &Path, json: &str) -> Result<i64, StoreError> {
    connection
        .prepare_cached("INSERT INTO incident_records(record) VALUES (?1)")
        .and_then(|mut statement| statement.insert([json]))
        .context(path, "store an incident record")
}

/// Writes an incident's row; `record_id`: its record, stored by [`store_record`].
pub(crate) fn upsert_incident(
    connection: &Connection,
    path: &Path,
    slot: u32,
    record: &IncidentRecord,
    record_id: i64,
) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO incidents(slot, id, key, kind, status, owner, entity_type, entity_id, opened_at,
                 resolved_at, record_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(slot) DO UPDATE SET status = excluded.status, owner = excluded.owner,
                 opened_at = excluded.opened_at, resolved_at = excluded.resolved_at,
                 record_id = excluded.record_id",
        )
        .context(path, "prepare the incident upsert")?;
    statement
        .execute(params![
            slot,
            record.id,
            record.key,
            record.kind.as_str(),
            record.status.as_str(),
            record.owner,
            record.entity.entity_type.as_str(),
            record.entity.id,
            record.opened_at.unix_nanos(),
            record.resolved_at.map(Timestamp::unix_nanos),
            record_id,
        ])
        .context(path, "store an incident")?;
    Ok(())
}

pub(crate) fn delete_incident(connection: &Connection, path: &Path, slot: u32) -> Result<(), StoreError> {
    connection
        .prepare_cached("DELETE FROM incidents WHERE slot = ?1")
        .and_then(|mut statement| statement.execute([slot]))
        .context(path, "delete a retracted incident")?;
    Ok(())
}

/// Appends one transition to an incident's history and to the outbox;
/// `record_id`: the incident's record as the batch leaves it.
pub(crate) fn note_transition(
    connection: &Connection,
    path: &Path,
    record: &IncidentRecord,
    record_id: i64,
    transition: &str,
    after_seq: i64,
) -> Result<(), StoreError> {
    // The payload is made from the record when the entry is read (see
    // `Writer::pending_outbox`); only entries older than migration 7 hold it.
    connection
        .prepare_cached(
            "INSERT INTO outbox(incident_id, transition, subject, payload, record_id, queued_at_ms)
             VALUES (?1, ?2, ?3, '', ?4, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
        )
        .and_then(|mut statement| {
            // The subject is core's, the one place it is built (its tokens are
            // cleaned: a region name may hold spaces or dots).
            let subject = lifewatch_core::incident_subject(record);
            statement.execute(params![record.id, transition, subject, record_id])
        })
        .context(path, "queue an incident transition")?;
    // The history row's position is its outbox entry's id: the order of the
    // store, and an integer key (schema.rs, migration 12).
    let position = connection.last_insert_rowid();
    connection
        .prepare_cached(
            "INSERT INTO incident_transitions(incident, position, transition, after_seq) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute(params![crate::schema::incident_number(&record.id), position, transition, after_seq])
        })
        .context(path, "store an incident transition")?;
    Ok(())
}

/// Reads a value of the `meta` table.
pub(crate) fn meta_value(
    connection: &Connection,
    path: &Path,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    connection
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get::<_, Option<i64>>(0))
        .optional()
        .map(Option::flatten)
        .context(path, "read the metadata")
}

pub(crate) fn set_meta_value(
    connection: &Connection,
    path: &Path,
    name: &str,
    value: Option<i64>,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut statement| statement.execute(params![name, value]))
        .context(path, "write the metadata")?;
    Ok(())
}

pub(crate) fn entity_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEntity, String>> {
    let entity_type: String = row.get(0)?;
    let id: String = row.get(1)?;
    let state: Option<String> = row.get(2)?;
    let entered_at: Option<i64> = row.get(3)?;
    let Some(entity_type) = EntityType::parse(&entity_type) else {
        return Ok(Err(format!("entity {id} has an unknown type {entity_type:?}")));
    };
    let state = match state {
        None => None,
        Some(name) => match State::parse(entity_type, &name) {
            Some(state) => Some(state),
            None => return Ok(Err(format!("{entity_type} {id} has an unknown state {name:?}"))),
        },
    };
    Ok(Ok(StoredEntity {
        entity_type,
        id,
        state,
        entered_at: entered_at.map(Timestamp::from_unix_nanos),
        account_id: row.get(4)?,
        region: row.get(5)?,
        plan: row.get(6)?,
        live_projects: row.get(7)?,
    }))
}

/// The SELECT list [`entity_from_row`] reads.
pub(crate) const ENTITY_COLUMNS: &str =
    "entity_type, id, state, entered_at, account_id, region, plan, live_projects";

/// How many columns [`ENTITY_COLUMNS`] names.
const ENTITY_COLUMN_COUNT: usize = 8;

/// What the engine holds, as stored rows: incidents by id (slot, record, JSON)
/// and entities by type and id, with the seqs of their events.
struct Expected {
    incidents: BTreeMap<String, (u32, IncidentRecord, String)>,
    entities: BTreeMap<(EntityType, String), (i64, StoredEntity, Vec<i64>)>,
}

fn expected(engine: &Engine, path: &Path, lists: &HashMap<i64, Vec<i64>>) -> Result<Expected, StoreError> {
    let mut incidents = BTreeMap::new();
    for slot in 0..engine.incident_count() {
        if engine.is_retracted(slot) {
            continue;
        }
        let Some(record) = engine.record(slot) else { continue };
        let json = serde_json::to_string(&record)
            .map_err(|source| StoreError::Encode { path: path.to_path_buf(), source })?;
        incidents.insert(record.id.clone(), (slot, record, json));
    }
    let mut entities = BTreeMap::new();
    for entity in engine.entities() {
        let Some(view) = engine.entity(entity) else { continue };
        let stored = StoredEntity::from_view(&view);
        let key = entity_key(entity);
        let events = lists.get(&key).cloned().unwrap_or_default();
        if !stored.is_placeholder() || !events.is_empty() {
            entities.insert((stored.entity_type, stored.id.clone()), (key, stored, events));
        }
    }
    Ok(Expected { incidents, entities })
}

/// An incident as stored: its row's columns (text read leniently, so that a
/// damaged byte is a difference rather than an error), the id of its record,
/// and the record's JSON (empty if the record is missing).
struct StoredIncident {
    slot: i64,
    key: String,
    kind: String,
    status: String,
    owner: String,
    entity_type: String,
    entity_id: String,
    opened_at: Option<i64>,
    resolved_at: Option<i64>,
    record_id: i64,
    record: String,
}

/// A column as text: a value that is not valid UTF-8 (a damaged byte) is
/// shown with replacement characters, and a value of another type as SQLite
/// would print it, so that either compares unequal to what the log gives.
fn lenient_text(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(number) => number.to_string(),
        ValueRef::Real(number) => number.to_string(),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The stored incidents by id.
fn stored_incidents(
    connection: &Connection,
    path: &Path,
) -> Result<HashMap<String, StoredIncident>, StoreError> {
    let mut stored = HashMap::new();
    let mut statement = connection
        .prepare(
            "SELECT incidents.id, slot, key, kind, status, owner, entity_type, entity_id, opened_at,
                 resolved_at, record_id, coalesce(incident_records.record, '')
             FROM incidents LEFT JOIN incident_records ON incident_records.id = incidents.record_id",
        )
        .context(path, "read incidents")?;
    let mut rows = statement.query([]).context(path, "read incidents")?;
    while let Some(row) = rows.next().context(path, "read incidents")? {
        let text = |index: usize| row.get_ref(index).map(lenient_text);
        let integer = |index: usize| -> rusqlite::Result<Option<i64>> {
            Ok(match row.get_ref(index)? {
                rusqlite::types::ValueRef::Integer(number) => Some(number),
                _ => None,
            })
        };
        let incident = (|| {
            Ok::<_, rusqlite::Error>((
                text(0)?,
                StoredIncident {
                    slot: row.get(1)?,
                    key: text(2)?,
                    kind: text(3)?,
                    status: text(4)?,
                    owner: text(5)?,
                    entity_type: text(6)?,
                    entity_id: text(7)?,
                    opened_at: integer(8)?,
                    resolved_at: integer(9)?,
                    record_id: row.get(10)?,
                    record: text(11)?,
                },
            ))
        })()
        .context(path, "read incidents")?;
        stored.insert(incident.0, incident.1);
    }
    Ok(stored)
}

/// The columns of an incident's row that differ from what `record` (the
/// log's) and `slot` give: filters read these columns, not the record, so a
/// damaged owner would silently drop the incident from `incidents --owner`.
fn row_fields(stored: &StoredIncident, slot: u32, record: &IncidentRecord) -> Vec<String> {
    let mut fields = Vec::new();
    let mut check = |name: &str, stored: String, expected: String| {
        if stored != expected {
            fields.push(format!("{name} {stored:?} stored, {expected:?} from the log"));
        }
    };
    let time = |time: Option<i64>| {
        time.map_or("none".to_string(), |nanos| Timestamp::from_unix_nanos(nanos).to_string())
    };
    check("slot", stored.slot.to_string(), slot.to_string());
    check("key", stored.key.clone(), record.key.clone());
    check("kind", stored.kind.clone(), record.kind.as_str().to_string());
    check("status", stored.status.clone(), record.status.as_str().to_string());
    check("owner", stored.owner.clone(), record.owner.to_string());
    check("entity_type", stored.entity_type.clone(), record.entity.entity_type.as_str().to_string());
    check("entity_id", stored.entity_id.clone(), record.entity.id.to_string());
    check("opened_at", time(stored.opened_at), time(Some(record.opened_at.unix_nanos())));
    check("resolved_at", time(stored.resolved_at), time(record.resolved_at.map(Timestamp::unix_nanos)));
    fields
}

/// Compares the stored projections with `engine` (refolded from the log),
/// the lists of each entity's events included (`lists`, from [`event_lists`]).
pub(crate) fn compare(
    connection: &Connection,
    path: &Path,
    engine: &Engine,
    lists: &HashMap<i64, Vec<i64>>,
) -> Result<Vec<Difference>, StoreError> {
    let expected = expected(engine, path, lists)?;
    let mut differences = Vec::new();

    let mut stored_records = stored_incidents(connection, path)?;
    for (id, (slot, record, json)) in &expected.incidents {
        let Some(stored) = stored_records.remove(id) else {
            differences.push(Difference::IncidentMissing { id: id.clone() });
            continue;
        };
        if stored.record != *json {
            differences.push(Difference::IncidentDiffers {
                id: id.clone(),
                fields: json_fields(&stored.record, json),
            });
        }
        let fields = row_fields(&stored, *slot, record);
        if !fields.is_empty() {
            differences.push(Difference::IncidentRowDiffers { id: id.clone(), fields });
        }
    }
    let mut extra: Vec<String> = stored_records.into_keys().collect();
    extra.sort();
    differences.extend(extra.into_iter().map(|id| Difference::IncidentExtra { id }));

    // With the seqs of its events (`None`: the stored list is damaged).
    type Row = (StoredEntity, Option<Vec<i64>>);
    let mut stored_entities: HashMap<(EntityType, String), Row> = HashMap::new();
    let mut statement = connection
        .prepare(&format!("SELECT {ENTITY_COLUMNS}, events FROM entities"))
        .context(path, "read entities")?;
    let mut rows = statement.query([]).context(path, "read entities")?;
    while let Some(row) = rows.next().context(path, "read entities")? {
        let entity = entity_from_row(row)
            .context(path, "read entities")?
            .map_err(|detail| StoreError::BadData { path: path.to_path_buf(), detail })?;
        let events = row
            .get_ref(ENTITY_COLUMN_COUNT)
            .and_then(|value| Ok(value.as_blob()?))
            .map(crate::seqs::decode)
            .unwrap_or(None);
        if !entity.is_placeholder() || events.as_ref().is_none_or(|events| !events.is_empty()) {
            stored_entities.insert((entity.entity_type, entity.id.clone()), (entity, events));
        }
    }
    for ((entity_type, id), (_, entity, events)) in &expected.entities {
        match stored_entities.remove(&(*entity_type, id.clone())) {
            None => differences.push(Difference::EntityMissing { entity_type: *entity_type, id: id.clone() }),
            Some((stored, stored_events)) if stored != *entity || stored_events.as_ref() != Some(events) => {
                let mut fields = entity_fields(&stored, entity);
                match stored_events {
                    None => fields.push("events: the stored list is damaged".to_string()),
                    Some(stored_events) if stored_events != *events => fields.push(format!(
                        "events {} stored, {} from the log{}",
                        stored_events.len(),
                        events.len(),
                        if stored_events.len() == events.len() { " (other seqs)" } else { "" }
                    )),
                    Some(_) => {}
                }
                differences.push(Difference::EntityDiffers {
                    entity_type: *entity_type,
                    id: id.clone(),
                    fields,
                });
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<(EntityType, String)> = stored_entities.into_keys().collect();
    extra.sort();
    differences
        .extend(extra.into_iter().map(|(entity_type, id)| Difference::EntityExtra { entity_type, id }));

    let stored_clock = meta_value(connection, path, "clock")?.map(Timestamp::from_unix_nanos);
    if stored_clock != engine.clock() {
        differences.push(Difference::Clock { stored: stored_clock, log: engine.clock() });
    }
    Ok(differences)
}

/// Replaces every projection with what `engine` holds (entities with the
/// lists of their events, `lists`), and queues an outbox entry for each
/// incident that changed, so that subscribers follow.
pub(crate) fn rewrite(
    connection: &Connection,
    path: &Path,
    engine: &Engine,
    lists: &HashMap<i64, Vec<i64>>,
    differences: &[Difference],
    after_seq: i64,
) -> Result<(), StoreError> {
    let expected = expected(engine, path, lists)?;
    let stored = stored_incidents(connection, path)?;
    // The record each incident's row will point at: a new one for those
    // that changed, the stored one for the others.
    let mut record_ids: HashMap<&str, i64> =
        stored.iter().map(|(id, incident)| (id.as_str(), incident.record_id)).collect();
    for difference in differences {
        match difference {
            Difference::IncidentMissing { id } | Difference::IncidentDiffers { id, .. } => {
                if let Some((_, record, json)) = expected.incidents.get(id) {
                    let transition = if matches!(difference, Difference::IncidentMissing { .. }) {
                        "opened"
                    } else {
                        "updated"
                    };
                    let record_id = store_record(connection, path, json)?;
                    note_transition(connection, path, record, record_id, transition, after_seq)?;
                    record_ids.insert(id, record_id);
                }
            }
            Difference::IncidentExtra { id } => {
                if let Some(incident) = stored.get(id)
                    && let Ok(record) = serde_json::from_str::<IncidentRecord>(&incident.record)
                {
                    let transition = Transition::Retracted.as_str();
                    note_transition(connection, path, &record, incident.record_id, transition, after_seq)?;
                }
            }
            _ => {}
        }
    }
    connection
        .execute_batch("DELETE FROM incidents; DELETE FROM entities;")
        .context(path, "clear projections")?;
    for (id, (slot, record, json)) in &expected.incidents {
        let record_id = match record_ids.get(id.as_str()) {
            Some(&record_id) => record_id,
            None => store_record(connection, path, json)?,
        };
        upsert_incident(connection, path, *slot, record, record_id)?;
    }
    // Every entity the engine knows, placeholders too: `show` finds an
    // entity's events through its row.
    let mut events = Vec::new();
    for entity in engine.entities() {
        if let Some(view) = engine.entity(entity) {
            let key = entity_key(entity);
            events.clear();
            crate::seqs::encode_segment(lists.get(&key).into_iter().flatten().copied(), &mut events);
            upsert_entity(connection, path, key, &StoredEntity::from_view(&view), &events)?;
        }
    }
    set_meta_value(connection, path, "clock", engine.clock().map(Timestamp::unix_nanos))?;
    set_meta_value(connection, path, "reproject", None)?;
    Ok(())
}

/// The top-level members of two JSON records that differ.
fn json_fields(stored: &str, expected: &str) -> Vec<String> {
    let parse = |text: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text).ok();
    match (parse(stored), parse(expected)) {
        (Some(stored), Some(expected)) => {
            let mut names: Vec<&String> = stored.keys().chain(expected.keys()).collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .filter(|name| stored.get(*name) != expected.get(*name))
                .map(|name| match (stored.get(name), expected.get(name)) {
                    (Some(a), Some(b)) => format!("{name} ({a} stored, {b} from the log)"),
                    _ => name.clone(),
                })
                .collect()
        }
        _ => vec!["record (not valid JSON)".to_string()],
    }
}

fn entity_fields(stored: &StoredEntity, expected: &StoredEntity) -> Vec<String> {
    let mut fields = Vec::new();
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            fields.push(format!("{name} {a} stored, {b} from the log"));
        }
    };
    let show_state = |state: Option<State>| state.map_or("none".to_string(), |state| state.to_string());
    let show_time = |time: Option<Timestamp>| time.map_or("none".to_string(), |time| time.to_string());
    let show = |text: &Option<String>| text.clone().unwrap_or_else(|| "none".to_string());
    check("state", show_state(stored.state), show_state(expected.state));
    check("entered_at", show_time(stored.entered_at), show_time(expected.entered_at));
    check("account_id", show(&stored.account_id), show(&expected.account_id));
    check("region", show(&stored.region), show(&expected.region));
    check("plan", show(&stored.plan), show(&expected.plan));
    check("live_projects", stored.live_projects.to_string(), expected.live_projects.to_string());
    fields
}
