//! `lifewatch replay`: run event files through the engine offline.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, ValueEnum};
use indicatif::HumanCount;
use lifewatch_core::{Engine, IncidentRecord, Outcome, RejectReason, Rejection, Timestamp};

use crate::commands::parse_time;
use crate::commands::replay_db;
use crate::config::AppConfig;
use crate::input;
use crate::output::{self, Format};
use crate::pipeline::for_each_parsed;
use crate::progress::{self, Progress, ReadProgress};

/// The `Examples:` section of `lifewatch replay --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --format table
  lifewatch replay fixtures/stuck.jsonl --now 2026-11-28T00:00:00Z
  lifewatch replay fixtures/launch-day.jsonl --status open -o table
  cat fixtures/bad-input.jsonl | lifewatch replay - --max-rejections 5
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db --quiet";

/// `lifewatch replay` arguments.
#[derive(Args)]
pub struct ReplayArgs {
    /// Event files (JSON Lines, one CloudEvent per line); `-` for standard input.
    files: Vec<PathBuf>,
    /// The instant the replay ends at (RFC 3339); visits still open are judged
    /// against it. Default: the latest time of an accepted event.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    now: Option<Timestamp>,
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// What standard output holds. jsonl: one incident record per line, as in
    /// the contract, ordered by opened_at then key; json: one JSON array of the
    /// same records in the same order; table: the same incidents as columns for
    /// people, open ones first, then resolved ones, each group in that order.
    #[arg(long, short = 'o', value_enum, default_value = "jsonl")]
    format: Format,
    /// With `-o table`: every column and whole summaries (by default the
    /// table fits in 120 columns, the summary cut to the room left).
    #[arg(long)]
    wide: bool,
    /// Print only the incidents still open (or resolved) when the replay ends.
    /// The totals on standard error still count every line.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// Totals only: no rejected line listed on standard error (the totals line
    /// still counts them, by reason) and no progress bar.
    #[arg(long, short = 'q', conflicts_with = "max_rejections")]
    quiet: bool,
    /// List at most N rejected lines on standard error, then one line saying
    /// how many more there were. The replay goes on to the end and the totals
    /// count every rejection; the exit status stays 0, as for any rejected line.
    #[arg(long, value_name = "N")]
    max_rejections: Option<u64>,
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

/// `--status` values.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum StatusArg {
    /// Incidents not resolved when the replay ends.
    Open,
    /// Incidents resolved by then.
    Resolved,
}

impl StatusArg {
    /// Whether `record` has this status.
    fn admits(self, record: &IncidentRecord) -> bool {
        record.resolved_at.is_none() == (self == StatusArg::Open)
    }
}

/// How many rejected lines are listed on standard error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Listing {
    /// Every one.
    All,
    /// The first N, then how many more.
    First(u64),
    /// None (`--quiet`): the totals say how many, by reason.
    Quiet,
}

/// What a replay prints, whether it persists or not.
#[derive(Clone, Copy)]
pub struct Shown {
    /// The format of the incidents on standard output.
    pub format: Format,
    /// Only the incidents with this status.
    pub status: Option<StatusArg>,
    /// The rejected lines listed on standard error.
    pub listing: Listing,
    /// Every column of the table (`--wide`).
    pub wide: bool,
}

/// `lifewatch replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayArgs { files, now, config, format, wide, status, quiet, max_rejections, db, batch_lines } =
        args;
    let listing = match (quiet, max_rejections) {
        (true, _) => Listing::Quiet,
        (false, Some(limit)) => Listing::First(limit),
        (false, None) => Listing::All,
    };
    let shown = Shown { format, status, listing, wide };
    let config = AppConfig::load(config.as_deref())?.engine;
    if let Some(db) = db {
        crate::commands::run::check_parent(&db)?;
        replay_db::run(&db, &files, now, config, shown, batch_lines)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut engine = Engine::new(config);
    let mut totals = feed(&mut engine, &files, listing)?;
    finish(&mut engine, now);
    totals.entities = engine.entity_count();
    print_incidents(&engine, shown)?;
    report(&totals)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the incidents of `engine` as `shown` asks: those with its status,
/// in the contract's order (by opened_at, then key), except that a table
/// lists the open ones first.
pub fn print_incidents(engine: &Engine, shown: Shown) -> io::Result<()> {
    // Open incidents are aged at the replay's end clock.
    let view = output::TableView { wide: shown.wide, clock: engine.clock() };
    let records = engine
        .sorted_incidents()
        .into_iter()
        .filter_map(|index| engine.record(index))
        .filter(|record| shown.status.is_none_or(|status| status.admits(record)));
    if shown.format == Format::Table {
        // A person reads a table from the top: what still needs someone goes
        // there. The table holds every record in memory anyway.
        let (open, resolved): (Vec<_>, Vec<_>) = records.partition(|record| record.resolved_at.is_none());
        output::print_record_stream(open.into_iter().chain(resolved), shown.format, view)
    } else {
        output::print_record_stream(records, shown.format, view)
    }
}

/// The inputs named, or standard input when none is.
pub fn inputs_or_stdin(files: &[PathBuf]) -> Cow<'_, [PathBuf]> {
    if files.is_empty() { Cow::Owned(vec![PathBuf::from("-")]) } else { Cow::Borrowed(files) }
}

/// Lines between two updates of the progress bar: often enough to move it
/// smoothly, rarely enough to cost nothing next to parsing them.
pub const PROGRESS_LINES: u64 = 4096;

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

/// Bytes of rejection lines gathered before they are written out.
const REJECTIONS_BUFFER: usize = 64 * 1024;

/// Where rejections go as they are found: one line each on standard error
/// (as many as the [`Listing`] allows), through a buffer, counted by reason
/// in the totals. Before, every rejected line was kept until the end of the
/// replay and printed then, which took memory in proportion to the bad
/// lines (3 GB for 20 million) and printed nothing at all when that ran out.
pub struct Rejections {
    /// Lines not yet written; written out under [`Progress::suspend`] so that
    /// they never mix with the progress bar.
    buffer: Vec<u8>,
    listing: Listing,
    listed: u64,
    unlisted: u64,
    progress: Progress,
    /// The first failure to write, reported at the end: a closed standard
    /// error must not stop the replay itself.
    failed: Option<io::Error>,
}

impl Rejections {
    /// Writes to standard error as `listing` says, around `progress`.
    pub fn to_stderr(listing: Listing, progress: Progress) -> Rejections {
        Rejections {
            buffer: Vec::with_capacity(REJECTIONS_BUFFER + 1024),
            listing,
            listed: 0,
            unlisted: 0,
            progress,
            failed: None,
        }
    }

    /// Reports the line `number` of `source`, rejected for `rejection`, and counts it.
    pub fn reject(&mut self, totals: &mut ReplayTotals, source: &str, number: u64, rejection: &Rejection) {
        *totals.rejected.entry(rejection.reason).or_default() += 1;
        let listed = match self.listing {
            Listing::All => true,
            Listing::First(limit) => self.listed < limit,
            Listing::Quiet => false,
        };
        if !listed {
            self.unlisted += 1;
            return;
        }
        self.listed += 1;
        if self.failed.is_none() {
            // Writing to a Vec cannot fail.
            let _ = writeln!(self.buffer, "{source}:{number}: rejected: {rejection}");
            if self.buffer.len() >= REJECTIONS_BUFFER {
                self.flush();
            }
        }
    }

    /// Writes out what is buffered, so that a rejection shows while a long
    /// replay goes on. A failure is kept for [`Rejections::finish`].
    pub fn flush(&mut self) {
        if !self.buffer.is_empty() && self.failed.is_none() {
            let buffer = &self.buffer;
            let written = self.progress.suspend(|| {
                let mut err = io::stderr().lock();
                err.write_all(buffer).and_then(|()| err.flush())
            });
            if let Err(error) = written {
                self.failed = Some(error);
            }
        }
        self.buffer.clear();
    }

    /// Writes out what is buffered, and how many were not listed after the
    /// first N, and reports the first failure to write.
    pub fn finish(mut self) -> io::Result<()> {
        if self.unlisted > 0 && matches!(self.listing, Listing::First(_)) {
            let noun = if self.unlisted == 1 { "rejection" } else { "rejections" };
            let _ = writeln!(self.buffer, "… and {} more {noun}; see the totals", HumanCount(self.unlisted));
        }
        self.flush();
        self.failed.take().map_or(Ok(()), Err)
    }
}

impl Drop for Rejections {
    /// A replay that fails (an unreadable input) still shows the rejections
    /// found before the failure.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Feeds every line of `inputs`, in order, to `engine` as one stream,
/// listing rejections as `listing` says.
pub fn feed(engine: &mut Engine, inputs: &[PathBuf], listing: Listing) -> anyhow::Result<ReplayTotals> {
    let mut totals = ReplayTotals::default();
    let inputs = inputs_or_stdin(inputs);
    // Progress for people: only when standard error is a terminal, so logs and
    // tests see nothing but the summary.
    let progress = ReadProgress::new(
        progress::wanted(listing == Listing::Quiet, io::stderr().is_terminal()),
        "replay",
        input::total_size(&inputs),
    );
    let mut rejections = Rejections::to_stderr(listing, progress.progress().clone());
    let read = AtomicU64::new(0);
    for_each_parsed(&inputs, &read, |line| {
        totals.lines += 1;
        if totals.lines % PROGRESS_LINES == 0 {
            progress.update(totals.lines, read.load(Ordering::Relaxed));
            rejections.flush();
        }
        match line.result {
            Ok(event) => match engine.handle_event(event) {
                Outcome::Accepted => totals.accepted += 1,
                Outcome::Duplicate => totals.duplicates += 1,
            },
            Err(rejection) => rejections.reject(&mut totals, line.input, line.number, rejection),
        }
    })?;
    progress.progress().finish();
    rejections.finish()?;
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
