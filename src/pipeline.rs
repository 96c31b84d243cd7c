//! Parsing on a second thread. One thread reads the inputs, gathers lines into
//! chunks of about a megabyte and parses every line of a chunk; the caller's
//! thread receives the chunks in order and applies their events. Parsing and
//! validation are about half of a replay's work, so on two cores the two
//! halves overlap; on one core it costs a copy of each line and nothing else.
//!
//! Events still borrow their strings: each chunk owns its bytes and the
//! events parsed from them (a self-referential pair, built safely with
//! `self_cell`), and travels through a bounded channel, so memory stays a few
//! chunks whatever the input size.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;

use lifewatch_core::{Event, MAX_LINE_BYTES, RejectReason, Rejection, parse_event};
use self_cell::self_cell;

use crate::input::{Input, Line, for_each_line, is_blank};

/// Lines are handed over in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// One non-blank input line, parsed.
pub struct Parsed<'a> {
    /// The input's name, as messages show it.
    pub input: &'a str,
    /// The 1-based line number in that input.
    pub number: u64,
    /// The line's bytes (empty for a line rejected as too large).
    #[allow(dead_code)] // for drivers that keep raw lines (the store); replay does not
    pub raw: &'a [u8],
    /// The event, or why the line was rejected.
    pub result: &'a Result<Event<'a>, Rejection>,
}

type ParsedLines<'a> = Vec<(u64, Range<usize>, Result<Event<'a>, Rejection>)>;

self_cell!(
    /// A chunk of lines and the events parsed from them.
    struct Chunk {
        owner: Vec<u8>,
        #[covariant]
        dependent: ParsedLines,
    }
);

enum Message {
    Chunk { input: usize, chunk: Chunk },
    Failed(anyhow::Error),
}

/// The name an input is shown by.
fn input_name(path: &Path) -> String {
    if path == Path::new("-") { "<stdin>".to_string() } else { path.display().to_string() }
}

/// Calls `each` for every non-blank line of `inputs` (one stream, in order),
/// parsing on a second thread, and adds the bytes read to `read` as they are
/// read (for progress). Fails when an input cannot be opened or read, after
/// the lines before the failure were handed to `each`.
pub fn for_each_parsed(
    inputs: &[PathBuf],
    read: &AtomicU64,
    mut each: impl FnMut(Parsed<'_>),
) -> anyhow::Result<()> {
    // With one core there is nothing to overlap, and the chunk copies would be
    // pure cost: parse in place instead.
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return for_each_parsed_here(inputs, read, each);
    }
    let names: Vec<String> = inputs.iter().map(|path| input_name(path)).collect();
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        scope.spawn(move || produce(inputs, read, &sender));
        for message in receiver {
            match message {
                Message::Chunk { input, chunk } => chunk.with_dependent(|bytes, lines| {
                    for (number, range, result) in lines {
                        let raw = bytes.get(range.clone()).unwrap_or_default();
                        each(Parsed { input: &names[input], number: *number, raw, result });
                    }
                }),
                Message::Failed(error) => return Err(error),
            }
        }
        Ok(())
    })
}

/// [`for_each_parsed`] on the caller's thread alone.
fn for_each_parsed_here(
    inputs: &[PathBuf],
    read: &AtomicU64,
    mut each: impl FnMut(Parsed<'_>),
) -> anyhow::Result<()> {
    for path in inputs {
        let opened = Input::open(path)?;
        let name = opened.name.clone();
        for_each_line(opened.into_counted_reader(read), |number, line| {
            let (raw, result) = match line {
                Line::Text(text) if is_blank(text) => return,
                Line::Text(text) => (text, parse_event(text)),
                Line::TooLong(length) => (&[][..], Err(too_large(length))),
            };
            each(Parsed { input: &name, number, raw, result: &result });
        })
        .map_err(|error| anyhow::anyhow!("cannot read {name}: {error}"))?;
    }
    Ok(())
}

fn too_large(length: usize) -> Rejection {
    Rejection::new(
        RejectReason::TooLarge,
        format!("line of {length} bytes exceeds the limit of {MAX_LINE_BYTES}"),
    )
}

/// The reading and parsing thread.
fn produce(inputs: &[PathBuf], read: &AtomicU64, sender: &mpsc::SyncSender<Message>) {
    for (input, path) in inputs.iter().enumerate() {
        let opened = match Input::open(path) {
            Ok(opened) => opened,
            Err(error) => {
                let _ = sender.send(Message::Failed(error));
                return;
            }
        };
        let name = opened.name.clone();
        let mut bytes: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
        // Per line: its number, its range in `bytes`, and its length if too long.
        let mut lines: Vec<(u64, Range<usize>, Option<usize>)> = Vec::new();
        let send = |bytes: &mut Vec<u8>, lines: &mut Vec<(u64, Range<usize>, Option<usize>)>| {
            let owner = std::mem::replace(bytes, Vec::with_capacity(CHUNK_BYTES + 4096));
            let index = std::mem::take(lines);
            let chunk = Chunk::new(owner, |owner| parse_chunk(owner, index));
            // A closed channel means the consumer stopped; it reports why.
            sender.send(Message::Chunk { input, chunk }).is_ok()
        };
        let mut open = true;
        let outcome = for_each_line(opened.into_counted_reader(read), |number, line| {
            match line {
                Line::Text(text) if is_blank(text) => return,
                Line::Text(text) => {
                    let start = bytes.len();
                    bytes.extend_from_slice(text);
                    lines.push((number, start..bytes.len(), None));
                }
                Line::TooLong(length) => lines.push((number, 0..0, Some(length))),
            }
            if open && (bytes.len() >= CHUNK_BYTES || lines.len() >= 16_384) {
                open = send(&mut bytes, &mut lines);
            }
        });
        if let Err(error) = outcome {
            let _ = sender.send(Message::Failed(anyhow::anyhow!("cannot read {name}: {error}")));
            return;
        }
        if !open || (!lines.is_empty() && !send(&mut bytes, &mut lines)) {
            return;
        }
    }
}

fn parse_chunk(owner: &[u8], index: Vec<(u64, Range<usize>, Option<usize>)>) -> ParsedLines<'_> {
    index
        .into_iter()
        .map(|(number, range, too_long)| {
            let result = match too_long {
                Some(length) => Err(too_large(length)),
                None => parse_event(owner.get(range.clone()).unwrap_or_default()),
            };
            (number, range, result)
        })
        .collect()
}
