//! The read side: a read-only handle for the on-call commands. It never
//! takes the writer lock, so it works while a writer runs, and sees what the
//! writer has committed.

use std::path::{Path, PathBuf};

use lifewatch_core::{Config, Engine, IncidentKind, IncidentRecord, Status, Timestamp, parse_event};
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Context, StoreError};
use crate::log::{RestoreStats, refold, refold_with_progress};
use crate::project::{self, Difference, ENTITY_COLUMNS, StoredEntity, entity_from_row};
use crate::schema::{self, Access};

/// The JSON of an incident row's record, as a column of a query on `incidents`.
pub(crate) const RECORD: &str =
    "(SELECT record FROM incident_records WHERE incident_records.id = incidents.record_id)";

/// The outbox's state (see [`Store::outbox_state`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutboxState {
    /// Transitions waiting to be published.
    pub waiting: u64,
    /// When the oldest waiting one was queued, in Unix milliseconds.
    pub oldest_queued_ms: Option<i64>,
    /// Transitions set aside (refused by the server for good).
    pub set_aside: u64,
}

/// Open incidents of one kind, owner and severity.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenCount {
    /// The incident kind.
    pub kind: String,
    /// The owning team.
    pub owner: String,
    /// The severity.
    pub severity: String,
    /// How many.
    pub count: u64,
}

/// A read-only handle on a database.
pub struct Store {
    path: PathBuf,
    connection: Connection,
}

/// Which incidents to list; every field narrows the list.
#[derive(Clone, Default, Debug)]
pub struct IncidentFilter {
    /// Only open, or only resolved, incidents.
    pub status: Option<Status>,
    /// Only this team's.
    pub owner: Option<String>,
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Only incidents that were open at some moment at or after this instant:
    /// still open, or resolved at or after it.
    pub since: Option<Timestamp>,
}

/// An accepted event as stored in the log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredEvent {
    /// Its place in arrival order, from 1.
    pub seq: i64,
    /// The event id.
    pub event_id: String,
    /// The emitting service.
    pub source: String,
    /// The CloudEvents type.
    pub event_type: String,
    /// The entity id.
    pub subject: String,
    /// The event time.
    pub time: Timestamp,
    /// The event exactly as received.
    pub payload: Vec<u8>,
}

impl StoredEvent {
    /// The event stored at `seq` with this payload. A payload that this
    /// version no longer accepts (validation got stricter since it was
    /// stored) still shows what its envelope says, read leniently.
    fn from_payload(seq: i64, payload: Vec<u8>) -> StoredEvent {
        let (event_id, source, event_type, subject, time) = match parse_event(&payload) {
            Ok(event) => (
                event.id.into_owned(),
                event.source.into_owned(),
                event.event_type.as_str().to_string(),
                event.subject.into_owned(),
                event.time,
            ),
            Err(_) => {
                let value: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                let text =
                    |name: &str| value.get(name).and_then(|value| value.as_str()).unwrap_or("").to_string();
                let time = Timestamp::parse_rfc3339(&text("time")).unwrap_or(Timestamp::from_unix_nanos(0));
                (text("id"), text("source"), text("type"), text("subject"), time)
            }
        };
        StoredEvent { seq, event_id, source, event_type, subject, time, payload }
    }
}

/// A rejected input as stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredRejection {
    /// Its id in the rejected table.
    pub id: i64,
    /// Where it came from (`file:line`, a NATS subject).
    pub origin: String,
    /// The named reason.
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// Its `subject`, when it had a readable one.
    pub subject: Option<String>,
    /// The input exactly as received, or its first 64 KiB when it was
    /// longer (see `length`).
    pub payload: Vec<u8>,
    /// The input's length in bytes; more than the payload's when only its
    /// beginning was kept.
    pub length: u64,
    /// What re-driving it did (`accepted as event N`, `duplicate`), if it was.
    pub redriven: Option<String>,
}

/// Counts and the clock, for a status line.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct StoreSummary {
    /// Events in the log.
    pub events: i64,
    /// Rejected inputs kept and not re-driven.
    pub rejected: i64,
    /// Incidents stored.
    pub incidents: i64,
    /// Outbox entries not yet delivered nor set aside.
    pub pending_outbox: i64,
    /// The engine's clock as last committed.
    pub clock: Option<Timestamp>,
}

impl Store {
    /// Opens an existing database read-only.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound { path: path.to_path_buf() });
        }
        let mut connection = schema::connect(path, Access::ReadOnly, schema::Durability::Full)?;
        schema::check_and_migrate(&mut connection, path, Access::ReadOnly)?;
        Ok(Store { path: path.to_path_buf(), connection })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` in one read transaction, so that it sees one committed
    /// state even while a writer commits.
    pub fn snapshot<T>(&self, read: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let transaction = self.connection.unchecked_transaction().context(&self.path, "begin a read")?;
        let result = read(self);
        transaction.rollback().context(&self.path, "end a read")?;
        result
    }

    /// Incident records, ordered by `opened_at` then `key`, as `replay`
    /// prints them (see [`crate::query::incidents`] for more filters and pages).
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
        let query = crate::query::IncidentQuery {
            status: filter.status,
            owner: filter.owner.clone(),
            kind: filter.kind,
            since: filter.since,
            ..Default::default()
        };
        Ok(crate::query::incidents(self, &query)?.incidents)
    }

    /// The incidents about entities with this id (of any type).
    pub fn incidents_of_entity(&self, entity_id: &str) -> Result<Vec<IncidentRecord>, StoreError> {
        self.records(
            &format!("SELECT {RECORD} FROM incidents WHERE entity_id = ?1 ORDER BY opened_at, key, slot"),
            [entity_id],
        )
    }

    /// Reads each incident's record (the column [`RECORD`] gives) from `sql`.
    fn records(&self, sql: &str, values: impl rusqlite::Params) -> Result<Vec<IncidentRecord>, StoreError> {
        let rows = self.records_with(sql, values, |_| Ok(()))?;
        Ok(rows.into_iter().map(|(record, ())| record).collect())
    }

    /// Reads each incident's record (the first column, as [`RECORD`] gives
    /// it) from `sql`, with what `rest` reads from the other columns.
    pub(crate) fn records_with<T>(
        &self,
        sql: &str,
        values: impl rusqlite::Params,
        mut rest: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<(IncidentRecord, T)>, StoreError> {
        let path = &self.path;
        let mut statement = self.connection.prepare_cached(sql).context(path, "read incidents")?;
        let mut rows = statement.query(values).context(path, "read incidents")?;
        let mut records = Vec::new();
        while let Some(row) = rows.next().context(path, "read incidents")? {
            let json =
                row.get_ref(0).and_then(|value| Ok(value.as_str()?)).context(path, "read incidents")?;
            let record = serde_json::from_str(json)
                .map_err(|source| StoreError::BadRecord { path: path.clone(), source })?;
            records.push((record, rest(row).context(path, "read incidents")?));
        }
        Ok(records)
    }

    /// The connection, for the queries of `query.rs`.
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The projections of the entities with this id (an account and a
    /// project may share one). A scan of the entities table: an index on the
    /// random id would cost every batch of the writer more (schema 4).
    pub fn entities_named(&self, id: &str) -> Result<Vec<StoredEntity>, StoreError> {
        self.entities(&format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE id = ?1 ORDER BY key"), [id])
    }

    /// Every entity that is in a state (for reports).
    pub fn entities_with_state(&self) -> Result<Vec<StoredEntity>, StoreError> {
        self.entities(
            &format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE state IS NOT NULL ORDER BY key"),
            [],
        )
    }

    fn entities(&self, sql: &str, values: impl rusqlite::Params) -> Result<Vec<StoredEntity>, StoreError> {
        let path = &self.path;
        let mut statement = self.connection.prepare(sql).context(path, "read entities")?;
        let mut rows = statement.query(values).context(path, "read entities")?;
        let mut entities = Vec::new();
        while let Some(row) = rows.next().context(path, "read entities")? {
            let entity = entity_from_row(row)
                .context(path, "read entities")?
                .map_err(|detail| StoreError::BadData { path: path.clone(), detail })?;
            entities.push(entity);
        }
        Ok(entities)
    }

    /// Every accepted event of entities with this id, in arrival order. The
    /// entities' rows list the seqs of their events (schema 5), each then
    /// read by seq; the log keeps only the payload: the other fields are
    /// parsed from it.
    pub fn events_of(&self, subject: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let path = &self.path;
        let lists: Vec<Vec<u8>> = self
            .connection
            .prepare("SELECT events FROM entities WHERE id = ?1 ORDER BY key")
            .and_then(|mut statement| statement.query_map([subject], |row| row.get(0))?.collect())
            .context(path, "read entities")?;
        let mut seqs = Vec::new();
        for list in &lists {
            seqs.extend(crate::seqs::decode(list).ok_or_else(|| StoreError::BadData {
                path: path.clone(),
                detail: format!(
                    "the list of events of {subject} is damaged (rebuild --repair recomputes it)"
                ),
            })?);
        }
        seqs.sort_unstable();
        seqs.dedup();
        let mut reader = crate::blocks::BlockReader::new(path)?;
        let mut block = crate::blocks::Block::default();
        let mut events = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let loaded = reader.load(&self.connection, path, seq, &mut block)?;
            let payload = if loaded {
                block.payload(seq).map_err(|detail| StoreError::BadData { path: path.clone(), detail })?
            } else {
                None
            };
            match payload {
                Some(payload) => events.push(StoredEvent::from_payload(seq, payload.to_vec())),
                None => {
                    return Err(StoreError::BadData {
                        path: path.clone(),
                        detail: format!("{subject} lists event {seq}, which is not in the log"),
                    });
                }
            }
        }
        Ok(events)
    }

    /// Rejected inputs, oldest first: only those of `reason` and `subject`
    /// when given; re-driven ones only with `include_redriven`.
    pub fn rejected(
        &self,
        reason: Option<&str>,
        subject: Option<&str>,
        include_redriven: bool,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        // With a subject, the condition names it plainly, so that SQLite
        // uses the index on it (`?2 IS NULL OR subject = ?2` would scan).
        let sql = if subject.is_some() {
            "SELECT id, origin, reason, detail, subject, payload, redriven, length, compressed FROM rejected
             WHERE (?1 IS NULL OR reason = ?1) AND subject = ?2 AND (?3 OR redriven IS NULL)
             ORDER BY id"
        } else {
            "SELECT id, origin, reason, detail, subject, payload, redriven, length, compressed FROM rejected
             WHERE (?1 IS NULL OR reason = ?1) AND ?2 IS NULL AND (?3 OR redriven IS NULL)
             ORDER BY id"
        };
        let rows: Vec<(StoredRejection, bool)> = self
            .connection
            .prepare(sql)
            .and_then(|mut statement| {
                statement
                    .query_map(rusqlite::params![reason, subject, include_redriven], |row| {
                        let rejection = StoredRejection {
                            id: row.get(0)?,
                            origin: row.get(1)?,
                            reason: row.get(2)?,
                            detail: row.get(3)?,
                            subject: row.get(4)?,
                            payload: row.get(5)?,
                            redriven: row.get(6)?,
                            length: row.get::<_, i64>(7)?.max(0) as u64,
                        };
                        Ok((rejection, row.get(8)?))
                    })?
                    .collect()
            })
            .context(&self.path, "read rejected inputs")?;
        rows.into_iter()
            .map(|(mut rejection, compressed)| {
                rejection.payload = crate::batch::unpack_rejected(&self.path, rejection.payload, compressed)?;
                Ok(rejection)
            })
            .collect()
    }

    /// Counts and the clock.
    pub fn summary(&self) -> Result<StoreSummary, StoreError> {
        let path = &self.path;
        let count = |sql: &str| -> Result<i64, StoreError> {
            self.connection.query_row(sql, [], |row| row.get(0)).context(path, "count rows")
        };
        Ok(StoreSummary {
            events: crate::blocks::last_seq(&self.connection, path)?,
            rejected: count("SELECT count(*) FROM rejected WHERE redriven IS NULL")?,
            incidents: count("SELECT count(*) FROM incidents")?,
            pending_outbox: count(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND set_aside_at IS NULL",
            )?,
            clock: self.clock()?,
        })
    }

    /// A version of what is committed: it changes with every committed batch
    /// or clock tick (new log rows, rejected inputs, ticks or incident
    /// transitions), so that a page can ask cheaply whether to refresh. Each
    /// part is the largest key of a table: one index lookup.
    pub fn version(&self) -> Result<String, StoreError> {
        let path = &self.path;
        let last = |sql: &str| -> Result<i64, StoreError> {
            self.connection.query_row(sql, [], |row| row.get(0)).context(path, "read the store's version")
        };
        Ok(format!(
            "{}.{}.{}.{}",
            crate::blocks::last_seq(&self.connection, path)?,
            last("SELECT coalesce(max(id), 0) FROM ticks")?,
            last("SELECT coalesce(max(id), 0) FROM rejected_rows")?,
            last("SELECT coalesce(max(id), 0) FROM outbox")?,
        ))
    }

    /// The outbox as the metrics show it: transitions waiting to be
    /// published, when the oldest of them was queued (wall clock, Unix
    /// milliseconds; `None` when none waits or it predates schema 14), and
    /// how many were set aside. Reads the outbox's partial indexes only.
    pub fn outbox_state(&self) -> Result<OutboxState, StoreError> {
        let path = &self.path;
        let pending = "delivered_at IS NULL AND set_aside_at IS NULL";
        let waiting: i64 = self
            .connection
            .prepare_cached(&format!("SELECT count(*) FROM outbox WHERE {pending}"))
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .context(path, "count the outbox")?;
        let oldest: Option<i64> = self
            .connection
            .prepare_cached(&format!("SELECT queued_at_ms FROM outbox WHERE {pending} ORDER BY id LIMIT 1"))
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
            .context(path, "read the outbox")?
            .flatten();
        let set_aside: i64 = self
            .connection
            .prepare_cached("SELECT count(*) FROM outbox WHERE set_aside_at IS NOT NULL")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .context(path, "count the outbox")?;
        Ok(OutboxState {
            waiting: u64::try_from(waiting).unwrap_or(0),
            oldest_queued_ms: oldest,
            set_aside: u64::try_from(set_aside).unwrap_or(0),
        })
    }

    /// Open incidents counted by kind, owner and severity (the severity is
    /// in the record): the open range of the status index.
    pub fn open_incident_counts(&self) -> Result<Vec<OpenCount>, StoreError> {
        let path = &self.path;
        let sql = format!(
            "SELECT kind, owner, json_extract({RECORD}, '$.severity'), count(*) FROM incidents
             WHERE status = 'open' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        );
        let mut statement = self.connection.prepare_cached(&sql).context(path, "count open incidents")?;
        let rows = statement
            .query_map([], |row| {
                Ok(OpenCount {
                    kind: row.get(0)?,
                    owner: row.get(1)?,
                    severity: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .and_then(|rows| rows.collect())
            .context(path, "count open incidents")?;
        Ok(rows)
    }

    /// Notification deliveries waiting and given up (the partial indexes of
    /// those states; delivered ones are not counted).
    pub fn delivery_counts(&self) -> Result<(u64, u64), StoreError> {
        let path = &self.path;
        let count = |state: &str| -> Result<u64, StoreError> {
            self.connection
                .prepare_cached("SELECT count(*) FROM deliveries WHERE state = ?1")
                .and_then(|mut statement| statement.query_row([state], |row| row.get::<_, i64>(0)))
                .map(|count| u64::try_from(count).unwrap_or(0))
                .context(path, "count deliveries")
        };
        Ok((count("pending")?, count("dead")?))
    }

    /// The database's size on disk: the file and its write-ahead log.
    pub fn size_bytes(&self) -> u64 {
        let wal = {
            let mut name = self.path.clone().into_os_string();
            name.push("-wal");
            std::path::PathBuf::from(name)
        };
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or what is damaged.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let path = &self.path;
        let mut statement =
            self.connection.prepare("PRAGMA integrity_check").context(path, "check integrity")?;
        let lines: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .context(path, "check integrity")?;
        Ok(lines.join("\n"))
    }

    /// The engine's clock as last committed.
    pub fn clock(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(project::meta_value(&self.connection, &self.path, "clock")?.map(Timestamp::from_unix_nanos))
    }

    /// A fresh engine on `config`, folded from the log alone.
    pub fn restore(&self, config: Config) -> Result<(Engine, RestoreStats), StoreError> {
        refold(&self.connection, &self.path, config)
    }

    /// [`Store::restore`], calling `progress` with the events refolded so
    /// far and the events in the log: at the start, every few thousand events
    /// and at the end.
    pub fn restore_with_progress(
        &self,
        config: Config,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Engine, RestoreStats), StoreError> {
        refold_with_progress(&self.connection, &self.path, config, Some(progress))
    }

    /// How the stored projections differ from `engine` (see [`Store::restore`]).
    /// The lists of each entity's events are recomputed from the log too (a
    /// pass that parses every payload again) and compared.
    pub fn compare(&self, engine: &Engine) -> Result<Vec<Difference>, StoreError> {
        let lists = project::event_lists(&self.connection, &self.path, engine)?;
        project::compare(&self.connection, &self.path, engine, &lists)
    }
}
