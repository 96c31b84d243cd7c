//! The writer: owns the engine and the database, and keeps them in step.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use lifewatch_core::{
    Change, Config, Engine, EntityRef, Event, Outcome, RejectReason, Rejection, Timestamp, parse_event,
};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::batch::{Batch, Pending, PendingEvent, PendingRejection, Touched};
use crate::blocks::BlockWriter;
use crate::checkpoint::Checkpointer;
use crate::error::{Context, StoreError};
use crate::lock::WriterLock;
use crate::log::{RestoreStats, refold_with_progress};
use crate::project::{self, Difference};
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
    /// Incidents opened (or reopened), by kind (`kind as usize`).
    pub opened: [u64; lifewatch_core::IncidentKind::ALL.len()],
    /// Incidents resolved, by kind (`kind as usize`).
    pub resolved: [u64; lifewatch_core::IncidentKind::ALL.len()],
}

impl std::ops::AddAssign for Committed {
    fn add_assign(&mut self, other: Committed) {
        self.events += other.events;
        self.rejected += other.rejected;
        self.ticks += other.ticks;
        self.transitions += other.transitions;
        for (mine, theirs) in self.opened.iter_mut().zip(other.opened) {
            *mine += theirs;
        }
        for (mine, theirs) in self.resolved.iter_mut().zip(other.resolved) {
            *mine += theirs;
        }
    }
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
    /// `{"transition": ..., "incident": <record as of the commit>}`, in its
    /// bounded form when the whole of it is over
    /// [`lifewatch_core::MAX_MESSAGE_BYTES`] (see [`lifewatch_core::bounded_message`]).
    pub payload: String,
}

/// An outbox entry set aside: the NATS server refused it for a reason that
/// retrying cannot fix, so it is no longer published.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SetAsideEntry {
    /// The outbox id.
    pub id: i64,
    /// The incident's id.
    pub incident_id: String,
    /// The transition it carried.
    pub transition: String,
    /// The subject it was refused on.
    pub subject: String,
    /// Why it was set aside (the server's error).
    pub reason: String,
    /// When it was set aside (wall clock).
    pub set_aside_at: Timestamp,
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
    /// Declared before the database, so that it stops first.
    checkpointer: Checkpointer,
    /// The connection, shared with the thread of background commits.
    db: Arc<Mutex<Db>>,
    /// The thread of background commits, started by the first one.
    background: Option<Background>,
    engine: Engine,
    pending: Pending,
    /// A cleared batch whose buffers the next commit reuses.
    spare: Option<Box<Batch>>,
    /// Which entities a batch touches (see [`Touched`]).
    touched: Touched,
    next_seq: i64,
    /// The last tick stored, and the seq it followed: a tick that repeats it
    /// with no event in between changes nothing and is not stored.
    last_tick: Option<(i64, Timestamp)>,
    restore: RestoreStats,
    poisoned: bool,
    /// The highest operator request applied or refused by this writer.
    operator_cursor: i64,
    _lock: WriterLock,
}

/// The connection and what writes the log through it.
struct Db {
    connection: Connection,
    blocks: BlockWriter,
    /// Where transitions are delivered; `None`: no delivery rows.
    router: Option<crate::deliveries::Routing>,
}

impl Db {
    /// Writes `batch` in one transaction.
    fn commit(&mut self, path: &Path, batch: &Batch) -> Result<Committed, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(path, "begin a transaction")?;
        let before = match self.router {
            Some(_) => Some((
                crate::deliveries::last_outbox_id(&transaction, path)?,
                crate::deliveries::open_outage_regions(&transaction, path)?,
            )),
            None => None,
        };
        let committed = batch.write(&transaction, path, &mut self.blocks)?;
        if let (Some(routing), Some((after, open))) = (&self.router, before)
            && committed.transitions > 0
        {
            crate::deliveries::queue(&transaction, path, after, open, routing)?;
        }
        transaction.commit().context(path, "commit a batch")?;
        Ok(committed)
    }
}

/// Locks the database. A thread that panicked while holding it left a
/// transaction open, which SQLite rolls back when the next one begins:
/// the connection is still usable.
fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The thread that writes the batches handed over by
/// [`Writer::commit_in_background`], one at a time, in order.
struct Background {
    batches: Option<mpsc::SyncSender<Box<Batch>>>,
    results: mpsc::Receiver<(Result<Committed, StoreError>, Box<Batch>)>,
    in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Batches handed over and not yet written: one written while the engine
/// fills the next. More would only hold more memory, as the two sides then
/// wait for each other anyway.
const IN_FLIGHT: usize = 1;

impl Background {
    fn start(db: Arc<Mutex<Db>>, path: PathBuf) -> Result<Background, StoreError> {
        let (batches, inbox) = mpsc::sync_channel::<Box<Batch>>(0);
        let (outbox, results) = mpsc::channel();
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("lifewatch-commit".to_string())
            .spawn(move || {
                for batch in inbox {
                    let result = lock(&db).commit(&thread_path, &batch);
                    if outbox.send((result, batch)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| StoreError::Spawn { path, thread: "background commit", source })?;
        Ok(Background { batches: Some(batches), results, in_flight: 0, thread: Some(thread) })
    }

    /// Waits for the oldest batch in flight; gives back its buffers.
    fn wait_one(&mut self, path: &Path) -> (Result<Committed, StoreError>, Option<Box<Batch>>) {
        match self.results.recv() {
            Ok((result, batch)) => {
                self.in_flight -= 1;
                (result, Some(batch))
            }
            Err(_) => {
                self.in_flight = 0;
                (Err(commit_thread_stopped(path)), None)
            }
        }
    }
}

fn commit_thread_stopped(path: &Path) -> StoreError {
    StoreError::CommitThreadStopped { path: path.to_path_buf() }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it holds.
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A batch handed over is written before the connection closes.
        self.background = None;
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
        Writer::open_with_progress(path, config, options, None)
    }

    /// [`Writer::open_with`], calling `progress` while the log is refolded
    /// with the events refolded so far and the events in the log.
    pub fn open_with_progress(
        path: &Path,
        config: Config,
        options: WriterOptions,
        progress: Option<&mut dyn FnMut(u64, u64)>,
    ) -> Result<Writer, StoreError> {
        let writer_lock = WriterLock::acquire(path)?;
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
        // Before anything is written: a writer that goes on writing into a
        // damaged B-tree spreads the damage, and its commits may be lost.
        crate::verify::quick_check(&connection, path)?;
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
        let (mut engine, restore) = refold_with_progress(&connection, path, config, progress)?;
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
        let blocks = BlockWriter::new(path)?;
        let mut writer = Writer {
            path: path.to_path_buf(),
            checkpointer,
            db: Arc::new(Mutex::new(Db { connection, blocks, router: None })),
            background: None,
            engine,
            pending: Pending::default(),
            spare: None,
            touched: Touched::default(),
            next_seq: restore.last_seq + 1,
            last_tick,
            restore,
            poisoned: false,
            operator_cursor: 0,
            _lock: writer_lock,
        };
        if reproject {
            writer.repair()?;
            let mut db = lock(&writer.db);
            let transaction = db.connection.transaction().context(path, "begin a transaction")?;
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
    /// From now on every committed transition also gets one delivery row
    /// per channel `router` names for it, in the same transaction.
    pub fn set_delivery_router(&mut self, routing: crate::deliveries::Routing) {
        lock(&self.db).router = Some(routing);
    }

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
        let entity = self.engine.last_applied().unwrap_or(EntityRef { entity_type, index: u32::MAX });
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

    /// Applies the operator requests (`lifewatch ack|resolve|note`, the
    /// API) that wait in the database to the engine, at this place in the
    /// log; the next commit stores each one's outcome with the transitions
    /// it made (`acknowledged`, `resolved`). Returns the requests decided,
    /// with their outcome (`state` `applied` or `refused`).
    pub fn apply_operator_requests(&mut self) -> Result<Vec<crate::OperatorAction>, StoreError> {
        let requests = {
            let db = lock(&self.db);
            crate::operator::requested_after(&db.connection, &self.path, self.operator_cursor)?
        };
        let mut decided = Vec::with_capacity(requests.len());
        for mut request in requests {
            self.operator_cursor = self.operator_cursor.max(request.id);
            let slot = self.incident_slot(&request.incident_id)?;
            let index = self.engine.find_incident(&request.incident_id, slot);
            let outcome = match (index, request.action) {
                (None, _) => Err(lifewatch_core::OperatorRefusal::NoSuchIncident),
                (Some(index), crate::ActionKind::Ack) => self.engine.acknowledge(index),
                (Some(index), crate::ActionKind::Resolve) => {
                    self.engine.resolve_by_operator(index, request.requested_at)
                }
                (Some(index), crate::ActionKind::Note) => {
                    if self.engine.is_retracted(index) {
                        Err(lifewatch_core::OperatorRefusal::Retracted)
                    } else {
                        Ok(())
                    }
                }
            };
            let refusal = outcome.err().map(|refusal| refusal.to_string());
            self.pending.decided.push(crate::operator::Decided {
                id: request.id,
                refusal: refusal.clone(),
                after_seq: self.next_seq - 1,
                ticks_before: self.pending.ticks.len(),
                slot: index,
            });
            request.state = if refusal.is_some() { "refused" } else { "applied" }.to_string();
            request.refusal = refusal;
            decided.push(request);
        }
        Ok(decided)
    }

    /// The engine index the store keeps for incident `id`, if it has the incident.
    fn incident_slot(&self, id: &str) -> Result<Option<u32>, StoreError> {
        use rusqlite::OptionalExtension;
        lock(&self.db)
            .connection
            .query_row("SELECT slot FROM incidents WHERE id = ?1", [id], |row| row.get::<_, i64>(0))
            .optional()
            .map(|slot| slot.and_then(|slot| u32::try_from(slot).ok()))
            .context(&self.path, "find an incident")
    }

    /// Records how far an input has been read (e.g. a stream sequence), in
    /// the same transaction as the next commit.
    pub fn set_checkpoint(&mut self, name: &str, position: i64) {
        self.pending.checkpoints.push((name.to_string(), position));
    }

    /// A checkpoint as last committed.
    pub fn checkpoint(&self, name: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        lock(&self.db)
            .connection
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
        self.flush()?;
        let Some(batch) = self.take_batch() else { return Ok(Committed::default()) };
        let result = lock(&self.db).commit(&self.path, &batch);
        self.spare = Some(batch);
        self.settle(result)
    }

    /// [`Writer::commit`] on a thread of its own: hands the batch over and
    /// returns while it is written, so that the caller can feed the next
    /// one meanwhile. Returns what the previous background commit stored
    /// (waiting for it if it is still being written), or its error.
    /// Nothing handed over is visible to [`Store`](crate::Store) readers,
    /// [`Writer::pending_outbox`] or [`Writer::checkpoint`] until it is
    /// written: call [`Writer::flush`] (or [`Writer::commit`]) to wait.
    /// A driver acknowledges its source only for batches whose result it
    /// has: after a crash, the batch that was being written is lost as a
    /// whole, like any batch not yet committed.
    pub fn commit_in_background(&mut self) -> Result<Committed, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        let mut previous = Committed::default();
        if let Some(background) = &mut self.background
            && background.in_flight >= IN_FLIGHT
        {
            let (result, batch) = background.wait_one(&self.path);
            self.spare = batch;
            previous = self.settle(result)?;
        }
        let Some(batch) = self.take_batch() else { return Ok(previous) };
        let background = match &mut self.background {
            Some(background) => background,
            None => self.background.insert(Background::start(self.db.clone(), self.path.clone())?),
        };
        if background.batches.as_ref().is_some_and(|sender| sender.send(batch).is_ok()) {
            background.in_flight += 1;
            Ok(previous)
        } else {
            self.poisoned = true;
            Err(commit_thread_stopped(&self.path))
        }
    }

    /// Starts copying what is committed into the database file on the
    /// checkpoint thread, without waiting: for a caller about to close the
    /// writer after other work, so that closing has less left to copy.
    pub fn checkpoint_soon(&self) {
        self.checkpointer.request();
    }

    /// Waits until every batch handed to [`Writer::commit_in_background`]
    /// is written; returns what they stored, or the first error.
    pub fn flush(&mut self) -> Result<Committed, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        let mut total = Committed::default();
        while let Some(background) = &mut self.background
            && background.in_flight > 0
        {
            let (result, batch) = background.wait_one(&self.path);
            self.spare = batch;
            total += self.settle(result)?;
        }
        Ok(total)
    }

    /// The pending inputs and the engine's changes as a batch to write;
    /// `None` when there is nothing to write.
    fn take_batch(&mut self) -> Option<Box<Batch>> {
        let changes: Vec<Change> = self.engine.drain_changes().collect();
        if self.pending.is_empty() && changes.is_empty() {
            return None;
        }
        let mut batch = self.spare.take().unwrap_or_default();
        batch.take(&mut self.pending, &self.engine, &changes, self.next_seq - 1, &mut self.touched);
        Some(batch)
    }

    /// After an error the engine is ahead of the database: poisoned.
    fn settle(&mut self, result: Result<Committed, StoreError>) -> Result<Committed, StoreError> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Up to `limit` outbox entries not yet delivered whose id is above
    /// `after` (0: from the first), oldest first. A publisher passes the last
    /// id it sent, so that entries sent but not yet marked delivered are not
    /// read again.
    pub fn pending_outbox(&self, after: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let db = lock(&self.db);
        let rows: Vec<(OutboxEntry, Option<String>)> = db
            .connection
            .prepare_cached(
                "SELECT outbox.id, incident_id, transition, subject, payload, incident_records.record
                 FROM outbox LEFT JOIN incident_records ON incident_records.id = outbox.record_id
                 WHERE delivered_at IS NULL AND set_aside_at IS NULL AND outbox.id > ?1
                 ORDER BY outbox.id LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([after, limit], |row| {
                        let entry = OutboxEntry {
                            id: row.get(0)?,
                            incident_id: row.get(1)?,
                            transition: row.get(2)?,
                            subject: row.get(3)?,
                            // Entries queued before schema 7 hold their payload.
                            payload: row.get(4)?,
                        };
                        Ok((entry, row.get::<_, Option<String>>(5)?))
                    })?
                    .collect()
            })
            .context(&self.path, "read the outbox")?;
        rows.into_iter()
            .map(|(mut entry, record)| {
                if let Some(record) = record {
                    entry.payload = if entry.transition == "escalated" {
                        // Which step of the chain: the escalations of the
                        // incident before this one, plus one.
                        let before = crate::deliveries::escalations_before(
                            &db.connection,
                            &self.path,
                            &entry.incident_id,
                            entry.id,
                        )?;
                        lifewatch_core::escalation_message(before + 1, &record)
                    } else {
                        lifewatch_core::incident_message(&entry.transition, &record)
                    };
                }
                // A record can be too large for NATS (SPEC puts no limit on
                // data strings): it goes out bounded, so that the transition
                // is still published.
                entry.payload = lifewatch_core::bounded_message(std::mem::take(&mut entry.payload));
                Ok(entry)
            })
            .collect()
    }

    /// How many outbox entries wait to be published (neither delivered nor set aside).
    pub fn pending_outbox_count(&self) -> Result<u64, StoreError> {
        lock(&self.db)
            .connection
            .query_row(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND set_aside_at IS NULL",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count.max(0) as u64)
            .context(&self.path, "count the outbox")
    }

    /// Sets outbox entries aside, now, each with its reason: they are no
    /// longer pending, and [`set_aside_outbox`] lists them. An entry already
    /// delivered is left as it is.
    pub fn set_aside(&mut self, entries: &[(i64, String)]) -> Result<(), StoreError> {
        let now = wall_clock_nanos();
        let path = &self.path;
        let mut db = lock(&self.db);
        let transaction = db.connection.transaction().context(path, "begin a transaction")?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "UPDATE outbox SET set_aside_at = ?1, set_aside_reason = ?2
                     WHERE id = ?3 AND delivered_at IS NULL AND set_aside_at IS NULL",
                )
                .context(path, "set outbox entries aside")?;
            for (id, reason) in entries {
                statement.execute(params![now, reason, id]).context(path, "set outbox entries aside")?;
            }
        }
        transaction.commit().context(path, "set outbox entries aside")
    }

    /// Marks outbox entries delivered (the server acknowledged them), now.
    pub fn mark_delivered(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let now = wall_clock_nanos();
        let path = &self.path;
        let mut db = lock(&self.db);
        let transaction = db.connection.transaction().context(path, "begin a transaction")?;
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
        // Inputs of which only the beginning was kept (see
        // `REJECTED_PAYLOAD_CAP`) cannot be validated again: they stay as
        // they are, counted as still rejected.
        let rows: Vec<(i64, Vec<u8>, bool, bool)> = lock(&self.db)
            .connection
            .prepare(
                "SELECT id, payload, compressed, length > ?2 FROM rejected
                 WHERE redriven IS NULL AND (?1 IS NULL OR reason = ?1)
                 ORDER BY id",
            )
            .and_then(|mut statement| {
                statement
                    .query_map(
                        params![reason.map(RejectReason::as_str), crate::batch::REJECTED_PAYLOAD_CAP as i64],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )?
                    .collect()
            })
            .context(&path, "read rejected inputs")?;
        let mut summary = RedriveSummary::default();
        let mut outcomes: Vec<(i64, Result<String, Rejection>)> = Vec::new();
        for (id, payload, compressed, cut) in rows {
            summary.tried += 1;
            if cut {
                summary.still_rejected += 1;
                continue;
            }
            let payload = crate::batch::unpack_rejected(&path, payload, compressed)?;
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
        let mut batch = self.spare.take().unwrap_or_default();
        let result = (|| {
            batch.take(&mut self.pending, &self.engine, &changes, self.next_seq - 1, &mut self.touched);
            let mut db = lock(&self.db);
            let db = &mut *db;
            let transaction = db
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context(&path, "begin a transaction")?;
            let mut texts = crate::batch::RejectionTexts::default();
            for (id, outcome) in &outcomes {
                match outcome {
                    Ok(note) => transaction
                        .execute("UPDATE rejected_rows SET redriven = ?1 WHERE id = ?2", params![note, id])
                        .context(&path, "mark a re-driven input")?,
                    Err(rejection) => {
                        let reason = texts.id(&transaction, &path, rejection.reason.as_str())?;
                        let detail = texts.id(&transaction, &path, &rejection.detail)?;
                        transaction
                            .execute(
                                "UPDATE rejected_rows SET reason = ?1, detail = ?2 WHERE id = ?3",
                                params![reason, detail, id],
                            )
                            .context(&path, "update a rejected input")?
                    }
                };
            }
            batch.write(&transaction, &path, &mut db.blocks)?;
            transaction.commit().context(&path, "commit")
        })();
        self.spare = Some(batch);
        match result {
            Ok(()) => Ok(summary),
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
        let mut db = lock(&self.db);
        let lists = project::event_lists(&db.connection, path, &self.engine)?;
        let differences = project::compare(&db.connection, path, &self.engine, &lists)?;
        let transaction = db
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(path, "begin a transaction")?;
        project::rewrite(&transaction, path, &self.engine, &lists, &differences, self.next_seq - 1)?;
        transaction.commit().context(path, "commit")?;
        Ok(differences)
    }
}

/// Which rules of the engine derived the stored projections. Bumped when the
/// same log and configuration give other incidents: projections stored by
/// an older build are then recomputed at open, like those of another
/// configuration. 2: a retracted incident gives its ordinal back, and a
/// record's account and region are taken when the incident changes
/// (docs/contract.md section 7). 3: text a record copies from events is cut
/// to `MAX_RECORD_TEXT` bytes.
const DERIVATION: u32 = 3;

/// Whether the projections of the database at `path` were derived under
/// `config` (a writer opened with another configuration derives them again).
pub fn derived_under(path: &Path, config: &Config) -> Result<bool, StoreError> {
    let connection = schema::connect(path, Access::ReadOnly, schema::Durability::Full)?;
    Ok(project::meta_value(&connection, path, "config_fingerprint")? == Some(config_fingerprint(config)))
}

/// A fingerprint of the configuration and of [`DERIVATION`]: projections
/// stored with another one are recomputed at open.
fn config_fingerprint(config: &Config) -> i64 {
    // Only what the engine's results depend on, named field by field (the
    // application's sections, `[live]` and `[nats]`, are not part of
    // `Config`), and the rules that derived them.
    let text = format!("derivation {DERIVATION}\n{}", config.fingerprint_text());
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as i64
}

/// The wall clock in nanoseconds since 1970 (0 before it).
fn wall_clock_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

/// The outbox entries set aside in the database at `path`, oldest first. It
/// opens the file read-only and takes no lock, so it works while the monitor runs.
pub fn set_aside_outbox(path: &Path) -> Result<Vec<SetAsideEntry>, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound { path: path.to_path_buf() });
    }
    let mut connection = schema::connect(path, Access::ReadOnly, Durability::Full)?;
    schema::check_and_migrate(&mut connection, path, Access::ReadOnly)?;
    connection
        .prepare(
            "SELECT id, incident_id, transition, subject, set_aside_reason, set_aside_at FROM outbox
             WHERE set_aside_at IS NOT NULL ORDER BY id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| {
                    Ok(SetAsideEntry {
                        id: row.get(0)?,
                        incident_id: row.get(1)?,
                        transition: row.get(2)?,
                        subject: row.get(3)?,
                        reason: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        set_aside_at: Timestamp::from_unix_nanos(row.get(5)?),
                    })
                })?
                .collect()
        })
        .context(path, "read the outbox entries set aside")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database path in a directory of its own, removed by the caller.
    fn temp_db(name: &str) -> (PathBuf, PathBuf) {
        let directory = std::env::temp_dir().join(format!("lifewatch-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        (directory.join("test.db"), directory)
    }

    /// The regional outage fixture with its region renamed.
    fn outage_in(region: &str) -> Vec<String> {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/regional_outage.jsonl");
        std::fs::read_to_string(fixture)
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.replace("\"eu-west-1\"", &format!("\"{region}\"")))
            .collect()
    }

    fn fed_writer(path: &Path, lines: &[String]) -> Writer {
        let mut writer = Writer::open(path, Config::shipped()).unwrap();
        for line in lines {
            writer.feed(line.as_bytes(), "test");
        }
        writer.commit().unwrap();
        writer
    }

    #[test]
    fn a_region_with_a_space_is_queued_on_a_valid_subject() {
        let (path, directory) = temp_db("region-subject");
        let writer = fed_writer(&path, &outage_in("eu west"));
        let pending = writer.pending_outbox(0, 1_000).unwrap();
        let outage: Vec<&OutboxEntry> =
            pending.iter().filter(|entry| entry.subject.starts_with("incidents.regional_outage.")).collect();
        assert!(!outage.is_empty(), "the fixture raises a regional outage");
        for entry in &pending {
            assert!(
                entry.subject.split('.').count() == 4
                    && entry
                        .subject
                        .bytes()
                        .all(|byte| byte.is_ascii_graphic() && byte != b'*' && byte != b'>'),
                "{} is not a valid subject of four tokens",
                entry.subject
            );
        }
        assert!(
            outage[0].subject.starts_with("incidents.regional_outage.region.eu_west~"),
            "{}",
            outage[0].subject
        );
        drop(writer);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn entries_set_aside_are_no_longer_pending_and_are_listed() {
        let (path, directory) = temp_db("set-aside");
        let mut writer = fed_writer(&path, &outage_in("eu-west-1"));
        let pending = writer.pending_outbox(0, 1_000).unwrap();
        assert!(pending.len() >= 3);
        let total = pending.len() as u64;
        assert_eq!(writer.pending_outbox_count().unwrap(), total);
        writer.set_aside(&[(pending[1].id, "max payload size exceeded".to_string())]).unwrap();
        writer.mark_delivered(&[pending[0].id]).unwrap();
        // Setting aside a delivered entry changes nothing.
        writer.set_aside(&[(pending[0].id, "too late".to_string())]).unwrap();
        let after: Vec<i64> = writer.pending_outbox(0, 1_000).unwrap().iter().map(|entry| entry.id).collect();
        let expected: Vec<i64> = pending[2..].iter().map(|entry| entry.id).collect();
        assert_eq!(after, expected);
        assert_eq!(writer.pending_outbox_count().unwrap(), total - 2);
        let listed = set_aside_outbox(&path).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, pending[1].id);
        assert_eq!(listed[0].subject, pending[1].subject);
        assert_eq!(listed[0].incident_id, pending[1].incident_id);
        assert_eq!(listed[0].reason, "max payload size exceeded");
        assert!(listed[0].set_aside_at.unix_nanos() > 0);
        // Still set aside after the writer is opened again.
        drop(writer);
        let writer = Writer::open(&path, Config::shipped()).unwrap();
        assert_eq!(writer.pending_outbox_count().unwrap(), total - 2);
        drop(writer);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn projections_of_an_older_derivation_are_recomputed_at_open() {
        let (path, directory) = temp_db("derivation");
        drop(fed_writer(&path, &outage_in("eu-west-1")));
        {
            // What a build of derivation 1 left: the fingerprint of the
            // configuration alone, and records its rules made otherwise.
            let connection = rusqlite::Connection::open(&path).unwrap();
            let derivation_1 =
                xxhash_rust::xxh3::xxh3_64(format!("{:?}", Config::shipped()).as_bytes()) as i64;
            let sql = "UPDATE meta SET value = ?1 WHERE name = 'config_fingerprint'";
            assert_eq!(connection.execute(sql, [derivation_1]).unwrap(), 1);
            let sql = "UPDATE incident_records SET record = replace(record, '\"count\":1,', '\"count\":7,')";
            assert!(connection.execute(sql, []).unwrap() > 0);
        }
        let mut writer = Writer::open(&path, Config::shipped()).unwrap();
        let differences = writer.repair().unwrap();
        assert!(differences.is_empty(), "not recomputed at open: {differences:?}");
        drop(writer);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_record_of_an_event_with_huge_text_is_queued_bounded() {
        let (path, directory) = temp_db("bounded");
        let account = "a".repeat(600_000);
        let line = format!(
            r#"{{"specversion":"1.0","id":"huge-1","source":"billing/disputes","type":"dispute.opened","subject":"dsp_huge","time":"2026-11-20T08:00:00Z","data":{{"account_id":"{account}","amount_cents":99,"currency":"USD"}}}}"#
        );
        let writer = fed_writer(&path, &[line]);
        let pending = writer.pending_outbox(0, 10).unwrap();
        assert!(!pending.is_empty(), "a dispute opened raises an incident");
        for entry in &pending {
            assert!(
                entry.payload.len() <= lifewatch_core::MAX_MESSAGE_BYTES,
                "{} bytes",
                entry.payload.len()
            );
            // The record cuts the text it copies, so the message needs no
            // cutting of its own.
            let message: serde_json::Value = serde_json::from_str(&entry.payload).unwrap();
            assert_eq!(message.get("truncated"), None);
            let account_id = message["incident"]["account_id"].as_str().unwrap();
            assert!(account_id.ends_with("…[cut from 600000 bytes]"), "{account_id}");
            assert_eq!(message["incident"]["id"].as_str(), Some(entry.incident_id.as_str()));
        }
        drop(writer);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
