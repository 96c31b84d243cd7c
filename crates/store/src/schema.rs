//! The schema, its versions, and opening a connection with the right settings.
//!
//! Versions are `PRAGMA user_version`; the file is marked as lifewatch's by
//! `PRAGMA application_id`. Migrations run in order, each in its own
//! transaction. Tables fall in two groups: the log (events, rejected events,
//! clock ticks, checkpoints), which is the truth and is only ever appended to,
//! and the projections (entities, incidents, their records and transitions,
//! the outbox), which are derived from the log. A migration that changes
//! projections sets the `reproject` flag, and the next writer recomputes them
//! from the log instead of converting rows.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Context, StoreError};

/// `PRAGMA application_id` of a lifewatch database: "LWAT".
pub(crate) const APPLICATION_ID: i64 = 0x4c57_4154;

/// The newest schema version this build writes.
pub(crate) const CURRENT_VERSION: i64 = 17;

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`.
/// Migrations are history: a released one is never edited, a later one
/// changes what it made (as 3 does to the `events` table of 1).
const MIGRATIONS: [&str; CURRENT_VERSION as usize] = [
    // 1: the log.
    "
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value ANY
    );
    -- Accepted events in arrival order. The engine's id set, restored at
    -- open, is the deduplication authority: a UNIQUE index on the random
    -- event id would make every insert a random B-tree descent.
    -- `entity` is the key of the entity's row in `entities` (written by the
    -- same batch); `show` finds an entity's events through it. An index on
    -- the random TEXT subject instead costs a random B-tree descent per
    -- insert (2.5 times slower at 1,000,000 events); entity keys grow with
    -- first appearance, so inserts stay near the recent end of the index.
    -- Migration 3 drops every column but seq, entity and payload.
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT NOT NULL,
        time INTEGER NOT NULL,
        entity INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX events_by_entity ON events(entity);
    -- Inputs that failed validation, kept byte for byte with the reason and
    -- where they came from. The same bytes from the same origin are kept once,
    -- so replaying a file again adds nothing.
    CREATE TABLE rejected (
        id INTEGER PRIMARY KEY,
        after_seq INTEGER NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        subject TEXT,
        digest INTEGER NOT NULL,
        payload BLOB NOT NULL,
        redriven TEXT
    );
    CREATE UNIQUE INDEX rejected_once ON rejected(origin, digest);
    CREATE INDEX rejected_by_subject ON rejected(subject);
    -- The instants given to the engine's clock, with the last event seq
    -- before each, so that refolding the log reproduces the same incidents.
    CREATE TABLE ticks (
        id INTEGER PRIMARY KEY,
        after_seq INTEGER NOT NULL,
        now INTEGER NOT NULL
    );
    -- How far a driver has read an input (a NATS stream sequence, a file).
    CREATE TABLE checkpoints (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    ",
    // 2: the projections.
    "
    -- Entity projections. The key is the engine's slot (type << 32 | index),
    -- which is deterministic for a log and an engine version; rebuild compares
    -- by type and id.
    CREATE TABLE entities (
        key INTEGER PRIMARY KEY,
        entity_type TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT,
        entered_at INTEGER,
        account_id TEXT,
        region TEXT,
        plan TEXT,
        live_projects INTEGER NOT NULL
    );
    CREATE INDEX entities_by_id ON entities(id);
    -- Incident records (SPEC.md section 4) as JSON, with the columns filters need.
    CREATE TABLE incidents (
        slot INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        resolved_at INTEGER,
        record TEXT NOT NULL
    );
    CREATE INDEX incidents_by_entity ON incidents(entity_id);
    CREATE TABLE incident_transitions (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        transition TEXT NOT NULL,
        after_seq INTEGER NOT NULL
    );
    CREATE INDEX transitions_by_incident ON incident_transitions(incident_id);
    -- Incident transitions to publish; the NATS publisher delivers them in id
    -- order and marks them delivered once the server acknowledged them.
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        transition TEXT NOT NULL,
        subject TEXT NOT NULL,
        payload TEXT NOT NULL,
        delivered_at INTEGER
    );
    CREATE INDEX outbox_pending ON outbox(id) WHERE delivered_at IS NULL;
    INSERT INTO meta(name, value) VALUES ('reproject', 1)
        ON CONFLICT(name) DO UPDATE SET value = 1;
    ",
    // 3: a lean event log.
    "
    -- An event row is its seq, its entity's key and the payload, byte for
    -- byte. The event id, source, type, subject and time that version 1 also
    -- stored are in the payload: restoring parses every payload anyway, and
    -- `show` parses the few of one entity. Dropping them takes the row from
    -- about 350 to about 250 bytes, and every byte is written twice (the WAL,
    -- then the checkpoint). The projections are unchanged.
    CREATE TABLE events_v3 (
        seq INTEGER PRIMARY KEY,
        entity INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    INSERT INTO events_v3(seq, entity, payload) SELECT seq, entity, payload FROM events ORDER BY seq;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_by_entity ON events(entity);
    ",
    // 4: fewer indexes on random keys.
    "
    -- An index on a random key takes a random B-tree descent per insert, and
    -- each batch rewrites most of its pages: at 1,000,000 events the entity
    -- id index was 15% of the WAL written (91 MB) and dropping it made
    -- `replay --db` 12% faster. `show` finds an entity by scanning the
    -- entities table instead (40 ms at 290,000 entities). No query reads
    -- an incident's transitions by id.
    DROP INDEX entities_by_id;
    DROP INDEX transitions_by_incident;
    ",
    // 5: each entity's events listed in its row (filled by `fill_event_lists`).
    "
    -- The index of events by entity was the largest share of the pages a
    -- batch rewrote besides the payloads (53 MB of WAL at 1,000,000 events).
    -- The entity's row, rewritten by every batch that touches the entity
    -- anyway, now lists the seqs of its events (varints, see seqs.rs), and
    -- `show` reads them by seq. `events.entity` stays: the key the writer
    -- gave the event, from which this migration builds the lists.
    ALTER TABLE entities ADD COLUMN events BLOB NOT NULL DEFAULT x'';
    DROP INDEX events_by_entity;
    ",
    // 6: the event log in compressed blocks (filled by `migrate_events_into_blocks`).
    "
    -- One row per event wrote each payload twice (WAL, then checkpoint): the
    -- log was 70% of the bytes `replay --db` wrote. A block holds the events
    -- of consecutive seqs first_seq .. first_seq + count, compressed as one
    -- zstd frame of `size` bytes (see blocks.rs): about a sixth of the bytes.
    CREATE TABLE event_blocks (
        first_seq INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    ",
    // 7: each incident record stored once.
    "
    -- The JSON of an incident record was stored in the incident's row and
    -- again in the payload of each of its outbox entries: at 1,000,000
    -- events 65 of the 150 MB, and about 6% of `replay --db`'s time. Now a batch
    -- stores each record it changes once, as it stands at the end of the
    -- batch, in `incident_records`; the incident's row and the batch's
    -- outbox entries for it point there. Rows are never changed afterwards:
    -- an outbox entry publishes the record of its batch, as before. Outbox
    -- entries queued before this migration keep their whole payload.
    CREATE TABLE incident_records (
        id INTEGER PRIMARY KEY,
        record TEXT NOT NULL
    );
    INSERT INTO incident_records(id, record) SELECT slot + 1, record FROM incidents;
    ALTER TABLE incidents ADD COLUMN record_id INTEGER NOT NULL DEFAULT 0;
    UPDATE incidents SET record_id = slot + 1;
    ALTER TABLE incidents DROP COLUMN record;
    ALTER TABLE outbox ADD COLUMN record_id INTEGER;
    ",
    // 8: outbox entries set aside.
    "
    -- An entry the NATS server refused for a reason that retrying cannot fix
    -- (payload too large, invalid subject, no stream for its subject) is set
    -- aside rather than retried forever, so that it cannot hold back the
    -- entries after it; `lifewatch outbox` lists them. Pending entries are
    -- those neither delivered nor set aside.
    ALTER TABLE outbox ADD COLUMN set_aside_at INTEGER;
    ALTER TABLE outbox ADD COLUMN set_aside_reason TEXT;
    DROP INDEX outbox_pending;
    CREATE INDEX outbox_pending ON outbox(id) WHERE delivered_at IS NULL AND set_aside_at IS NULL;
    CREATE INDEX outbox_set_aside ON outbox(id) WHERE set_aside_at IS NOT NULL;
    ",
    // 9: the read side's indexes.
    READ_SIDE_INDEXES,
    // 10: where the log ended when each checkpoint was written.
    "
    -- A checkpoint is written in the same transaction as the batch whose
    -- input it acknowledges, so the log then ends at log_seq (the batch's
    -- last event). A log that ends before it lost committed batches (a
    -- database file copied without its WAL, a truncated WAL): `verify`
    -- reports it. NULL for checkpoints written before this version.
    ALTER TABLE checkpoints ADD COLUMN log_seq INTEGER;
    ",
    // 11: rejected inputs capped and compressed (payloads converted by
    // `pack_rejected_payloads`).
    "
    -- 4,000,000 junk lines made a database of 580 MB. A rejected input's
    -- payload now keeps at most its first 64 KiB, and `length` is how long
    -- the input was; payloads of 128 bytes or more are one zstd frame each
    -- (`compressed` = 1) when that is smaller (see batch.rs). The digest
    -- stays that of the whole input. Most junk has no subject: the index on
    -- subjects leaves those rows out (a query by subject names one).
    ALTER TABLE rejected ADD COLUMN length INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rejected ADD COLUMN compressed INTEGER NOT NULL DEFAULT 0;
    UPDATE rejected SET length = length(CAST(payload AS BLOB));
    DROP INDEX rejected_by_subject;
    CREATE INDEX rejected_by_subject ON rejected(subject) WHERE subject IS NOT NULL;
    ",
    // 12: incident histories keyed by the incident id's 64 bits (rows
    // converted by `key_incident_transitions`).
    "
    -- An incident's history was a rowid table plus an index on the id's
    -- text: two B-trees written per transition, one of them by a random
    -- descent over 20-byte keys. Keyed by the id's 64 bits and the
    -- transition's position (its outbox entry's id) without a rowid, it is
    -- one B-tree with integer keys, read in order by the same key.
    CREATE TABLE incident_transitions_keyed (
        incident INTEGER NOT NULL,
        position INTEGER NOT NULL,
        transition TEXT NOT NULL,
        after_seq INTEGER NOT NULL,
        PRIMARY KEY (incident, position)
    ) WITHOUT ROWID;
    ",
    // 13: rejected inputs with their repeated texts stored once (rows
    // converted by `normalise_rejected`).
    "
    -- 4,000,000 junk lines made 507 MB, most of it texts repeated on every
    -- row and in the index that keeps an input once: the input's name, the
    -- reason and the detail. Each distinct text is stored once here; a
    -- row holds their ids, and the origin `<input>:<line>` is split so
    -- that the line is an integer (-1: an origin without a line number,
    -- kept whole as its input). The view `rejected` shows the rows as the
    -- table of that name did, for every reader.
    CREATE TABLE rejection_texts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE
    );
    CREATE TABLE rejected_rows (
        id INTEGER PRIMARY KEY,
        after_seq INTEGER NOT NULL,
        input INTEGER NOT NULL,
        line INTEGER NOT NULL,
        reason INTEGER NOT NULL,
        detail INTEGER NOT NULL,
        subject TEXT,
        digest INTEGER NOT NULL,
        payload BLOB NOT NULL,
        redriven TEXT,
        length INTEGER NOT NULL,
        compressed INTEGER NOT NULL
    );
    ",
    // 14: the dashboard's lists and counts of open incidents; when outbox
    // entries were queued.
    "
    -- Open incidents (the dashboard's lists, its counts by kind, its stuck
    -- list and outage banners, the metrics' gauges) read only the open
    -- ones, in opening order, instead of scanning every incident ever
    -- raised: most incidents are resolved.
    CREATE INDEX incidents_by_status ON incidents(status, opened_at, key);
    CREATE INDEX incidents_by_status_kind ON incidents(status, kind, opened_at, key);
    -- When each transition was queued (wall clock, milliseconds), for the
    -- age of the oldest one not yet published (`Store::outbox_state`).
    ALTER TABLE outbox ADD COLUMN queued_at_ms INTEGER;
    ",
    // 15: notifications to deliver.
    "
    -- One row per incident transition and channel it goes to, written in
    -- the transaction of the transition (see `deliveries.rs`); the worker
    -- sends them and records the outcome. `state`: pending, delivered, dead.
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        transition TEXT NOT NULL,
        region TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before_ms INTEGER NOT NULL DEFAULT 0,
        first_try_ms INTEGER,
        last_error TEXT,
        done_at_ms INTEGER
    );
    CREATE INDEX deliveries_pending ON deliveries(id) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries(id) WHERE state = 'dead';
    CREATE INDEX deliveries_by_incident ON deliveries(incident_id);
    -- Deliveries held back while their region's outage is open
    -- (`inhibited`), and those whose incident ended meanwhile (`suppressed`).
    CREATE INDEX deliveries_held_back ON deliveries(region) WHERE state IN ('inhibited', 'suppressed');
    ",
    // 16: operator actions (operator.rs): inputs, like events.
    "
    -- What people asked (ack, resolve, note) and what became of it:
    -- `requested` until the writer applies it (`applied`, at its place in
    -- the log: after event `after_seq` and clock tick `after_tick`) or
    -- refuses it (`refused`, with the reason). Never dropped by rebuild.
    CREATE TABLE operator_actions (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        action TEXT NOT NULL,
        by TEXT NOT NULL,
        note TEXT,
        requested_at_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        refusal TEXT,
        after_seq INTEGER,
        after_tick INTEGER,
        slot INTEGER
    );
    CREATE INDEX operator_requests ON operator_actions(id) WHERE state = 'requested';
    CREATE INDEX operator_actions_by_incident ON operator_actions(incident_id);
    ",
    // 17: the open-incident indexes of 14 hold only open incidents.
    "
    -- Partial: an incident enters them when it opens and leaves when it
    -- resolves, so resolved incidents (most of them) cost the write path
    -- nothing. Readers name the status as a literal (`status = 'open'`),
    -- which is what lets SQLite use them.
    DROP INDEX incidents_by_status;
    DROP INDEX incidents_by_status_kind;
    CREATE INDEX incidents_open ON incidents(opened_at, key) WHERE status = 'open';
    CREATE INDEX incidents_open_by_kind ON incidents(kind, opened_at, key) WHERE status = 'open';
    ",
];

/// Migration 13's second half, run once the old `rejected` table is gone.
const REJECTED_VIEW: &str = "
    CREATE UNIQUE INDEX rejected_once ON rejected_rows(input, line, digest);
    CREATE INDEX rejected_by_subject ON rejected_rows(subject) WHERE subject IS NOT NULL;
    CREATE VIEW rejected AS
        SELECT rows.id, rows.after_seq,
               CASE WHEN rows.line < 0 THEN input.text ELSE input.text || ':' || rows.line END AS origin,
               reason.text AS reason, detail.text AS detail, rows.subject, rows.digest, rows.payload,
               rows.redriven, rows.length, rows.compressed
        FROM rejected_rows AS rows
        JOIN rejection_texts AS input ON input.id = rows.input
        JOIN rejection_texts AS reason ON reason.id = rows.reason
        JOIN rejection_texts AS detail ON detail.id = rows.detail;
";

/// Migration 9: the indexes of the read side's queries (`query.rs`).
const READ_SIDE_INDEXES: &str = "
    -- A page of incidents (keyset pagination by opened_at, key, slot, in
    -- either direction) reads only its rows instead of sorting the whole
    -- table; the rowid (slot) ends every index entry. Incidents open in
    -- event-time order, so inserts land near the end of the index.
    CREATE INDEX incidents_by_opened ON incidents(opened_at, key);
    -- An incident's history by its id, which migration 4 dropped while no
    -- query read it. Transitions are much rarer than events, so the random
    -- B-tree descent per insert costs far less than the entity id index did.
    CREATE INDEX transitions_by_incident ON incident_transitions(incident_id);
";

/// How hard a commit tries to survive a power loss (SQLite's `synchronous`).
/// A process crash loses no committed batch in either mode.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk when it returns (one fsync of
    /// the WAL per batch). For drivers that acknowledge a source once the
    /// batch is committed (the NATS consumer): a power loss must not undo a
    /// commit whose events the source has since dropped.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is synced at checkpoints only, so a
    /// power loss may undo the last commits (never corrupt the file). For
    /// drivers whose source stays (`replay --db` of a file): running it
    /// again restores what was lost, every event already stored being a
    /// duplicate.
    Normal,
}

/// Whether a connection may write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// Opens `path` and applies the connection settings; writers get WAL mode,
/// `durability` and a checkpoint interval of 40 MB of WAL (fewer, larger
/// checkpoints: each one ends in an fsync of the database file), which
/// applies to migrations: a [`Writer`](crate::Writer) then hands its
/// checkpoints to a thread of their own (see `checkpoint.rs`).
pub(crate) fn connect(path: &Path, access: Access, durability: Durability) -> Result<Connection, StoreError> {
    let connection = match access {
        Access::ReadOnly => connect_read_only(path)?,
        Access::ReadWrite => {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(path, flags).context(path, "open the database")?
        }
    };
    // Readers wait for a writer's checkpoint instead of failing at once.
    connection.busy_timeout(std::time::Duration::from_secs(10)).context(path, "set the busy timeout")?;
    // 64 MiB of page cache: the projections' B-trees stay in memory.
    connection.pragma_update(None, "cache_size", -65_536).context(path, "set the cache size")?;
    if access == Access::ReadWrite {
        if connection.is_readonly(rusqlite::MAIN_DB).context(path, "open the database")? {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
                detail: "SQLite could only open it for reading".to_string(),
            });
        }
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .context(path, "switch to WAL mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
                detail: format!("cannot switch to WAL mode (journal mode stays {mode})"),
            });
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection.pragma_update(None, "synchronous", synchronous).context(path, "set synchronous mode")?;
        connection
            .pragma_update(None, "wal_autocheckpoint", 10_000)
            .context(path, "set the checkpoint interval")?;
    }
    Ok(connection)
}

/// Opens `path` for reading. A reader of a WAL database needs the WAL index
/// (`<db>-shm`) next to it, which SQLite creates when it is missing: in a
/// directory that cannot be written, that fails although reading the file
/// could not. Then, if no write-ahead log holds commits (no `<db>-wal`, or an
/// empty one, which is the case whenever no writer has it open: the last
/// writer to close checkpoints and removes it), the file alone is the whole
/// database and is opened `immutable`, without any WAL index. A log that
/// holds commits cannot be read that way, and the error says why.
fn connect_read_only(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).context(path, "open the database")?;
    // The first read is where SQLite opens (or fails to create) the WAL index.
    let error = match connection.pragma_query_value(None, "schema_version", |row| row.get::<_, i64>(0)) {
        Ok(_) => return Ok(connection),
        Err(error) => error,
    };
    let wal_index_refused = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    );
    if !wal_index_refused {
        return Err(error).context(path, "read the database header");
    }
    drop(connection);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_holds_commits = std::fs::metadata(&wal).is_ok_and(|metadata| metadata.len() > 0);
    let uri = match (wal_holds_commits, path.to_str()) {
        (false, Some(text)) => immutable_uri(text),
        _ => {
            return Err(error).context(
                path,
                "read it: its directory cannot be written, so SQLite cannot make the WAL index that \
                 reading its write-ahead log needs (make the directory writable)",
            );
        }
    };
    Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI).context(path, "open the database")
}

/// `file:<path>?immutable=1`, with the characters that a URI path cannot
/// hold as they are percent-encoded.
fn immutable_uri(path: &str) -> String {
    let mut uri = String::from("file:");
    for character in path.chars() {
        match character {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            other => uri.push(other),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Checks that `connection` holds a lifewatch database (or an empty file, for
/// a writer) and brings its schema up to date. Returns whether a migration
/// asked for the projections to be recomputed.
pub(crate) fn check_and_migrate(
    connection: &mut Connection,
    path: &Path,
    access: Access,
) -> Result<bool, StoreError> {
    let application_id: i64 = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .context(path, "read the database header")?;
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context(path, "read the schema version")?;
    if application_id != APPLICATION_ID {
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .context(path, "read the schema")?;
        let empty = application_id == 0 && version == 0 && tables == 0;
        if !empty {
            return Err(StoreError::NotLifewatch {
                path: path.to_path_buf(),
                detail: format!(
                    "a SQLite database of another application (application_id {application_id:#x}, \
                     {tables} schema objects)"
                ),
            });
        }
        if access == Access::ReadOnly {
            return Err(StoreError::NotLifewatch {
                path: path.to_path_buf(),
                detail: "an empty database; replay or run with --db creates one".to_string(),
            });
        }
    }
    if version > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    if version < CURRENT_VERSION && access == Access::ReadOnly {
        return Err(StoreError::NotLifewatch {
            path: path.to_path_buf(),
            detail: format!(
                "schema version {version} is older than {CURRENT_VERSION}; open it once for writing \
                 (replay --db) to migrate it"
            ),
        });
    }
    migrate(connection, path, version, CURRENT_VERSION)?;
    if access == Access::ReadOnly {
        return Ok(false);
    }
    // The value is NULL once a reprojection has run (`set_meta_value(.., None)`).
    let reproject: Option<i64> = connection
        .query_row("SELECT value FROM meta WHERE name = 'reproject'", [], |row| row.get::<_, Option<i64>>(0))
        .or_else(|error| match error {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            error => Err(error),
        })
        .context(path, "read the metadata")?;
    Ok(reproject == Some(1))
}

/// Applies migrations `from..to`, each in one transaction with its version bump.
pub(crate) fn migrate(
    connection: &mut Connection,
    path: &Path,
    from: i64,
    to: i64,
) -> Result<(), StoreError> {
    for version in from..to {
        let transaction = connection.transaction().context(path, "begin a migration")?;
        if version == 0 {
            transaction
                .pragma_update(None, "application_id", APPLICATION_ID)
                .context(path, "mark the file as a lifewatch database")?;
        }
        transaction.execute_batch(MIGRATIONS[version as usize]).context(path, "migrate the schema")?;
        if version == 4 {
            fill_event_lists(&transaction, path)?;
        }
        if version == 5 {
            crate::blocks::migrate_events_into_blocks(&transaction, path)?;
        }
        if version == 7 {
            clean_outbox_subjects(&transaction, path)?;
        }
        if version == 10 {
            crate::batch::pack_rejected_payloads(&transaction, path)?;
        }
        if version == 11 {
            key_incident_transitions(&transaction, path)?;
        }
        if version == 12 {
            normalise_rejected(&transaction, path)?;
        }
        transaction
            .pragma_update(None, "user_version", version + 1)
            .context(path, "set the schema version")?;
        transaction.commit().context(path, "commit a migration")?;
    }
    Ok(())
}

/// Migration 13's step in Rust: every row of the old `rejected` table
/// moved to `rejected_rows` with its texts interned, then the old table
/// replaced by the view of the same name.
fn normalise_rejected(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut texts = crate::batch::RejectionTexts::default();
    let mut after = 0_i64;
    loop {
        type Row = (i64, i64, String, String, String, Option<String>, i64, Vec<u8>, Option<String>, i64, i64);
        let rows: Vec<Row> = connection
            .prepare_cached(
                "SELECT id, after_seq, origin, reason, detail, subject, digest, payload, redriven, length, compressed
                 FROM rejected WHERE id > ?1 ORDER BY id LIMIT 1000",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([after], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                            row.get(8)?,
                            row.get(9)?,
                            row.get(10)?,
                        ))
                    })?
                    .collect()
            })
            .context(path, "read rejected inputs")?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, after_seq, origin, reason, detail, subject, digest, payload, redriven, length, compressed) in
            rows
        {
            let (input, line) = crate::batch::split_origin(&origin);
            let input = texts.id(connection, path, input)?;
            let reason = texts.id(connection, path, &reason)?;
            let detail = texts.id(connection, path, &detail)?;
            connection
                .prepare_cached(
                    "INSERT INTO rejected_rows(id, after_seq, input, line, reason, detail, subject, digest, payload,
                                               redriven, length, compressed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .and_then(|mut statement| {
                    statement.execute(rusqlite::params![
                        id, after_seq, input, line, reason, detail, subject, digest, payload, redriven, length,
                        compressed
                    ])
                })
                .context(path, "move a rejected input")?;
        }
    }
    connection.execute_batch("DROP TABLE rejected;").context(path, "drop the old rejected table")?;
    connection.execute_batch(REJECTED_VIEW).context(path, "make the rejected view")?;
    Ok(())
}

/// Migration 12's step in Rust: the history rows keyed by
/// [`incident_number`], in their old order, then the old table replaced.
fn key_incident_transitions(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let rows: Vec<(i64, String, String, i64)> = connection
        .prepare("SELECT id, incident_id, transition, after_seq FROM incident_transitions ORDER BY id")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .context(path, "read the incident transitions")?;
    let mut insert = connection
        .prepare(
            "INSERT INTO incident_transitions_keyed(incident, position, transition, after_seq)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .context(path, "prepare the incident transitions")?;
    for (position, incident_id, transition, after_seq) in rows {
        insert
            .execute(rusqlite::params![incident_number(&incident_id), position, transition, after_seq])
            .context(path, "key an incident transition")?;
    }
    connection
        .execute_batch(
            "DROP TABLE incident_transitions;
             ALTER TABLE incident_transitions_keyed RENAME TO incident_transitions;",
        )
        .context(path, "replace the incident transitions")?;
    Ok(())
}

/// The key of an incident's history rows: the 64 bits an incident id
/// (`inc_` and 16 hex digits, core's format) spells, as SQLite's signed
/// integer. An id of another shape (never made by the engine) is hashed, so
/// that the function is total.
pub(crate) fn incident_number(id: &str) -> i64 {
    id.strip_prefix("inc_")
        .filter(|hex| hex.len() == 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(id.as_bytes())) as i64
}

/// Migration 5's step in Rust: lists each entity's events in its row, from
/// the key stored with every event (what `show` read through the index).
/// Rows of entities not yet projected (a database migrated from version 1,
/// whose projections are recomputed at open) get their lists then.
fn fill_event_lists(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut lists: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    let mut statement = connection
        .prepare("SELECT seq, entity FROM events ORDER BY seq")
        .context(path, "read the event log")?;
    let mut rows = statement.query([]).context(path, "read the event log")?;
    while let Some(row) = rows.next().context(path, "read the event log")? {
        let seq: i64 = row.get(0).context(path, "read the event log")?;
        let entity: i64 = row.get(1).context(path, "read the event log")?;
        lists.entry(entity).or_default().push(seq);
    }
    let mut update = connection
        .prepare("UPDATE entities SET events = ?1 WHERE key = ?2")
        .context(path, "list the events of entities")?;
    let mut bytes = Vec::new();
    for (entity, seqs) in lists {
        bytes.clear();
        crate::seqs::encode_segment(seqs, &mut bytes);
        update.execute(rusqlite::params![bytes, entity]).context(path, "list the events of entities")?;
    }
    Ok(())
}

/// Migration 8's step in Rust: the subjects of entries still pending, queued
/// before subjects were cleaned, are cleaned as core's `incident_subject`
/// now does, so that an outage in a region named "eu west" is published
/// rather than refused. A subject is `incidents.<kind>.<entity type>.<id>`
/// and the kind and type never hold a dot, so the id is everything after
/// the third one; a valid id is unchanged.
fn clean_outbox_subjects(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let pending: Vec<(i64, String)> = connection
        .prepare("SELECT id, subject FROM outbox WHERE delivered_at IS NULL")
        .and_then(|mut statement| statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
        .context(path, "read the outbox")?;
    let mut update = connection
        .prepare("UPDATE outbox SET subject = ?1 WHERE id = ?2")
        .context(path, "clean the outbox subjects")?;
    for (id, subject) in pending {
        let mut parts = subject.splitn(4, '.');
        let (Some("incidents"), Some(kind), Some(entity_type), Some(entity_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let token = lifewatch_core::subject_token(entity_id);
        if token != entity_id {
            let cleaned = format!("incidents.{kind}.{entity_type}.{token}");
            update.execute(rusqlite::params![cleaned, id]).context(path, "clean the outbox subjects")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_version_1_database_and_keeps_its_log() {
        // Version 1's events table has the id, source, type, subject and time
        // columns that version 3 drops: the payload and entity must survive.
        let directory = std::env::temp_dir().join(format!("lifewatch-schema-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("old.db");
        let _ = std::fs::remove_file(&path);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 1).unwrap();
        connection
            .execute(
                "INSERT INTO events(seq, event_id, source, type, subject, time, entity, payload)
                 VALUES (1, 'e1', 's', 'account.created', 'acc_1', 0, 0, x'7b7d')",
                [],
            )
            .unwrap();
        let reproject = check_and_migrate(&mut connection, &path, Access::ReadWrite).unwrap();
        assert!(reproject, "a migration of the projections asks for them to be recomputed");
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, CURRENT_VERSION);
        let mut events = Vec::new();
        crate::blocks::BlockReader::new(&path)
            .unwrap()
            .for_each(&connection, &path, |seq, entity, payload| {
                events.push((seq, entity, payload.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(events, vec![(1, 0, b"{}".to_vec())]);
        let old: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'events'", [], |row| row.get(0))
            .unwrap();
        assert_eq!(old, 0, "the table of one row per event is gone");
        drop(connection);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn migrating_a_version_4_database_lists_each_entitys_events_in_its_row() {
        let directory = std::env::temp_dir().join(format!("lifewatch-schema5-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("v4.db");
        let _ = std::fs::remove_file(&path);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 4).unwrap();
        connection
            .execute_batch(
                "INSERT INTO entities(key, entity_type, id, live_projects) VALUES (0, 'account', 'acc_1', 0),
                     (4294967296, 'project', 'prj_1', 0), (1, 'account', 'acc_2', 0);
                 INSERT INTO events(seq, entity, payload) VALUES (1, 0, x'7b7d'), (2, 4294967296, x'7b7d'),
                     (3, 0, x'7b7d'), (400, 0, x'7b7d');",
            )
            .unwrap();
        check_and_migrate(&mut connection, &path, Access::ReadWrite).unwrap();
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, CURRENT_VERSION);
        let lists: Vec<(i64, Vec<i64>)> = connection
            .prepare("SELECT key, events FROM entities ORDER BY key")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, crate::seqs::decode(&row.get::<_, Vec<u8>>(1)?).unwrap())))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lists, vec![(0, vec![1, 3, 400]), (1, vec![]), (4294967296, vec![2])]);
        let index: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'events_by_entity'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(index, 0, "the index of events by entity is gone");
        drop(connection);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn migrating_a_version_6_database_stores_each_record_once_and_keeps_queued_payloads() {
        let directory = std::env::temp_dir().join(format!("lifewatch-schema-v6-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("v6.db");
        let _ = std::fs::remove_file(&path);
        let record = concat!(
            r#"{"id":"inc_32fd90611108527a","key":"onboarding_failed:account:acc_296511a69e96","#,
            r#""kind":"onboarding_failed","severity":"error","status":"resolved","#,
            r#""entity":{"type":"account","id":"acc_296511a69e96"},"account_id":"acc_296511a69e96","#,
            r#""region":"eu-west-1","state":null,"owner":"accounts-oncall","#,
            r#""runbook":"ops/runbooks/onboarding_failed.md","opened_at":"2026-11-27T00:04:02Z","#,
            r#""resolved_at":"2026-11-27T00:17:53Z","#,
            r#""summary":"account acc_296511a69e96 failed onboarding: payment_method_declined","#,
            r#""count":1,"events":["741f41fd-4732-4d14-9341-863b0e7e9699"]}"#
        );
        let payload = format!(r#"{{"transition":"opened","incident":{record}}}"#);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 6).unwrap();
        connection
            .execute(
                "INSERT INTO incidents(slot, id, key, kind, status, owner, entity_type, entity_id, opened_at, record)
                 VALUES (0, 'inc_32fd90611108527a', 'onboarding_failed:account:acc_296511a69e96',
                     'onboarding_failed', 'resolved', 'accounts-oncall', 'account', 'acc_296511a69e96', 0, ?1)",
                [record],
            )
            .unwrap();
        connection
            .execute(
                "INSERT INTO outbox(incident_id, transition, subject, payload)
                 VALUES ('inc_32fd90611108527a', 'opened', 'incidents.onboarding_failed.account.acc_296511a69e96', ?1)",
                [&payload],
            )
            .unwrap();
        check_and_migrate(&mut connection, &path, Access::ReadWrite).unwrap();
        drop(connection);

        let store = crate::Store::open_read_only(&path).unwrap();
        let records = store.incidents(&crate::IncidentFilter::default()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(serde_json::to_string(&records[0]).unwrap(), record);
        drop(store);
        // The entry queued before the migration is published as it was. The
        // migrations from version 0 ask for the projections to be recomputed:
        // the log is empty, so the incident is retracted, and that entry's
        // payload is made from the stored record.
        let writer = crate::Writer::open(&path, lifewatch_core::Config::shipped()).unwrap();
        let pending = writer.pending_outbox(0, 10).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].payload, payload);
        assert_eq!(pending[1].transition, "retracted");
        assert_eq!(pending[1].payload, format!(r#"{{"transition":"retracted","incident":{record}}}"#));
        drop(writer);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn migrating_a_version_7_database_cleans_the_subjects_of_pending_entries() {
        let directory = std::env::temp_dir().join(format!("lifewatch-schema-v7-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("v7.db");
        let _ = std::fs::remove_file(&path);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 7).unwrap();
        for (subject, delivered) in [
            ("incidents.regional_outage.region.eu west", None),
            ("incidents.regional_outage.region.eu.west", None),
            ("incidents.stuck.project.prj_42", None),
            ("incidents.regional_outage.region.eu west", Some(1)),
        ] {
            connection
                .execute(
                    "INSERT INTO outbox(incident_id, transition, subject, payload, delivered_at)
                     VALUES ('inc_1', 'opened', ?1, '', ?2)",
                    rusqlite::params![subject, delivered],
                )
                .unwrap();
        }
        migrate(&mut connection, &path, 7, CURRENT_VERSION).unwrap();
        let subjects: Vec<String> = connection
            .prepare("SELECT subject FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let region =
            |name: &str| format!("incidents.regional_outage.region.{}", lifewatch_core::subject_token(name));
        assert_eq!(
            subjects,
            vec![
                region("eu west"),
                region("eu.west"),
                "incidents.stuck.project.prj_42".to_string(),
                "incidents.regional_outage.region.eu west".to_string(),
            ]
        );
        assert_ne!(subjects[0], subjects[1]);
        drop(connection);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn migrating_a_version_10_database_caps_and_compresses_rejected_payloads() {
        let directory = std::env::temp_dir().join(format!("lifewatch-schema-v10-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("v10.db");
        let _ = std::fs::remove_file(&path);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 10).unwrap();
        let long = b"{\"subject\":\"prj_1\",\"junk\":\"".repeat(4_000);
        let medium = b"a line of junk, ".repeat(80);
        for (origin, subject, payload) in
            [("a:1", Some("prj_1"), &long[..]), ("a:2", None, &medium[..]), ("a:3", None, &b"x"[..])]
        {
            connection
                .execute(
                    "INSERT INTO rejected(after_seq, origin, reason, detail, subject, digest, payload)
                     VALUES (0, ?1, 'malformed_json', 'bad', ?2, ?3, ?4)",
                    rusqlite::params![origin, subject, xxhash_rust::xxh3::xxh3_64(payload) as i64, payload],
                )
                .unwrap();
        }
        migrate(&mut connection, &path, 10, CURRENT_VERSION).unwrap();
        let stored: Vec<(i64, bool, i64)> = connection
            .prepare("SELECT length(payload), compressed, length FROM rejected ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(stored[0].0 < 4096 && stored[0].1 && stored[0].2 == long.len() as i64, "{stored:?}");
        assert!(stored[1].0 < medium.len() as i64 && stored[1].1, "{stored:?}");
        assert_eq!(stored[2], (1, false, 1));
        drop(connection);

        let store = crate::Store::open_read_only(&path).unwrap();
        let rejected = store.rejected(None, None, true).unwrap();
        assert_eq!(rejected.len(), 3);
        assert_eq!(rejected[0].payload, &long[..crate::batch::REJECTED_PAYLOAD_CAP]);
        assert_eq!(rejected[0].length, long.len() as u64);
        assert_eq!(rejected[1].payload, medium);
        assert_eq!(rejected[2].payload, b"x");
        // Migration 13 split the origins and interned the texts: the view
        // gives them back as they were.
        let origins: Vec<&str> = rejected.iter().map(|rejection| rejection.origin.as_str()).collect();
        assert_eq!(origins, ["a:1", "a:2", "a:3"]);
        assert!(
            rejected
                .iter()
                .all(|rejection| rejection.reason == "malformed_json" && rejection.detail == "bad")
        );
        // The index on subjects still finds the rows that have one.
        let by_subject = store.rejected(None, Some("prj_1"), true).unwrap();
        assert_eq!(by_subject.iter().map(|rejection| rejection.id).collect::<Vec<_>>(), [rejected[0].id]);
        drop(store);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn migrating_a_version_11_database_keys_incident_histories_and_keeps_their_order() {
        let directory = std::env::temp_dir().join(format!("lifewatch-schema-v11-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("v11.db");
        let _ = std::fs::remove_file(&path);
        let mut connection = connect(&path, Access::ReadWrite, Durability::Full).unwrap();
        migrate(&mut connection, &path, 0, 11).unwrap();
        for (id, transition, after_seq) in [
            ("inc_00000000000000ff", "opened", 1),
            ("inc_ffffffffffffffff", "opened", 2),
            ("inc_00000000000000ff", "retracted", 3),
            ("inc_00000000000000ff", "opened", 4),
        ] {
            connection
                .execute(
                    "INSERT INTO incident_transitions(incident_id, transition, after_seq) VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, transition, after_seq],
                )
                .unwrap();
        }
        migrate(&mut connection, &path, 11, CURRENT_VERSION).unwrap();
        let history = |id: &str| -> Vec<(String, i64)> {
            connection
                .prepare("SELECT transition, after_seq FROM incident_transitions WHERE incident = ?1 ORDER BY position")
                .unwrap()
                .query_map([incident_number(id)], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            history("inc_00000000000000ff"),
            [("opened".to_string(), 1), ("retracted".to_string(), 3), ("opened".to_string(), 4)]
        );
        assert_eq!(history("inc_ffffffffffffffff"), [("opened".to_string(), 2)]);
        assert_eq!(incident_number("inc_ffffffffffffffff"), -1, "the top bit is the sign");
        assert_ne!(incident_number("not an id"), incident_number("not an id either"));
        drop(connection);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
