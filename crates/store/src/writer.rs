//! The writer: owns the engine and the database, and keeps them in step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lifewatch_core::{
    Change, Config, Engine, EntityRef, Event, IncidentRecord, Outcome, RejectReason, Rejection, Timestamp,
    Transition, parse_event,
};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::blocks::BlockWriter;
use crate::checkpoint::Checkpointer;
use crate::error::{Context, StoreError};
use crate::lock::WriterLock;
use crate::log::{RestoreStats, refold};
use crate::project::{self, Difference, StoredEntity, entity_key};
use crate::schema::{self, Access, Durability};

/// How to open a writer.
#[derive(Clone, Copy, Default, Debug)]
pub struct WriterOptions {
    /// The most pages (4 KiB each) the database may grow to; past it a commit
    /// fails with [`StoreError::DiskFull`] as if the disk were full. `None`:
    /// no limit but the disk's.
    pub max_page_count: Option<u32>,
    /// How hard a commit tries to survive a power loss.
    pub durability: Durability,
}

/// What became of one input fed to the [`Writer`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Fed {
    /// Valid and new: applied, and appended to the log at the next commit.
    Accepted,
    /// Valid, but its id was accepted before: nothing changed.
    Duplicate,
    /// Invalid: kept in the rejected table at the next commit.
    Rejected(Rejection),
}

/// What one commit stored.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Committed {
    /// Events appended to the log.
    pub events: u64,
    /// Rejected inputs stored (an input already stored from the same origin is not counted).
    pub rejected: u64,
    /// Clock ticks stored.
    pub ticks: u64,
    /// Incident transitions queued in the outbox.
    pub transitions: u64,
}

/// An incident transition waiting to be published.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboxEntry {
    /// Its id: increasing, and stable across restarts, so `<id>` makes a
    /// good `Nats-Msg-Id` for deduplicating a re-send after a crash.
    pub id: i64,
    /// The incident's id.
    pub incident_id: String,
    /// `opened`, `updated`, `resolved`, `reopened` or `retracted`.
    pub transition: String,
    /// `incidents.<kind>.<entity type>.<entity id>`.
    pub subject: String,
    /// `{"transition": ..., "incident": <record as of the commit>}`.
    pub payload: String,
}

/// What re-driving rejected inputs did.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct RedriveSummary {
    /// Inputs looked at.
    pub tried: u64,
    /// Now valid and new: appended to the log and applied.
    pub accepted: u64,
    /// Now valid, but their id had been accepted meanwhile.
    pub duplicates: u64,
    /// Still invalid (their reason and detail are updated).
    pub still_rejected: u64,
}

/// The single writer of a database: it owns the engine, restored from the
/// log at open, and every input goes through it so that the log holds exactly
/// what the engine saw. See the crate documentation for the driver loop.
pub struct Writer {
    path: PathBuf,
    /// Declared before the connection, so that it stops first.
    _checkpointer: Checkpointer,
    connection: Connection,
    engine: Engine,
    pending: Pending,
    blocks: BlockWriter,
    next_seq: i64,
    /// The last tick stored, and the seq it followed: a tick that repeats it
    /// with no event in between changes nothing and is not stored.
    last_tick: Option<(i64, Timestamp)>,
    restore: RestoreStats,
    poisoned: bool,
    _lock: WriterLock,
}

/// Inputs fed since the last commit. Cleared, not dropped, after a commit:
/// the buffers keep their capacity for the next batch.
#[derive(Default)]
struct Pending {
    events: Vec<PendingEvent>,
    /// The accepted payloads, back to back (one allocation per batch, not
    /// one per event); each [`PendingEvent`] holds its range.
    payloads: Vec<u8>,
    rejected: Vec<PendingRejection>,
    ticks: Vec<(i64, Timestamp)>,
    checkpoints: Vec<(String, i64)>,
}

struct PendingEvent {
    seq: i64,
    entity: EntityRef,
    payload: std::ops::Range<usize>,
}

struct PendingRejection {
    after_seq: i64,
    origin: String,
    reason: RejectReason,
    detail: String,
    payload: Box<[u8]>,
}

impl Pending {
    fn clear(&mut self) {
        self.events.clear();
        self.payloads.clear();
        self.rejected.clear();
        self.ticks.clear();
        self.checkpoints.clear();
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.rejected.is_empty()
            && self.ticks.is_empty()
            && self.checkpoints.is_empty()
    }
}

impl Writer {
    /// Opens (or creates) the database at `path` for writing: takes the
    /// writer lock, migrates the schema, and restores the engine on `config`
    /// by refolding the log. Projections are recomputed when a migration or a
    /// change of configuration asks for it.
    pub fn open(path: &Path, config: Config) -> Result<Writer, StoreError> {
        Writer::open_with(path, config, WriterOptions::default())
    }

    /// [`Writer::open`] with options.
    pub fn open_with(path: &Path, config: Config, options: WriterOptions) -> Result<Writer, StoreError> {
        let lock = WriterLock::acquire(path)?;
        // Root may write to a file whatever its mode; an operator who made
        // the database read-only meant it, so honour the mode bits.
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().readonly()
        {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
                detail: "the file's permissions forbid writing".to_string(),
            });
        }
        let mut connection = schema::connect(path, Access::ReadWrite, options.durability)?;
        if let Some(pages) = options.max_page_count {
            connection
                .pragma_update(None, "max_page_count", pages)
                .context(path, "limit the database size")?;
        }
        let mut reproject = schema::check_and_migrate(&mut connection, path, Access::ReadWrite)?;
        let fingerprint = config_fingerprint(&config);
        if project::meta_value(&connection, path, "config_fingerprint")? != Some(fingerprint) {
            // Incidents are derived with the configuration (deadlines,
            // owners): with another one, the stored ones follow it.
            reproject = true;
        }
        let (mut engine, restore) = refold(&connection, path, config)?;
        engine.record_changes(true);
        let last_tick = connection
            .query_row("SELECT after_seq, now FROM ticks ORDER BY id DESC LIMIT 1", [], |row| {
                Ok((row.get::<_, i64>(0)?, Timestamp::from_unix_nanos(row.get(1)?)))
            })
            .map(Some)
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                error => Err(error),
            })
            .context(path, "read the clock ticks")?;
        let checkpointer = Checkpointer::start(&mut connection, path, options.durability)?;
        let mut writer = Writer {
            path: path.to_path_buf(),
            _checkpointer: checkpointer,
            connection,
            engine,
            pending: Pending::default(),
            blocks: BlockWriter::new(path)?,
            next_seq: restore.last_seq + 1,
            last_tick,
            restore,
            poisoned: false,
            _lock: lock,
        };
        if reproject {
            writer.repair()?;
            let transaction = writer.connection.transaction().context(path, "begin a transaction")?;
            project::set_meta_value(&transaction, path, "config_fingerprint", Some(fingerprint))?;
            transaction.commit().context(path, "commit")?;
        }
        Ok(writer)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine: read incidents and entities from it, never feed it
    /// directly (feed the writer, so that the log records it).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What restoring the engine at open found.
    pub fn restore_stats(&self) -> RestoreStats {
        self.restore
    }

    /// The engine's next deadline (see [`Engine::next_deadline`]).
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        self.engine.next_deadline()
    }

    /// Validates `raw` (one event, without its newline) and applies it. It is
    /// stored at the next [`Writer::commit`]: in the log when accepted, in the
    /// rejected table with `origin` (e.g. `file.jsonl:12` or a NATS subject)
    /// when not.
    pub fn feed(&mut self, raw: &[u8], origin: &str) -> Fed {
        self.feed_checked(raw, origin, |_| Ok(()))
    }

    /// [`Writer::feed`] with a check of the driver's own after parsing (the
    /// NATS adapter compares the message subject with the payload): an event
    /// that fails it is rejected with the check's reason.
    pub fn feed_checked(
        &mut self,
        raw: &[u8],
        origin: &str,
        check: impl FnOnce(&Event<'_>) -> Result<(), Rejection>,
    ) -> Fed {
        let event = match parse_event(raw).and_then(|event| check(&event).map(|()| event)) {
            Ok(event) => event,
            Err(rejection) => {
                self.reject(raw, &rejection, origin);
                return Fed::Rejected(rejection);
            }
        };
        self.feed_event(raw, &event)
    }

    /// [`Writer::feed`] for a driver that parsed the input itself (on a
    /// thread of its own, say): `event` must be what [`parse_event`] gives
    /// for `raw`, which is what the log keeps. A driver whose input failed to
    /// parse hands it to [`Writer::reject`].
    pub fn feed_event(&mut self, raw: &[u8], event: &Event<'_>) -> Fed {
        match self.engine.handle_event(event) {
            Outcome::Duplicate => Fed::Duplicate,
            Outcome::Accepted => {
                let seq = self.next_seq;
                self.push_event(seq, event, raw);
                Fed::Accepted
            }
        }
    }

    /// Appends an event the engine accepted to the pending batch.
    fn push_event(&mut self, seq: i64, event: &Event<'_>, raw: &[u8]) {
        let entity_type = event.event_type.entity_type();
        // The engine has just applied the event, so its entity exists.
        let entity = self
            .engine
            .find_entity(entity_type, &event.subject)
            .unwrap_or(EntityRef { entity_type, index: u32::MAX });
        let start = self.pending.payloads.len();
        self.pending.payloads.extend_from_slice(raw);
        self.pending.events.push(PendingEvent { seq, entity, payload: start..self.pending.payloads.len() });
        self.next_seq = seq + 1;
    }

    /// Keeps an input rejected before it could be parsed (a line over the
    /// size limit, say) or by a rule of the driver's.
    pub fn reject(&mut self, raw: &[u8], rejection: &Rejection, origin: &str) {
        self.pending.rejected.push(PendingRejection {
            after_seq: self.next_seq - 1,
            origin: origin.to_string(),
            reason: rejection.reason,
            detail: rejection.detail.clone(),
            payload: raw.into(),
        });
    }

    /// Moves the engine's clock to `now` (see [`Engine::handle_time`]) and
    /// stores the tick at the next commit, at its place in the log.
    pub fn tick(&mut self, now: Timestamp) {
        let after_seq = self.next_seq - 1;
        if let Some((last_seq, last_now)) = self.last_tick
            && last_seq == after_seq
            && now <= last_now
        {
            // Nothing arrived since a tick at least as late: no effect.
            return;
        }
        self.engine.handle_time(now);
        self.pending.ticks.push((after_seq, now));
        self.last_tick = Some((after_seq, now));
    }

    /// Records how far an input has been read (e.g. a stream sequence), in
    /// the same transaction as the next commit.
    pub fn set_checkpoint(&mut self, name: &str, position: i64) {
        self.pending.checkpoints.push((name.to_string(), position));
    }

    /// A checkpoint as last committed.
    pub fn checkpoint(&self, name: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        self.connection
            .query_row("SELECT position FROM checkpoints WHERE name = ?1", [name], |row| row.get(0))
            .optional()
            .context(&self.path, "read a checkpoint")
    }

    /// How many inputs wait for the next commit.
    pub fn pending(&self) -> usize {
        self.pending.events.len() + self.pending.rejected.len()
    }

    /// Stores everything fed since the last commit, and every projection,
    /// incident and outbox change the engine reported for it, in one
    /// transaction: after a crash the database holds all of it or none.
    ///
    /// After an error the engine is ahead of the database, so the writer
    /// refuses to go on ([`StoreError::Poisoned`]): drop it and open again,
    /// which restores the engine from what was committed.
    pub fn commit(&mut self) -> Result<Committed, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        let changes: Vec<Change> = self.engine.drain_changes().collect();
        if self.pending.is_empty() && changes.is_empty() {
            return Ok(Committed::default());
        }
        let result = write_batch(
            &mut self.connection,
            &self.path,
            &self.engine,
            &self.pending,
            &mut self.blocks,
            &changes,
            self.next_seq - 1,
        );
        match result {
            Ok(committed) => {
                self.pending.clear();
                Ok(committed)
            }
            Err(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    /// Up to `limit` outbox entries not yet delivered whose id is above
    /// `after` (0: from the first), oldest first. A publisher passes the last
    /// id it sent, so that entries sent but not yet marked delivered are not
    /// read again.
    pub fn pending_outbox(&self, after: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.connection
            .prepare_cached(
                "SELECT id, incident_id, transition, subject, payload FROM outbox
                 WHERE delivered_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([after, limit], |row| {
                        Ok(OutboxEntry {
                            id: row.get(0)?,
                            incident_id: row.get(1)?,
                            transition: row.get(2)?,
                            subject: row.get(3)?,
                            payload: row.get(4)?,
                        })
                    })?
                    .collect()
            })
            .context(&self.path, "read the outbox")
    }

    /// Marks outbox entries delivered (the server acknowledged them), now.
    pub fn mark_delivered(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i64);
        let path = &self.path;
        let transaction = self.connection.transaction().context(path, "begin a transaction")?;
        {
            let mut statement = transaction
                .prepare_cached("UPDATE outbox SET delivered_at = ?1 WHERE id = ?2 AND delivered_at IS NULL")
                .context(path, "mark outbox entries delivered")?;
            for id in ids {
                statement.execute(params![now, id]).context(path, "mark outbox entries delivered")?;
            }
        }
        transaction.commit().context(path, "mark outbox entries delivered")
    }

    /// Feeds stored rejected inputs through validation again, oldest first
    /// (only those of `reason`, if given). Accepted ones are appended to the
    /// log and applied; all of it commits in one transaction.
    pub fn redrive(&mut self, reason: Option<RejectReason>) -> Result<RedriveSummary, StoreError> {
        self.commit()?;
        let path = self.path.clone();
        let rows: Vec<(i64, Vec<u8>)> = self
            .connection
            .prepare(
                "SELECT id, payload FROM rejected WHERE redriven IS NULL AND (?1 IS NULL OR reason = ?1)
                 ORDER BY id",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([reason.map(RejectReason::as_str)], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .context(&path, "read rejected inputs")?;
        let mut summary = RedriveSummary::default();
        let mut outcomes: Vec<(i64, Result<String, Rejection>)> = Vec::new();
        for (id, payload) in rows {
            summary.tried += 1;
            let outcome = match parse_event(&payload) {
                Err(rejection) => {
                    summary.still_rejected += 1;
                    Err(rejection)
                }
                Ok(event) => match self.engine.handle_event(&event) {
                    Outcome::Duplicate => {
                        summary.duplicates += 1;
                        Ok("duplicate".to_string())
                    }
                    Outcome::Accepted => {
                        summary.accepted += 1;
                        let seq = self.next_seq;
                        self.push_event(seq, &event, &payload);
                        Ok(format!("accepted as event {seq}"))
                    }
                },
            };
            outcomes.push((id, outcome));
        }
        // The redrive marks go in the same transaction as the events they
        // moved to the log.
        let changes: Vec<Change> = self.engine.drain_changes().collect();
        let result = (|| {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context(&path, "begin a transaction")?;
            for (id, outcome) in &outcomes {
                match outcome {
                    Ok(note) => transaction
                        .execute("UPDATE rejected SET redriven = ?1 WHERE id = ?2", params![note, id])
                        .context(&path, "mark a re-driven input")?,
                    Err(rejection) => transaction
                        .execute(
                            "UPDATE rejected SET reason = ?1, detail = ?2 WHERE id = ?3",
                            params![rejection.reason.as_str(), rejection.detail, id],
                        )
                        .context(&path, "update a rejected input")?,
                };
            }
            write_changes(
                &transaction,
                &path,
                &self.engine,
                &self.pending,
                &mut self.blocks,
                &changes,
                self.next_seq - 1,
            )?;
            transaction.commit().context(&path, "commit")
        })();
        match result {
            Ok(()) => {
                self.pending.clear();
                Ok(summary)
            }
            Err(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    /// Compares the stored projections with the engine (restored from the
    /// log) and, where they differ, replaces them and queues the changed
    /// incidents in the outbox. Returns the differences found.
    pub fn repair(&mut self) -> Result<Vec<Difference>, StoreError> {
        self.commit()?;
        let path = &self.path;
        let lists = project::event_lists(&self.connection, path, &self.engine)?;
        let differences = project::compare(&self.connection, path, &self.engine, &lists)?;
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(path, "begin a transaction")?;
        project::rewrite(&transaction, path, &self.engine, &lists, &differences, self.next_seq - 1)?;
        transaction.commit().context(path, "commit")?;
        Ok(differences)
    }
}

/// A fingerprint of the configuration: projections stored with another one
/// are recomputed at open.
fn config_fingerprint(config: &Config) -> i64 {
    // The Debug form holds every field, in a fixed order.
    xxhash_rust::xxh3::xxh3_64(format!("{config:?}").as_bytes()) as i64
}

/// One batch, in one transaction.
fn write_batch(
    connection: &mut Connection,
    path: &Path,
    engine: &Engine,
    pending: &Pending,
    blocks: &mut BlockWriter,
    changes: &[Change],
    last_seq: i64,
) -> Result<Committed, StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(path, "begin a transaction")?;
    let committed = write_changes(&transaction, path, engine, pending, blocks, changes, last_seq)?;
    transaction.commit().context(path, "commit a batch")?;
    Ok(committed)
}

/// Appends the pending inputs and writes the engine's changes, inside the
/// caller's transaction.
fn write_changes(
    connection: &Connection,
    path: &Path,
    engine: &Engine,
    pending: &Pending,
    blocks: &mut BlockWriter,
    changes: &[Change],
    last_seq: i64,
) -> Result<Committed, StoreError> {
    let mut committed = Committed::default();
    blocks.append(
        connection,
        path,
        pending
            .events
            .iter()
            .map(|event| (event.seq, entity_key(event.entity), &pending.payloads[event.payload.clone()])),
    )?;
    committed.events = pending.events.len() as u64;
    {
        let mut insert = connection
            .prepare_cached(
                "INSERT INTO rejected(after_seq, origin, reason, detail, subject, digest, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(origin, digest) DO NOTHING",
            )
            .context(path, "prepare the rejected insert")?;
        for rejected in &pending.rejected {
            let digest = xxhash_rust::xxh3::xxh3_64(&rejected.payload) as i64;
            committed.rejected += insert
                .execute(params![
                    rejected.after_seq,
                    rejected.origin,
                    rejected.reason.as_str(),
                    rejected.detail,
                    subject_of(&rejected.payload),
                    digest,
                    &*rejected.payload,
                ])
                .context(path, "store a rejected input")? as u64;
        }
    }
    {
        let mut insert = connection
            .prepare_cached("INSERT INTO ticks(after_seq, now) VALUES (?1, ?2)")
            .context(path, "prepare the tick insert")?;
        for (after_seq, now) in &pending.ticks {
            insert.execute(params![after_seq, now.unix_nanos()]).context(path, "store a clock tick")?;
            committed.ticks += 1;
        }
    }
    for (name, position) in &pending.checkpoints {
        connection
            .prepare_cached(
                "INSERT INTO checkpoints(name, position) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET position = excluded.position",
            )
            .and_then(|mut statement| statement.execute(params![name, position]))
            .context(path, "store a checkpoint")?;
    }

    // Every entity with an event in the batch gets a row, even when the
    // event changed nothing (an illegal one), and the batch's seqs of its
    // events are appended to the list in its row, through which `show`
    // finds them.
    let mut entities: Vec<_> = changes
        .iter()
        .filter_map(|change| match change {
            Change::Entity(entity) => Some(*entity),
            Change::Incident { .. } => None,
        })
        .chain(pending.events.iter().map(|event| event.entity))
        .collect();
    entities.sort_unstable();
    entities.dedup();
    // The batch's events by entity, then seq (both sorted as `entities`).
    let mut seqs: Vec<(EntityRef, i64)> =
        pending.events.iter().map(|event| (event.entity, event.seq)).collect();
    seqs.sort_unstable();
    let mut seqs = seqs.as_slice();
    let mut segment = Vec::new();
    for entity in entities {
        let count = seqs.iter().take_while(|(of, _)| *of == entity).count();
        let (own, rest) = seqs.split_at(count);
        seqs = rest;
        if let Some(view) = engine.entity(entity) {
            segment.clear();
            crate::seqs::encode_segment(own.iter().map(|&(_, seq)| seq), &mut segment);
            project::upsert_entity(
                connection,
                path,
                entity_key(entity),
                &StoredEntity::from_view(&view),
                &segment,
            )?;
        }
    }

    // Each incident's row is written once, as it stands at the end of the
    // batch; its transitions are kept in order, with repeated updates of an
    // incident already opened or updated in this batch folded into one.
    let mut last: HashMap<u32, Transition> = HashMap::new();
    let mut transitions: Vec<(u32, Transition)> = Vec::new();
    for change in changes {
        let Change::Incident { index, transition } = *change else { continue };
        let previous = last.insert(index, transition);
        let folded = transition == Transition::Updated
            && matches!(previous, Some(Transition::Opened | Transition::Updated | Transition::Reopened));
        if !folded {
            transitions.push((index, transition));
        }
    }
    let mut records: HashMap<u32, Option<(IncidentRecord, String)>> = HashMap::new();
    for &(index, _) in &transitions {
        if records.contains_key(&index) {
            continue;
        }
        let record = engine.record(index);
        let entry = match record {
            Some(record) => {
                let json = serde_json::to_string(&record).map_err(|error| StoreError::BadData {
                    path: path.to_path_buf(),
                    detail: error.to_string(),
                })?;
                if engine.is_retracted(index) {
                    project::delete_incident(connection, path, index)?;
                } else {
                    project::upsert_incident(connection, path, index, &record, &json)?;
                }
                Some((record, json))
            }
            None => None,
        };
        records.insert(index, entry);
    }
    for (index, transition) in transitions {
        if let Some(Some((record, json))) = records.get(&index) {
            project::note_transition(connection, path, record, json, transition.as_str(), last_seq)?;
            committed.transitions += 1;
        }
    }
    project::set_meta_value(connection, path, "clock", engine.clock().map(Timestamp::unix_nanos))?;
    Ok(committed)
}

/// The `subject` of a rejected input, when it is JSON with a string subject,
/// so that `show` can list it with the entity.
fn subject_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Subject {
        subject: Option<serde_json::Value>,
    }
    let parsed: Subject = serde_json::from_slice(payload).ok()?;
    match parsed.subject? {
        serde_json::Value::String(subject) => Some(subject),
        _ => None,
    }
}
