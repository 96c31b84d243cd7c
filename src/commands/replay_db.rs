//! `replay --db`: the replay that persists to a database as it goes.

use std::fmt::Write as _;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lifewatch_core::{Config, Timestamp};
use lifewatch_store::{Durability, Fed, Writer, WriterOptions};

use crate::commands::replay::{
    Listing, PROGRESS_LINES, Rejections, ReplayTotals, Shown, inputs_or_stdin, print_incidents,
};
use crate::input;
use crate::pipeline::for_each_parsed;
use crate::progress::{self, ReadProgress};

/// Lines per transaction in `replay --db`. Each batch rewrites every page of
/// the projections it touches (entity rows, incidents), so larger batches
/// write fewer pages per event: at 1,000,000 events, 50,000 lines per batch
/// took 2.2 s, 100,000 2.0 s and 200,000 1.8 s; 400,000 gained nothing more,
/// nor did a first batch of 25,000 or 100,000 lines doubling up to 200,000
/// (to get the commit thread to work sooner). A batch holds its raw lines
/// (about 50 MB), and a crash redoes at most the two not yet committed.
pub const BATCH_LINES: u64 = 200_000;

/// `replay --db`: feeds the files through a [`Writer`], committing every
/// `batch_lines` lines (default [`BATCH_LINES`]) on the store's commit
/// thread, then ticks the clock to `now` (or the latest event time) and
/// prints the incidents as `shown` says, as the in-memory replay does. On a
/// terminal, a progress bar shows the bytes read out of the input files'
/// size (a spinner with the bytes and lines read for standard input).
pub fn run(
    db: &Path,
    files: &[PathBuf],
    now: Option<Timestamp>,
    config: Config,
    shown: Shown,
    batch_lines: u64,
) -> anyhow::Result<()> {
    // The input file stays, so a power loss that undoes the last commits is
    // repaired by replaying it again: NORMAL durability (see Durability).
    let options = WriterOptions { durability: Durability::Normal, ..WriterOptions::default() };
    let mut writer = Writer::open_with(db, config, options)?;
    let restored = writer.restore_stats();
    if restored.no_longer_valid > 0 {
        eprintln!(
            "lifewatch: warning: {} stored events are no longer valid and were skipped while restoring",
            restored.no_longer_valid
        );
    }
    let mut totals = ReplayTotals::default();
    let inputs = inputs_or_stdin(files);
    let progress = ReadProgress::new(
        progress::wanted(shown.listing == Listing::Quiet, io::stderr().is_terminal()),
        "replay",
        input::total_size(&inputs),
    );
    let mut rejections = Rejections::to_stderr(shown.listing, progress.progress().clone());
    let read = AtomicU64::new(0);
    // Lines are read and parsed on a second thread (see pipeline.rs) while
    // this one applies them and commits. The pipeline cannot stop early:
    // after a failed commit the rest of the input is read and ignored, and
    // the error is reported below.
    let mut failure: Option<lifewatch_store::StoreError> = None;
    let mut origin = String::new();
    for_each_parsed(&inputs, &read, |line| {
        if failure.is_some() {
            return;
        }
        let fed = match line.result {
            Ok(event) => writer.feed_event(line.raw, event),
            Err(rejection) => {
                // A line over the size limit was not kept (that is the point
                // of the limit): its rejection records its origin and length.
                origin.clear();
                let _ = write!(origin, "{}:{}", line.input, line.number);
                writer.reject(line.raw, rejection, &origin);
                Fed::Rejected(rejection.clone())
            }
        };
        totals.lines += 1;
        if totals.lines % PROGRESS_LINES == 0 {
            progress.update(totals.lines, read.load(Ordering::Relaxed));
            rejections.flush();
        }
        match fed {
            Fed::Accepted => totals.accepted += 1,
            Fed::Duplicate => totals.duplicates += 1,
            Fed::Rejected(rejection) => rejections.reject(&mut totals, line.input, line.number, &rejection),
        }
        // The batch is written on the store's thread while this one
        // applies the next.
        if totals.lines % batch_lines == 0
            && let Err(error) = writer.commit_in_background()
        {
            failure = Some(error);
        }
    })?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    if let Some(now) = now.or(writer.engine().latest_event_time()) {
        writer.tick(now);
    }
    progress.progress().set_message(|| "committing the last batch".to_string());
    writer.commit()?;
    progress.progress().finish();
    // After the commit: standard error failing must not lose the last batch.
    rejections.finish()?;
    // Closing copies the WAL into the database file: start on it while the
    // incidents are printed.
    writer.checkpoint_soon();
    let engine = writer.engine();
    totals.entities = engine.entity_count();
    print_incidents(engine, shown)?;
    crate::commands::replay::report(&totals)?;
    Ok(())
}
