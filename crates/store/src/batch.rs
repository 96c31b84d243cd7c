//! A batch: what one commit writes, taken from the engine on the writer's
//! thread ([`Batch::take`]) and written to SQLite by whichever thread holds
//! the connection ([`Batch::write`]), so that a driver may go on feeding the
//! engine while the previous batch is written (see
//! [`Writer::commit_in_background`](crate::Writer::commit_in_background)).

use std::collections::HashMap;
use std::path::Path;

use lifewatch_core::{Change, Engine, EntityRef, IncidentRecord, RejectReason, Timestamp, Transition};
use rusqlite::{Connection, params};

use crate::blocks::BlockWriter;
use crate::error::{Context, StoreError};
use crate::project::{self, StoredEntity, entity_key};
use crate::writer::Committed;

/// Inputs fed since the last commit. Cleared, not dropped, after a commit:
/// the buffers keep their capacity for the next batch.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) events: Vec<PendingEvent>,
    /// The accepted payloads, back to back (one allocation per batch, not
    /// one per event); each [`PendingEvent`] holds its range.
    pub(crate) payloads: Vec<u8>,
    pub(crate) rejected: Vec<PendingRejection>,
    pub(crate) ticks: Vec<(i64, Timestamp)>,
    pub(crate) checkpoints: Vec<(String, i64)>,
    /// Operator requests decided since the last commit.
    pub(crate) decided: Vec<crate::operator::Decided>,
}

pub(crate) struct PendingEvent {
    pub(crate) seq: i64,
    pub(crate) entity: EntityRef,
    pub(crate) payload: std::ops::Range<usize>,
}

pub(crate) struct PendingRejection {
    pub(crate) after_seq: i64,
    pub(crate) origin: String,
    pub(crate) reason: RejectReason,
    pub(crate) detail: String,
    pub(crate) payload: Box<[u8]>,
}

impl Pending {
    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.payloads.clear();
        self.rejected.clear();
        self.ticks.clear();
        self.checkpoints.clear();
        self.decided.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.rejected.is_empty()
            && self.ticks.is_empty()
            && self.checkpoints.is_empty()
            && self.decided.is_empty()
    }
}

/// The entities a batch touches, found without sorting every reference:
/// a mark per entity (the number of the batch that last saw it) keeps each
/// once, and only those are sorted. Kept by the writer across batches.
#[derive(Default)]
pub(crate) struct Touched {
    batch: u32,
    /// Per entity type, by entity index: the batch that last saw it, and
    /// its position in that batch's sorted list.
    marks: [Vec<(u32, u32)>; 3],
    entities: Vec<EntityRef>,
    /// The seqs of each entity of `entities`, back to back, and where each
    /// entity's seqs begin.
    seqs: Vec<i64>,
    starts: Vec<usize>,
}

fn type_slot(entity: EntityRef) -> usize {
    match entity.entity_type {
        lifewatch_core::EntityType::Account => 0,
        lifewatch_core::EntityType::Project => 1,
        lifewatch_core::EntityType::Dispute => 2,
    }
}

impl Touched {
    /// Lists each of `entities` once, in key order (type, then index), and
    /// groups the seqs of `events` by entity, in the order given (`events`
    /// in seq order gives them sorted). Events of an entity not listed are
    /// left out.
    fn collect(
        &mut self,
        entities: impl Iterator<Item = EntityRef>,
        events: impl Iterator<Item = (EntityRef, i64)> + Clone,
    ) {
        self.batch = self.batch.wrapping_add(1).max(1);
        let batch = self.batch;
        self.entities.clear();
        for entity in entities {
            if entity.index == u32::MAX {
                continue; // no such entity: it gets no row
            }
            let marks = &mut self.marks[type_slot(entity)];
            let index = entity.index as usize;
            if marks.len() <= index {
                marks.resize(index + 1, (0, 0));
            }
            if marks[index].0 != batch {
                marks[index].0 = batch;
                self.entities.push(entity);
            }
        }
        self.entities.sort_unstable();
        for (position, entity) in self.entities.iter().enumerate() {
            self.marks[type_slot(*entity)][entity.index as usize].1 = position as u32;
        }

        // A counting pass: how many seqs each entity has, where each one's
        // begin, then the seqs in place.
        let marks = &self.marks;
        let position_of = |entity: EntityRef| -> Option<usize> {
            let mark = marks[type_slot(entity)].get(entity.index as usize)?;
            (mark.0 == batch).then_some(mark.1 as usize)
        };
        let count = self.entities.len();
        self.starts.clear();
        self.starts.resize(count + 1, 0);
        for (entity, _) in events.clone() {
            if let Some(position) = position_of(entity) {
                self.starts[position + 1] += 1;
            }
        }
        for position in 0..count {
            self.starts[position + 1] += self.starts[position];
        }
        self.seqs.clear();
        self.seqs.resize(self.starts[count], 0);
        let mut next = self.starts.clone();
        for (entity, seq) in events {
            if let Some(position) = position_of(entity) {
                self.seqs[next[position]] = seq;
                next[position] += 1;
            }
        }
    }

    /// The entities of the last [`Touched::collect`], each with its seqs.
    fn entities(&self) -> impl Iterator<Item = (EntityRef, &[i64])> {
        self.entities
            .iter()
            .enumerate()
            .map(|(position, &entity)| (entity, &self.seqs[self.starts[position]..self.starts[position + 1]]))
    }
}

/// Events in a batch from which its log blocks are compressed on a thread
/// of their own (see [`Batch::write`]); below, starting the thread costs
/// more than it gains.
const PARALLEL_COMPRESSION: usize = 4_096;

/// An incident row to write as it stands at the end of the batch (its JSON
/// is made by [`Batch::write`], off the engine's thread).
struct IncidentWrite {
    slot: u32,
    record: IncidentRecord,
    retracted: bool,
}

/// Everything one commit writes, owned: the inputs and the engine's
/// conclusions about them, as they stood when the batch was taken.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) pending: Pending,
    /// Entity rows: key, projection, and the range of its new seqs in `segments`.
    entities: Vec<(i64, StoredEntity, std::ops::Range<usize>)>,
    segments: Vec<u8>,
    incidents: Vec<IncidentWrite>,
    /// Transitions in order, each an index into `incidents`.
    transitions: Vec<(usize, Transition)>,
    clock: Option<i64>,
    last_seq: i64,
}

impl Batch {
    /// Fills the batch from `pending` (swapped in: `pending` gets the
    /// batch's old, cleared buffers) and the engine's `changes`.
    pub(crate) fn take(
        &mut self,
        pending: &mut Pending,
        engine: &Engine,
        changes: &[Change],
        last_seq: i64,
        touched: &mut Touched,
    ) {
        self.pending.clear();
        std::mem::swap(&mut self.pending, pending);
        // The next batch is likely as large: its buffers grow once, not by
        // doubling (a copy and twice the page faults of the first batches).
        pending.payloads.reserve(self.pending.payloads.len());
        pending.events.reserve(self.pending.events.len());
        self.entities.clear();
        self.segments.clear();
        self.incidents.clear();
        self.transitions.clear();
        self.last_seq = last_seq;
        self.clock = engine.clock().map(Timestamp::unix_nanos);
        let events = &self.pending.events;

        // Every entity with an event in the batch gets a row, even when the
        // event changed nothing (an illegal one), and the batch's seqs of its
        // events are appended to the list in its row, through which `show`
        // finds them. Rows are written in key order.
        touched.collect(
            changes
                .iter()
                .filter_map(|change| match change {
                    Change::Entity(entity) => Some(*entity),
                    Change::Incident { .. } => None,
                })
                .chain(events.iter().map(|event| event.entity)),
            events.iter().map(|event| (event.entity, event.seq)),
        );
        for (entity, seqs) in touched.entities() {
            if let Some(view) = engine.entity(entity) {
                let start = self.segments.len();
                crate::seqs::encode_segment(seqs.iter().copied(), &mut self.segments);
                self.entities.push((
                    entity_key(entity),
                    StoredEntity::from_view(&view),
                    start..self.segments.len(),
                ));
            }
        }

        // Each incident's row is written once, as it stands at the end of the
        // batch; its transitions are kept in order, with repeated updates of an
        // incident already opened or updated in this batch folded into one.
        let mut last: HashMap<u32, Transition> = HashMap::new();
        let mut written: HashMap<u32, Option<usize>> = HashMap::new();
        for change in changes {
            let Change::Incident { index, transition } = *change else { continue };
            let previous = last.insert(index, transition);
            let folded = transition == Transition::Updated
                && matches!(previous, Some(Transition::Opened | Transition::Updated | Transition::Reopened));
            if folded {
                continue;
            }
            let position = match written.get(&index) {
                Some(&position) => position,
                None => {
                    let position = self.push_incident(engine, index);
                    written.insert(index, position);
                    position
                }
            };
            if let Some(position) = position {
                self.transitions.push((position, transition));
            }
        }
    }

    /// Adds the row of incident `index` as it stands now; its position in
    /// `incidents`, or `None` if the engine has no such incident.
    fn push_incident(&mut self, engine: &Engine, index: u32) -> Option<usize> {
        let record = engine.record(index)?;
        let retracted = engine.is_retracted(index);
        self.incidents.push(IncidentWrite { slot: index, record, retracted });
        Some(self.incidents.len() - 1)
    }

    /// Writes the batch inside the caller's transaction.
    pub(crate) fn write(
        &self,
        connection: &Connection,
        path: &Path,
        blocks: &mut BlockWriter,
    ) -> Result<Committed, StoreError> {
        let pending = &self.pending;
        let events = pending
            .events
            .iter()
            .map(|event| (event.seq, entity_key(event.entity), &pending.payloads[event.payload.clone()]));
        // A large batch's events are compressed, and its incident records
        // made JSON, on threads of their own while this one writes the rest
        // of the batch: the commit thread is the slower side of `replay
        // --db`, and zstd is about a quarter of its work.
        if pending.events.len() < PARALLEL_COMPRESSION {
            blocks.compress(path, events)?;
            let mut committed = self.write_entities(connection, path)?;
            committed += self.write_incidents(connection, path, &self.incident_json(path)?)?;
            blocks.insert(connection, path)?;
            return Ok(committed);
        }
        let panicked = |thread: &'static str| StoreError::ThreadPanicked { path: path.to_path_buf(), thread };
        std::thread::scope(|scope| {
            let compressing = scope.spawn(|| blocks.compress(path, events));
            let serializing = scope.spawn(|| self.incident_json(path));
            let mut committed = self.write_entities(connection, path)?;
            let json = serializing.join().unwrap_or_else(|_| Err(panicked("incident JSON")))?;
            committed += self.write_incidents(connection, path, &json)?;
            compressing.join().unwrap_or_else(|_| Err(panicked("log compression")))?;
            Ok::<_, StoreError>(committed)
        })
        .and_then(|committed| {
            blocks.insert(connection, path)?;
            Ok(committed)
        })
    }

    /// The JSON of each of `incidents`' records, in order.
    fn incident_json(&self, path: &Path) -> Result<Vec<String>, StoreError> {
        self.incidents
            .iter()
            .map(|incident| {
                serde_json::to_string(&incident.record)
                    .map_err(|source| StoreError::Encode { path: path.to_path_buf(), source })
            })
            .collect()
    }

    /// Writes the batch's rejected inputs, ticks, checkpoints and entity rows.
    fn write_entities(&self, connection: &Connection, path: &Path) -> Result<Committed, StoreError> {
        let pending = &self.pending;
        let mut committed = Committed { events: pending.events.len() as u64, ..Committed::default() };
        {
            let mut insert = connection
                .prepare_cached(
                    "INSERT INTO rejected_rows(after_seq, input, line, reason, detail, subject, digest, payload,
                                               length, compressed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(input, line, digest) DO NOTHING",
                )
                .context(path, "prepare the rejected insert")?;
            let mut packer = RejectedPacker::default();
            let mut texts = RejectionTexts::default();
            for rejected in &pending.rejected {
                // The digest is of the whole input, so that two inputs which
                // differ only after the stored part are still told apart.
                let digest = xxhash_rust::xxh3::xxh3_64(&rejected.payload) as i64;
                let (input, line) = split_origin(&rejected.origin);
                let input = texts.id(connection, path, input)?;
                let reason = texts.id(connection, path, rejected.reason.as_str())?;
                let detail = texts.id(connection, path, &rejected.detail)?;
                let (stored, compressed) = packer.pack(path, &rejected.payload)?;
                committed.rejected += insert
                    .execute(params![
                        rejected.after_seq,
                        input,
                        line,
                        reason,
                        detail,
                        subject_of(&rejected.payload),
                        digest,
                        stored,
                        rejected.payload.len() as i64,
                        compressed,
                    ])
                    .context(path, "store a rejected input")? as u64;
            }
        }
        {
            if !pending.decided.is_empty() {
                // Ticks get ids max + 1 onwards (INTEGER PRIMARY KEY): an
                // operator action is stored after the tick it followed.
                let first_tick: i64 = connection
                    .query_row("SELECT coalesce(max(id), 0) + 1 FROM ticks", [], |row| row.get(0))
                    .context(path, "read the clock ticks")?;
                crate::operator::write_decisions(connection, path, &pending.decided, first_tick)?;
            }
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
                    "INSERT INTO checkpoints(name, position, log_seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET position = excluded.position, log_seq = excluded.log_seq",
                )
                .and_then(|mut statement| statement.execute(params![name, position, self.last_seq]))
                .context(path, "store a checkpoint")?;
        }
        {
            let mut upsert = connection
                .prepare_cached(project::ENTITY_UPSERT)
                .context(path, "prepare the entity upsert")?;
            for (key, entity, segment) in &self.entities {
                project::execute_entity_upsert(
                    &mut upsert,
                    path,
                    *key,
                    entity,
                    &self.segments[segment.clone()],
                )?;
            }
        }
        Ok(committed)
    }

    /// Writes the batch's incident rows (`json`: their records, in order),
    /// their transitions and the outbox, and the clock.
    fn write_incidents(
        &self,
        connection: &Connection,
        path: &Path,
        json: &[String],
    ) -> Result<Committed, StoreError> {
        let mut committed = Committed::default();
        // Each incident's record is stored once; its row and its transitions'
        // outbox entries point at it.
        let mut record_ids = Vec::with_capacity(self.incidents.len());
        for (incident, json) in self.incidents.iter().zip(json) {
            let record_id = project::store_record(connection, path, json)?;
            record_ids.push(record_id);
            if incident.retracted {
                project::delete_incident(connection, path, incident.slot)?;
            } else {
                project::upsert_incident(connection, path, incident.slot, &incident.record, record_id)?;
            }
        }
        for &(position, transition) in &self.transitions {
            let incident = &self.incidents[position];
            project::note_transition(
                connection,
                path,
                &incident.record,
                record_ids[position],
                transition.as_str(),
                self.last_seq,
            )?;
            committed.transitions += 1;
            let kind = incident.record.kind as usize;
            match transition {
                Transition::Opened | Transition::Reopened => committed.opened[kind] += 1,
                Transition::Resolved => committed.resolved[kind] += 1,
                Transition::Updated
                | Transition::Retracted
                | Transition::Acknowledged
                | Transition::Escalated => {}
            }
        }
        project::set_meta_value(connection, path, "clock", self.clock)?;
        Ok(committed)
    }
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

/// The ids of the texts rejected inputs repeat (input names, reasons,
/// details; schema.rs, migration 13), each stored once in
/// `rejection_texts`. The ids looked up are remembered for one batch only:
/// a batch that fails is rolled back with the texts it added.
#[derive(Default)]
pub(crate) struct RejectionTexts {
    ids: HashMap<String, i64>,
}

impl RejectionTexts {
    /// The id of `text`, added when new.
    pub(crate) fn id(&mut self, connection: &Connection, path: &Path, text: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.ids.get(text) {
            return Ok(id);
        }
        connection
            .prepare_cached("INSERT INTO rejection_texts(text) VALUES (?1) ON CONFLICT(text) DO NOTHING")
            .and_then(|mut statement| statement.execute([text]))
            .context(path, "store a rejection text")?;
        let id = connection
            .prepare_cached("SELECT id FROM rejection_texts WHERE text = ?1")
            .and_then(|mut statement| statement.query_row([text], |row| row.get(0)))
            .context(path, "read a rejection text")?;
        self.ids.insert(text.to_string(), id);
        Ok(id)
    }
}

/// An origin `<input>:<line>` as its input and line, or the whole origin
/// and -1 when it does not end in a line number written plainly (the view
/// `rejected` writes `<input>:<line>` back, so only a canonical number is
/// split off).
pub(crate) fn split_origin(origin: &str) -> (&str, i64) {
    if let Some((input, line)) = origin.rsplit_once(':')
        && let Ok(number) = line.parse::<i64>()
        && number >= 0
        && number.to_string() == line
    {
        return (input, number);
    }
    (origin, -1)
}

/// A rejected input's row keeps at most its first 64 KiB (its `length`
/// column says how long it was): a rejected line can be up to the line limit
/// of a megabyte, and junk is kept to be read by people, who need its
/// beginning, not to be re-driven whole.
pub(crate) const REJECTED_PAYLOAD_CAP: usize = 64 * 1024;
/// Shorter payloads are stored as they are: a zstd frame's own bytes (about
/// fifteen with its checksum) outweigh what it saves on a short line, and
/// each frame resets the compressor's tables, which cost more than the
/// rest of storing a short rejected line (at 128 bytes, compressing each
/// rejected line of the fault stream was 2 % of `replay --db`'s
/// instructions, counted with callgrind).
const COMPRESS_REJECTED_FROM: usize = 1024;

/// Makes the `payload` column of rejected inputs: capped, and compressed as
/// one zstd frame (level 1 with its checksum, as the event log's blocks)
/// when that is smaller. The zstd context is made at the first payload long
/// enough to need it.
#[derive(Default)]
pub(crate) struct RejectedPacker {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    frame: Vec<u8>,
}

impl RejectedPacker {
    /// The bytes to store for `payload`, and whether they are compressed.
    pub(crate) fn pack<'a>(
        &'a mut self,
        path: &Path,
        payload: &'a [u8],
    ) -> Result<(&'a [u8], bool), StoreError> {
        let kept = &payload[..payload.len().min(REJECTED_PAYLOAD_CAP)];
        if kept.len() < COMPRESS_REJECTED_FROM {
            return Ok((kept, false));
        }
        let compressor = match &mut self.compressor {
            Some(compressor) => compressor,
            None => {
                let mut compressor = zstd::bulk::Compressor::new(1)
                    .map_err(|error| compression(path, "start a compressor", error))?;
                compressor
                    .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .map_err(|error| compression(path, "turn checksums on", error))?;
                self.compressor.insert(compressor)
            }
        };
        self.frame.clear();
        self.frame.reserve(zstd::zstd_safe::compress_bound(kept.len()));
        compressor
            .compress_to_buffer(kept, &mut self.frame)
            .map_err(|error| compression(path, "compress a rejected input", error))?;
        if self.frame.len() < kept.len() { Ok((&self.frame, true)) } else { Ok((kept, false)) }
    }
}

/// The stored part of a rejected input from its `payload` column.
pub(crate) fn unpack_rejected(
    path: &Path,
    payload: Vec<u8>,
    compressed: bool,
) -> Result<Vec<u8>, StoreError> {
    if !compressed {
        return Ok(payload);
    }
    // The cap bounds what a damaged frame can make a reader allocate.
    zstd::bulk::decompress(&payload, REJECTED_PAYLOAD_CAP)
        .map_err(|error| compression(path, "decompress a rejected input", error))
}

/// Migration 11's step: caps and compresses the payloads stored before it
/// (their `length` was set by the migration's SQL), a thousand rows at a
/// time so that a large table is never held in memory.
pub(crate) fn pack_rejected_payloads(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut packer = RejectedPacker::default();
    let mut after: i64 = i64::MIN;
    loop {
        let rows: Vec<(i64, Vec<u8>)> = connection
            .prepare_cached(
                "SELECT id, payload FROM rejected WHERE id > ?1 AND length(payload) >= ?2 ORDER BY id LIMIT 1000",
            )
            .and_then(|mut statement| {
                statement
                    .query_map(params![after, COMPRESS_REJECTED_FROM as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .context(path, "read rejected inputs")?;
        let Some(&(last, _)) = rows.last() else { return Ok(()) };
        let mut update = connection
            .prepare_cached("UPDATE rejected SET payload = ?1, compressed = ?2 WHERE id = ?3")
            .context(path, "prepare the rejected update")?;
        for (id, payload) in &rows {
            let (stored, compressed) = packer.pack(path, payload)?;
            update.execute(params![stored, compressed, id]).context(path, "compress a rejected input")?;
        }
        after = last;
    }
}

fn compression(path: &Path, context: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Compression { path: path.to_path_buf(), context, source }
}
