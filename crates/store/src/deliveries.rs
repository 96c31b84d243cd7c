//! Notification deliveries: rows written with the transitions they carry,
//! and the handle the delivery worker reads and updates them through.
//!
//! A delivery is one incident transition for one channel. Its row is
//! inserted in the very transaction that queues the transition in the
//! outbox (when the writer has a [`DeliveryRouter`]), so a transition is
//! never committed without its deliveries, nor a delivery without its
//! transition. The worker owns the rows' state afterwards: `pending` until
//! the receiver accepted it (`delivered`) or it was given up (`dead`);
//! `lifewatch deliveries retry` makes dead ones pending again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Context, StoreError};
use crate::schema::{self, Access, Durability};

/// What a router is asked about one transition.
#[derive(Clone, Copy, Debug)]
pub struct RouteQuery<'a> {
    /// The incident's owner.
    pub owner: &'a str,
    /// Its severity.
    pub severity: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// The transition.
    pub transition: &'a str,
    /// For `escalated`, which step of the owner's chain (from 0; steps past
    /// the last are its repeats).
    pub escalation_step: u32,
}

/// The channels one transition goes to.
pub type DeliveryRouter = Arc<dyn Fn(&RouteQuery<'_>) -> Vec<String> + Send + Sync>;

/// Where transitions go, and which teams hold back their incidents of a
/// region while its outage is open.
#[derive(Clone)]
pub struct Routing {
    /// The channels of a transition.
    pub route: DeliveryRouter,
    /// Whether an owner's `stuck` and `provisioning_failed` incidents are
    /// held back while their region's outage is open.
    pub inhibit: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// The regions with an open outage, before a batch writes.
pub(crate) fn open_outage_regions(
    connection: &Connection,
    path: &Path,
) -> Result<HashSet<String>, StoreError> {
    connection
        .prepare_cached("SELECT entity_id FROM incidents WHERE status = 'open' AND kind = 'regional_outage'")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .context(path, "read the open outages")
}

/// The largest outbox id, before a batch writes its transitions.
pub(crate) fn last_outbox_id(connection: &Connection, path: &Path) -> Result<i64, StoreError> {
    connection
        .query_row("SELECT coalesce(max(id), 0) FROM outbox", [], |row| row.get(0))
        .context(path, "read the outbox")
}

/// Inserts the deliveries of every outbox entry after `after`, in the
/// caller's transaction, walking the entries in order: `open` (the regions
/// whose outage was open before the batch) follows the outages' own
/// transitions. A `stuck` or `provisioning_failed` transition in a region
/// with an open outage, of a team that inhibits, is held back
/// (`inhibited`); when that outage resolves, the held-back deliveries of
/// incidents still open are released (`pending`) and the others are
/// `suppressed` (never sent on their own; the outage's messages list them).
pub(crate) fn queue(
    connection: &Connection,
    path: &Path,
    after: i64,
    mut open: HashSet<String>,
    routing: &Routing,
) -> Result<u64, StoreError> {
    let entries: Vec<(i64, String, String, String)> = connection
        .prepare_cached(
            "SELECT outbox.id, outbox.incident_id, outbox.transition, incident_records.record
             FROM outbox JOIN incident_records ON incident_records.id = outbox.record_id
             WHERE outbox.id > ?1 ORDER BY outbox.id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([after], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect()
        })
        .context(path, "read the transitions to deliver")?;
    let mut queued = 0;
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO deliveries(outbox_id, channel, incident_id, transition, region, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .context(path, "queue a delivery")?;
    // The last transition of each incident so far in this walk, and the
    // incidents held back in it.
    let mut last: HashMap<String, String> = HashMap::new();
    let mut held_now: HashSet<String> = HashSet::new();
    for (outbox_id, incident, transition, record) in entries {
        let record: serde_json::Value = serde_json::from_str(&record)
            .map_err(|source| StoreError::BadRecord { path: path.to_path_buf(), source })?;
        let text =
            |name: &str| record.get(name).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        let (kind, owner) = (text("kind"), text("owner"));
        let region = record.get("region").and_then(serde_json::Value::as_str).map(str::to_string);
        let ended = matches!(transition.as_str(), "resolved" | "retracted");
        let mut state = "pending";
        if kind == "regional_outage" {
            let id =
                record.pointer("/entity/id").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
            if ended {
                open.remove(&id);
                release(connection, path, &id, &last)?;
            } else {
                open.insert(id);
            }
        } else if matches!(kind.as_str(), "stuck" | "provisioning_failed")
            && region.as_ref().is_some_and(|region| open.contains(region))
            && (routing.inhibit)(&owner)
        {
            // Only incidents that opened during the outage are held back
            // (with every later transition while it lasts); one already
            // sent before it keeps going out, its resolution included.
            let held = transition == "opened"
                || held_now.contains(&incident)
                || held_before(connection, path, &incident)?;
            if held {
                held_now.insert(incident.clone());
                state = "inhibited";
            }
        }
        last.insert(incident.clone(), transition.clone());
        let escalation_step = if transition == "escalated" {
            escalations_before(connection, path, &incident, outbox_id)?
        } else {
            0
        };
        let severity = text("severity");
        let query = RouteQuery {
            owner: &owner,
            severity: &severity,
            kind: &kind,
            transition: &transition,
            escalation_step,
        };
        for channel in (routing.route)(&query) {
            insert
                .execute(params![outbox_id, channel, incident, transition, region, state])
                .context(path, "queue a delivery")?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// How many times `incident` escalated before outbox entry `position`:
/// the step an `escalated` transition there stands for.
pub(crate) fn escalations_before(
    connection: &Connection,
    path: &Path,
    incident: &str,
    position: i64,
) -> Result<u32, StoreError> {
    connection
        .prepare_cached(
            "SELECT count(*) FROM incident_transitions
             WHERE incident = ?1 AND transition = 'escalated' AND position < ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![schema::incident_number(incident), position], |row| row.get::<_, u32>(0))
        })
        .context(path, "count an incident's escalations")
}

/// Whether an earlier batch held back a delivery of `incident`.
fn held_before(connection: &Connection, path: &Path, incident: &str) -> Result<bool, StoreError> {
    connection
        .prepare_cached("SELECT 1 FROM deliveries WHERE incident_id = ?1 AND state = 'inhibited' LIMIT 1")
        .and_then(|mut statement| statement.query_row([incident], |_| Ok(())).optional())
        .map(|found| found.is_some())
        .context(path, "read held-back deliveries")
}

/// The outage of `region` resolved: its held-back deliveries go out when
/// their incident is still open (by the walk so far, else by the table),
/// and are suppressed when it ended.
fn release(
    connection: &Connection,
    path: &Path,
    region: &str,
    last: &HashMap<String, String>,
) -> Result<(), StoreError> {
    let held: Vec<(i64, String, String)> = connection
        .prepare_cached(
            "SELECT deliveries.id, deliveries.incident_id, coalesce(incidents.status, 'resolved')
             FROM deliveries LEFT JOIN incidents ON incidents.id = deliveries.incident_id
             WHERE deliveries.region = ?1 AND deliveries.state = 'inhibited'",
        )
        .and_then(|mut statement| {
            statement.query_map([region], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        })
        .context(path, "read held-back deliveries")?;
    let mut update = connection
        .prepare_cached("UPDATE deliveries SET state = ?2 WHERE id = ?1")
        .context(path, "release a delivery")?;
    for (id, incident, status) in held {
        let still_open = match last.get(&incident) {
            Some(transition) => !matches!(transition.as_str(), "resolved" | "retracted"),
            None => status == "open",
        };
        let state = if still_open { "pending" } else { "suppressed" };
        update.execute(params![id, state]).context(path, "release a delivery")?;
    }
    Ok(())
}

/// A delivery with what it carries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// Its id: increasing with the transitions.
    pub id: i64,
    /// The channel.
    pub channel: String,
    /// The incident.
    pub incident_id: String,
    /// The transition.
    pub transition: String,
    /// `pending`, `delivered`, `dead`, `inhibited`, `suppressed` or
    /// `summarised` (sent within a rate-limit summary).
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Not tried again before this instant (Unix ms).
    pub not_before_ms: u64,
    /// When it was first tried (Unix ms).
    pub first_try_ms: Option<u64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was delivered or given up (Unix ms).
    pub done_at_ms: Option<u64>,
    /// The incident record as the transition left it (JSON).
    #[serde(skip)]
    pub record: String,
    /// The outbox entry (the transition) it carries.
    #[serde(skip)]
    pub outbox_id: i64,
}

const COLUMNS: &str =
    "deliveries.id, channel, deliveries.incident_id, deliveries.transition, state, attempts,
    not_before_ms, first_try_ms, last_error, done_at_ms, incident_records.record, deliveries.outbox_id";
const FROM: &str = "deliveries JOIN outbox ON outbox.id = deliveries.outbox_id
    JOIN incident_records ON incident_records.id = outbox.record_id";

fn delivery(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let unsigned = |value: Option<i64>| value.map(|value| u64::try_from(value).unwrap_or(0));
    Ok(Delivery {
        id: row.get(0)?,
        channel: row.get(1)?,
        incident_id: row.get(2)?,
        transition: row.get(3)?,
        state: row.get(4)?,
        attempts: u32::try_from(row.get::<_, i64>(5)?).unwrap_or(u32::MAX),
        not_before_ms: unsigned(Some(row.get(6)?)).unwrap_or(0),
        first_try_ms: unsigned(row.get(7)?),
        last_error: row.get(8)?,
        done_at_ms: unsigned(row.get(9)?),
        record: row.get(10)?,
        outbox_id: row.get(11)?,
    })
}

/// The delivery worker's (and the `deliveries` command's) handle: a
/// connection of its own next to the writer's; SQLite serialises the writes.
pub struct Deliveries {
    path: PathBuf,
    connection: Connection,
}

impl Deliveries {
    /// Opens an existing database for reading and updating deliveries.
    pub fn open(path: &Path) -> Result<Deliveries, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound { path: path.to_path_buf() });
        }
        let mut connection = schema::connect(path, Access::ReadWrite, Durability::Full)?;
        schema::check_and_migrate(&mut connection, path, Access::ReadOnly)?;
        Ok(Deliveries { path: path.to_path_buf(), connection })
    }

    /// For an `escalated` delivery, which step of the chain it stands for (from 1).
    pub fn escalation_step(&self, delivery: &Delivery) -> Result<Option<u32>, StoreError> {
        if delivery.transition != "escalated" {
            return Ok(None);
        }
        escalations_before(&self.connection, &self.path, &delivery.incident_id, delivery.outbox_id)
            .map(|before| Some(before + 1))
    }

    fn list(&self, condition: &str, values: impl rusqlite::Params) -> Result<Vec<Delivery>, StoreError> {
        self.connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} {condition}"))
            .and_then(|mut statement| statement.query_map(values, delivery)?.collect())
            .context(&self.path, "read deliveries")
    }

    /// Pending deliveries after `after`, in id order, at most `limit`.
    pub fn pending_after(&self, after: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.list(
            "WHERE state = 'pending' AND deliveries.id > ?1 ORDER BY deliveries.id LIMIT ?2",
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// Every delivery in `state` (all of them for `None`), newest first, at most `limit`.
    pub fn listed(&self, state: Option<&str>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match state {
            Some(state) => {
                self.list("WHERE state = ?1 ORDER BY deliveries.id DESC LIMIT ?2", params![state, limit])
            }
            None => self.list("ORDER BY deliveries.id DESC LIMIT ?1", params![limit]),
        }
    }

    /// The receiver accepted delivery `id`.
    pub fn delivered(&self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.update(
            "UPDATE deliveries SET state = 'delivered', done_at_ms = ?2 WHERE id = ?1",
            params![id, now_ms as i64],
        )
    }

    /// Delivery `id` went out in a summary (its channel's rate limit held it).
    pub fn summarised(&self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.update(
            "UPDATE deliveries SET state = 'summarised', done_at_ms = ?2 WHERE id = ?1",
            params![id, now_ms as i64],
        )
    }

    /// Delivery `id` failed and is tried again at `not_before_ms`.
    pub fn retry(
        &self,
        id: i64,
        attempts: u32,
        not_before_ms: u64,
        first_try_ms: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update(
            "UPDATE deliveries SET attempts = ?2, not_before_ms = ?3, first_try_ms = coalesce(first_try_ms, ?4),
             last_error = ?5 WHERE id = ?1",
            params![id, attempts, not_before_ms as i64, first_try_ms as i64, error],
        )
    }

    /// Delivery `id` was given up.
    pub fn dead(&self, id: i64, now_ms: u64, error: &str) -> Result<(), StoreError> {
        self.update(
            "UPDATE deliveries SET state = 'dead', done_at_ms = ?2, last_error = ?3, attempts = attempts + 1
             WHERE id = ?1",
            params![id, now_ms as i64, error],
        )
    }

    /// Makes dead deliveries pending again (`id`, or every dead one); how many.
    pub fn requeue(&self, id: Option<i64>) -> Result<u64, StoreError> {
        let sql =
            "UPDATE deliveries SET state = 'pending', attempts = 0, not_before_ms = 0, first_try_ms = NULL,
                   done_at_ms = NULL WHERE state = 'dead' AND (?1 IS NULL OR id = ?1)";
        let changed = self.connection.execute(sql, params![id]).context(&self.path, "re-queue deliveries")?;
        Ok(changed as u64)
    }

    /// The incidents held back, or suppressed, while `region`'s outage was open.
    pub fn held_back(&self, region: &str) -> Result<Vec<String>, StoreError> {
        self.connection
            .prepare_cached(
                "SELECT DISTINCT incident_id FROM deliveries
                 WHERE region = ?1 AND state IN ('inhibited', 'suppressed') ORDER BY incident_id",
            )
            .and_then(|mut statement| statement.query_map([region], |row| row.get(0))?.collect())
            .context(&self.path, "read held-back deliveries")
    }

    /// Whether delivery `id` exists.
    pub fn exists(&self, id: i64) -> Result<bool, StoreError> {
        self.connection
            .query_row("SELECT 1 FROM deliveries WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .context(&self.path, "read deliveries")
    }

    fn update(&self, sql: &str, values: impl rusqlite::Params) -> Result<(), StoreError> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(values))
            .context(&self.path, "record a delivery")?;
        Ok(())
    }
}
