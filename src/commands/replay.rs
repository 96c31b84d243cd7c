//! `lifewatch replay`: run event files through the engine offline.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{Engine, Outcome, RejectReason, Rejection, Timestamp};

use crate::commands::parse_time;
use crate::commands::replay_db;
use crate::config::AppConfig;
use crate::output::{self, Format};
use crate::pipeline::for_each_parsed;

/// The `Examples:` section of `lifewatch replay --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --format table
  lifewatch replay fixtures/stuck.jsonl --now 2026-11-28T00:00:00Z
  cat fixtures/bad-input.jsonl | lifewatch replay -
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db";

/// `lifewatch replay` arguments.
#[derive(Args)]
pub struct ReplayArgs {
    /// Event files (JSON Lines, one CloudEvent per line); `-` for standard input.
    files: Vec<PathBuf>,
    /// The instant the replay ends at (RFC 3339); visits still open are judged
    /// against it. Default: the latest time of an accepted event.
    #[arg(long, value_parser = parse_time)]
    now: Option<Timestamp>,
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format: jsonl for tools, table for people.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Persist to this SQLite database as the replay goes (created if missing):
    /// events already in it are duplicates, so a second file continues the first.
    #[arg(long)]
    db: Option<PathBuf>,
    /// With --db: input lines per transaction. Larger batches write
    /// faster (fewer rewrites of the same pages) and hold more memory
    /// (about 250 bytes per line, twice); a crash redoes at most two.
    #[arg(long, default_value_t = replay_db::BATCH_LINES, value_parser = clap::value_parser!(u64).range(1..), requires = "db")]
    batch_lines: u64,
}

/// `lifewatch replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayArgs { files, now, config, format, db, batch_lines } = args;
    let config = AppConfig::load(config.as_deref())?.engine;
    if let Some(db) = db {
        replay_db::run(&db, &files, now, config, format, batch_lines)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut engine = Engine::new(config);
    let mut totals = feed(&mut engine, &files)?;
    finish(&mut engine, now);
    totals.entities = engine.entity_count();
    let order = engine.sorted_incidents();
    output::print_record_stream(order.into_iter().filter_map(|index| engine.record(index)), format)?;
    report(&totals)?;
    Ok(ExitCode::SUCCESS)
}

/// Totals of one replay. Rejected lines are not kept: each is written to
/// standard error when it is found (see [`Rejections`]), so memory stays the
/// same however many lines are bad.
#[derive(Default)]
pub struct ReplayTotals {
    /// Non-blank lines read.
    pub lines: u64,
    /// Events applied.
    pub accepted: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Lines rejected, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Entities tracked at the end.
    pub entities: usize,
}

impl ReplayTotals {
    /// Lines rejected, whatever the reason.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Where rejections go as they are found: one line each on standard error,
/// through a buffer, counted by reason in the totals. Before, every rejected
/// line was kept until the end of the replay and printed then, which took
/// memory in proportion to the bad lines (3 GB for 20 million) and printed
/// nothing at all when that ran out.
pub struct Rejections {
    err: io::BufWriter<io::Stderr>,
    /// The first failure to write, reported at the end: a closed standard
    /// error must not stop the replay itself.
    failed: Option<io::Error>,
}

impl Rejections {
    /// Writes to standard error.
    pub fn to_stderr() -> Rejections {
        Rejections { err: io::BufWriter::with_capacity(64 * 1024, io::stderr()), failed: None }
    }

    /// Reports the line `number` of `source`, rejected for `rejection`, and counts it.
    pub fn reject(&mut self, totals: &mut ReplayTotals, source: &str, number: u64, rejection: &Rejection) {
        *totals.rejected.entry(rejection.reason).or_default() += 1;
        if self.failed.is_none()
            && let Err(error) = writeln!(self.err, "{source}:{number}: rejected: {rejection}")
        {
            self.failed = Some(error);
        }
    }

    /// Writes out what is buffered, so that the progress line on a terminal
    /// comes after it. A failure is kept for [`Rejections::finish`].
    pub fn flush(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.err.flush()
        {
            self.failed = Some(error);
        }
    }

    /// Writes out what is buffered and reports the first failure to write.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush();
        self.failed.map_or(Ok(()), Err)
    }
}

/// Feeds every line of `inputs`, in order, to `engine` as one stream.
pub fn feed(engine: &mut Engine, inputs: &[PathBuf]) -> anyhow::Result<ReplayTotals> {
    let mut totals = ReplayTotals::default();
    let mut rejections = Rejections::to_stderr();
    // Progress for people: only when standard error is a terminal, so logs and
    // tests see nothing but the summary.
    let progress = io::stderr().is_terminal();
    let default_input = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() { &default_input[..] } else { inputs };
    for_each_parsed(inputs, |line| {
        totals.lines += 1;
        if progress && totals.lines % (1 << 18) == 0 {
            // The rejections buffered so far go before the progress line.
            rejections.flush();
            eprint!("\rreplay: {} lines read…", totals.lines);
        }
        match line.result {
            Ok(event) => match engine.handle_event(event) {
                Outcome::Accepted => totals.accepted += 1,
                Outcome::Duplicate => totals.duplicates += 1,
            },
            Err(rejection) => rejections.reject(&mut totals, line.input, line.number, rejection),
        }
    })?;
    rejections.finish()?;
    if progress && totals.lines >= 1 << 18 {
        eprint!("\r\x1b[K");
    }
    Ok(totals)
}

/// Moves the engine's clock to the end of the replay: `now`, or the latest
/// accepted event time.
pub fn finish(engine: &mut Engine, now: Option<Timestamp>) {
    if let Some(now) = now.or(engine.latest_event_time()) {
        engine.handle_time(now);
    }
}

/// The totals on standard error (the rejected lines were written as they
/// were found).
pub fn report(totals: &ReplayTotals) -> io::Result<()> {
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let reasons: Vec<String> =
        totals.rejected.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
    writeln!(
        err,
        "replay: {} lines, {} accepted, {} duplicates, {} rejected{reasons}; {} entities",
        totals.lines,
        totals.accepted,
        totals.duplicates,
        totals.rejected_count(),
        totals.entities
    )?;
    err.flush()
}
