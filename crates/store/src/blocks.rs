//! The event log in compressed blocks (schema 6, table `event_blocks`).
//!
//! A block holds consecutive seqs `first_seq .. first_seq + count`: for each
//! event, in seq order, the varint key of its entity (see
//! [`entity_key`](crate::project::entity_key)), the varint length of its
//! payload and the payload's bytes, the whole compressed as one zstd frame
//! (level 1, with zstd's checksum). Decompressed, every payload is the raw
//! input byte for byte.
//!
//! Why: one row per event wrote every payload twice (the WAL, then the
//! checkpoint into the database) at about 240 bytes each; the JSON of
//! lifecycle events compresses about six times in blocks of this size, which
//! made the log a sixth of the bytes to write and to read back when the
//! engine is restored. `show` decompresses the block of each event it lists
//! (about 30 µs each).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Context, StoreError};

/// Raw bytes gathered before a block is closed.
const BLOCK_BYTES: usize = 128 * 1024;
/// The largest decompressed block accepted on read: a bound on what a
/// damaged `size` column can make a reader allocate.
const MAX_BLOCK_BYTES: i64 = 256 << 20;
/// zstd's fastest regular level: compressing costs about a third of what
/// writing the raw bytes through SQLite did.
const LEVEL: i32 = 1;

/// Writes the events of a batch as blocks. Reuses its buffers and its zstd
/// context across batches.
pub(crate) struct BlockWriter {
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    /// One block's zstd frame.
    frame: Vec<u8>,
    /// The blocks of the last [`BlockWriter::compress`], back to back.
    compressed: Vec<u8>,
    /// Per block: first seq, count, raw size, range in `compressed`.
    blocks: Vec<(i64, i64, i64, std::ops::Range<usize>)>,
}

impl BlockWriter {
    pub(crate) fn new(path: &Path) -> Result<BlockWriter, StoreError> {
        let mut compressor = zstd::bulk::Compressor::new(LEVEL)
            .map_err(|error| compression(path, "start a compressor", error))?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(|error| compression(path, "turn checksums on", error))?;
        Ok(BlockWriter {
            compressor,
            raw: Vec::new(),
            frame: Vec::new(),
            compressed: Vec::new(),
            blocks: Vec::new(),
        })
    }

    /// Appends `events` (seq, entity key, payload; seqs ascending) to the log
    /// inside the caller's transaction, in blocks of consecutive seqs.
    pub(crate) fn append<'a>(
        &mut self,
        connection: &Connection,
        path: &Path,
        events: impl IntoIterator<Item = (i64, i64, &'a [u8])>,
    ) -> Result<(), StoreError> {
        self.compress(path, events)?;
        self.insert(connection, path)
    }

    /// Compresses `events` (seq, entity key, payload; seqs ascending) into
    /// blocks of consecutive seqs, kept for [`BlockWriter::insert`]. Touches
    /// no database: a commit runs it on a second thread while it writes the
    /// rest of the batch.
    pub(crate) fn compress<'a>(
        &mut self,
        path: &Path,
        events: impl IntoIterator<Item = (i64, i64, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let mut block: Option<(i64, i64)> = None; // (first seq, count)
        self.raw.clear();
        self.compressed.clear();
        self.blocks.clear();
        for (seq, entity, payload) in events {
            if let Some((first, count)) = block
                && (seq != first + count || self.raw.len() >= BLOCK_BYTES)
            {
                self.compress_block(path, first, count)?;
                block = None;
            }
            let (_, count) = block.get_or_insert((seq, 0));
            *count += 1;
            crate::seqs::push_varint(entity as u64, &mut self.raw);
            crate::seqs::push_varint(payload.len() as u64, &mut self.raw);
            self.raw.extend_from_slice(payload);
        }
        if let Some((first, count)) = block {
            self.compress_block(path, first, count)?;
        }
        Ok(())
    }

    fn compress_block(&mut self, path: &Path, first: i64, count: i64) -> Result<(), StoreError> {
        self.frame.clear();
        self.frame.reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
        self.compressor
            .compress_to_buffer(&self.raw, &mut self.frame)
            .map_err(|error| compression(path, "compress a block of the log", error))?;
        let start = self.compressed.len();
        self.compressed.extend_from_slice(&self.frame);
        self.blocks.push((first, count, self.raw.len() as i64, start..self.compressed.len()));
        self.raw.clear();
        Ok(())
    }

    /// Inserts the blocks of the last [`BlockWriter::compress`] inside the
    /// caller's transaction.
    pub(crate) fn insert(&mut self, connection: &Connection, path: &Path) -> Result<(), StoreError> {
        let mut insert = connection
            .prepare_cached("INSERT INTO event_blocks(first_seq, count, size, data) VALUES (?1, ?2, ?3, ?4)")
            .context(path, "prepare the event insert")?;
        for (first, count, size, range) in self.blocks.drain(..) {
            insert
                .execute(params![first, count, size, &self.compressed[range]])
                .context(path, "append events")?;
        }
        Ok(())
    }
}

fn compression(path: &Path, context: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Compression { path: path.to_path_buf(), context, source }
}

/// A decompressed block.
#[derive(Default)]
pub(crate) struct Block {
    first_seq: i64,
    count: i64,
    raw: Vec<u8>,
}

impl Block {
    /// The block's events: (seq, entity key, payload).
    pub(crate) fn events(&self) -> BlockEvents<'_> {
        BlockEvents { rest: &self.raw, seq: self.first_seq, left: self.count }
    }

    /// The payload of event `seq`, if this block holds it.
    pub(crate) fn payload(&self, seq: i64) -> Result<Option<&[u8]>, String> {
        for event in self.events() {
            let (at, _, payload) = event?;
            if at == seq {
                return Ok(Some(payload));
            }
        }
        Ok(None)
    }

    /// Whether `seq` is in this block.
    pub(crate) fn holds(&self, seq: i64) -> bool {
        seq >= self.first_seq && seq < self.first_seq + self.count
    }
}

/// The events of a [`Block`]; an `Err` (and nothing after it) when the block
/// does not hold the events its row announces.
pub(crate) struct BlockEvents<'a> {
    rest: &'a [u8],
    seq: i64,
    left: i64,
}

impl<'a> Iterator for BlockEvents<'a> {
    type Item = Result<(i64, i64, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return (!self.rest.is_empty()).then(|| {
                self.rest = &[];
                Err(format!("the block ending at event {} holds bytes past its last event", self.seq - 1))
            });
        }
        let seq = self.seq;
        let damaged = || format!("the block holding event {seq} is damaged");
        let event = (|| {
            let (entity, rest) = crate::seqs::read_varint(self.rest)?;
            let (length, rest) = crate::seqs::read_varint(rest)?;
            let length = usize::try_from(length).ok()?;
            (rest.len() >= length).then(|| (entity as i64, rest.split_at(length)))
        })();
        match event {
            Some((entity, (payload, rest))) => {
                self.rest = rest;
                self.seq += 1;
                self.left -= 1;
                Some(Ok((seq, entity, payload)))
            }
            None => {
                self.left = 0;
                self.rest = &[];
                Some(Err(damaged()))
            }
        }
    }
}

/// Reads and decompresses blocks.
pub(crate) struct BlockReader {
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl BlockReader {
    pub(crate) fn new(path: &Path) -> Result<BlockReader, StoreError> {
        let decompressor = zstd::bulk::Decompressor::new()
            .map_err(|error| compression(path, "start a decompressor", error))?;
        Ok(BlockReader { decompressor })
    }

    /// Decompresses one row of `event_blocks` into `block`.
    fn decode(
        &mut self,
        path: &Path,
        (first_seq, count, size, data): (i64, i64, i64, &[u8]),
        block: &mut Block,
    ) -> Result<(), StoreError> {
        let bad = |detail: String| StoreError::BadData { path: path.to_path_buf(), detail };
        if !(0..=MAX_BLOCK_BYTES).contains(&size) || count < 0 {
            return Err(bad(format!(
                "the block of events from {first_seq} announces {count} events in {size} bytes"
            )));
        }
        block.raw.clear();
        block.raw.reserve(size as usize);
        let written = self
            .decompressor
            .decompress_to_buffer(data, &mut block.raw)
            .map_err(|error| bad(format!("the block of events from {first_seq} is damaged: {error}")))?;
        if written as i64 != size {
            return Err(bad(format!(
                "the block of events from {first_seq} holds {written} bytes, not {size}"
            )));
        }
        block.first_seq = first_seq;
        block.count = count;
        Ok(())
    }

    /// Calls `each` with every event of the log (seq, entity key, payload), in seq order.
    pub(crate) fn for_each(
        &mut self,
        connection: &Connection,
        path: &Path,
        mut each: impl FnMut(i64, i64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = connection
            .prepare("SELECT first_seq, count, size, data FROM event_blocks ORDER BY first_seq")
            .context(path, "read the event log")?;
        let mut rows = statement.query([]).context(path, "read the event log")?;
        let mut block = Block::default();
        while let Some(row) = rows.next().context(path, "read the event log")? {
            self.decode(path, columns(row).context(path, "read the event log")?, &mut block)?;
            for event in block.events() {
                let (seq, entity, payload) =
                    event.map_err(|detail| StoreError::BadData { path: path.to_path_buf(), detail })?;
                each(seq, entity, payload)?;
            }
        }
        Ok(())
    }

    /// Decompresses the block holding `seq` into `block` (unless it holds it
    /// already); false when no block does.
    pub(crate) fn load(
        &mut self,
        connection: &Connection,
        path: &Path,
        seq: i64,
        block: &mut Block,
    ) -> Result<bool, StoreError> {
        if block.holds(seq) {
            return Ok(true);
        }
        let mut statement = connection
            .prepare_cached(
                "SELECT first_seq, count, size, data FROM event_blocks WHERE first_seq <= ?1
                 ORDER BY first_seq DESC LIMIT 1",
            )
            .context(path, "read events")?;
        let mut rows = statement.query([seq]).context(path, "read events")?;
        let Some(row) = rows.next().context(path, "read events")? else { return Ok(false) };
        self.decode(path, columns(row).context(path, "read events")?, block)?;
        Ok(block.holds(seq))
    }
}

/// What [`check_log`] found in a log that holds what its rows announce.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct LogExtent {
    /// Blocks read.
    pub(crate) blocks: u64,
    /// Events read.
    pub(crate) events: u64,
    /// The seq of the last event (0 when the log is empty).
    pub(crate) last_seq: i64,
}

/// Reads every block of the log: each must decompress (zstd checks the
/// frame's checksum), hold exactly the events and bytes its row announces,
/// and follow the block before it without a gap or an overlap (seqs run
/// from 1). Each problem goes to `problem`, and the check goes on with the
/// next block; a row SQLite cannot read ends it.
pub(crate) fn check_log(
    connection: &Connection,
    path: &Path,
    mut problem: impl FnMut(String),
) -> Result<LogExtent, StoreError> {
    let mut reader = BlockReader::new(path)?;
    let mut extent = LogExtent::default();
    let mut statement = connection
        .prepare("SELECT first_seq, count, size, data FROM event_blocks ORDER BY first_seq")
        .context(path, "read the event log")?;
    let mut rows = statement.query([]).context(path, "read the event log")?;
    let mut block = Block::default();
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(error) => {
                problem(format!("the log cannot be read past event {}: {error}", extent.last_seq));
                break;
            }
        };
        let columns = match columns(row) {
            Ok(columns) => columns,
            Err(error) => {
                problem(format!("a block of events after event {} cannot be read: {error}", extent.last_seq));
                continue;
            }
        };
        let (first_seq, count, _, _) = columns;
        extent.blocks += 1;
        let expected = extent.last_seq + 1;
        if first_seq > expected {
            problem(format!("events {expected} to {} are missing from the log", first_seq - 1));
        } else if first_seq < expected {
            problem(format!(
                "the block of events from {first_seq} overlaps the one before it, which ends at event {}",
                extent.last_seq
            ));
        }
        if count <= 0 {
            problem(format!("the block of events from {first_seq} announces {count} events"));
            continue;
        }
        extent.last_seq = extent.last_seq.max(first_seq + count - 1);
        if let Err(error) = reader.decode(path, columns, &mut block) {
            problem(match error {
                StoreError::BadData { detail, .. } => detail,
                error => error.to_string(),
            });
            continue;
        }
        for event in block.events() {
            match event {
                Ok(_) => extent.events += 1,
                Err(detail) => problem(detail),
            }
        }
    }
    Ok(extent)
}

/// The columns of a row of `SELECT first_seq, count, size, data FROM event_blocks`.
fn columns<'a>(row: &'a rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, i64, &'a [u8])> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get_ref(3)?.as_blob()?))
}

/// The seq of the last event in the log (0 when it is empty).
pub(crate) fn last_seq(connection: &Connection, path: &Path) -> Result<i64, StoreError> {
    connection
        .query_row(
            "SELECT first_seq + count - 1 FROM event_blocks ORDER BY first_seq DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map(|last| last.unwrap_or(0))
        .context(path, "read the event log")
}

/// Migration 6's step in Rust: moves the rows of the old `events` table into
/// blocks, then drops it.
pub(crate) fn migrate_events_into_blocks(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut writer = BlockWriter::new(path)?;
    let mut statement = connection
        .prepare("SELECT seq, entity, payload FROM events ORDER BY seq")
        .context(path, "read the event log")?;
    let mut rows = statement.query([]).context(path, "read the event log")?;
    let mut chunk: Vec<(i64, i64, Vec<u8>)> = Vec::new();
    let mut chunk_bytes = 0;
    let append = |writer: &mut BlockWriter, chunk: &mut Vec<(i64, i64, Vec<u8>)>| {
        let events = chunk.iter().map(|(seq, entity, payload)| (*seq, *entity, &payload[..]));
        let appended = writer.append(connection, path, events);
        chunk.clear();
        appended
    };
    while let Some(row) = rows.next().context(path, "read the event log")? {
        let event: (i64, i64, Vec<u8>) =
            (|| Ok::<_, rusqlite::Error>((row.get(0)?, row.get(1)?, row.get(2)?)))()
                .context(path, "read the event log")?;
        chunk_bytes += event.2.len();
        chunk.push(event);
        if chunk_bytes >= 16 * BLOCK_BYTES {
            append(&mut writer, &mut chunk)?;
            chunk_bytes = 0;
        }
    }
    append(&mut writer, &mut chunk)?;
    drop(rows);
    drop(statement);
    connection.execute_batch("DROP TABLE events").context(path, "migrate the schema")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE event_blocks (first_seq INTEGER PRIMARY KEY, count INTEGER NOT NULL,
                     size INTEGER NOT NULL, data BLOB NOT NULL)",
            )
            .unwrap();
        connection
    }

    #[test]
    fn events_come_back_byte_for_byte_by_seq_and_in_order() {
        let path = Path::new("memory");
        let connection = database();
        let payloads: Vec<Vec<u8>> = (0..3_000)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300)).into_bytes())
            .collect();
        let mut writer = BlockWriter::new(path).unwrap();
        // Seqs 1..=2000, then a gap, then 5001..=6000: blocks never span a gap.
        let seqs = (1..=2_000).chain(5_001..=6_000);
        let events: Vec<(i64, i64, &[u8])> =
            seqs.zip(&payloads).map(|(seq, payload)| (seq, seq * 7, &payload[..])).collect();
        writer.append(&connection, path, events.iter().copied()).unwrap();
        let blocks: i64 =
            connection.query_row("SELECT count(*) FROM event_blocks", [], |row| row.get(0)).unwrap();
        assert!(blocks > 2, "{blocks} blocks");
        assert_eq!(last_seq(&connection, path).unwrap(), 6_000);

        let mut reader = BlockReader::new(path).unwrap();
        let mut all = Vec::new();
        reader
            .for_each(&connection, path, |seq, entity, payload| {
                all.push((seq, entity, payload.to_vec()));
                Ok(())
            })
            .unwrap();
        let expected: Vec<_> =
            events.iter().map(|&(seq, entity, payload)| (seq, entity, payload.to_vec())).collect();
        assert_eq!(all, expected);

        let mut block = Block::default();
        for seq in [1, 2, 1_999, 2_000, 5_001, 5_500, 6_000] {
            assert!(reader.load(&connection, path, seq, &mut block).unwrap(), "seq {seq}");
            let found = block.payload(seq).unwrap().unwrap();
            assert_eq!(found, &expected.iter().find(|event| event.0 == seq).unwrap().2[..]);
        }
        for missing in [0, 2_001, 4_000, 6_001] {
            assert!(!reader.load(&connection, path, missing, &mut block).unwrap(), "seq {missing}");
        }
    }

    #[test]
    fn a_damaged_block_is_bad_data_not_a_panic() {
        let path = Path::new("memory");
        let connection = database();
        let mut writer = BlockWriter::new(path).unwrap();
        writer.append(&connection, path, [(1, 0, &b"{}"[..]), (2, 0, &b"{\"a\":1}"[..])]).unwrap();
        let mut reader = BlockReader::new(path).unwrap();
        let read_all = |reader: &mut BlockReader| reader.for_each(&connection, path, |_, _, _| Ok(()));
        assert!(read_all(&mut reader).is_ok());
        connection.execute("UPDATE event_blocks SET count = 3", []).unwrap();
        assert!(matches!(read_all(&mut reader), Err(StoreError::BadData { .. })));
        connection.execute("UPDATE event_blocks SET count = 1", []).unwrap();
        assert!(matches!(read_all(&mut reader), Err(StoreError::BadData { .. })));
        connection.execute("UPDATE event_blocks SET count = 2, size = 9999999999", []).unwrap();
        assert!(matches!(read_all(&mut reader), Err(StoreError::BadData { .. })));
        connection.execute("UPDATE event_blocks SET size = 14, data = x'28b52ffd0000'", []).unwrap();
        assert!(matches!(read_all(&mut reader), Err(StoreError::BadData { .. })));
    }
}
