//! `rebuild`: refolds the log into a fresh engine and compares it with the
//! stored projections.

use std::cell::OnceCell;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::Config;
use lifewatch_store::{Store, StoreError, Writer, WriterOptions};

use crate::commands::{ConfigArg, DbArg};
use crate::progress::{Measure, Progress};

/// The `Examples:` section of `lifewatch rebuild --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch rebuild --db /tmp/lifewatch.db
  lifewatch rebuild --db /tmp/lifewatch.db --repair";

/// `lifewatch rebuild` arguments.
#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    db: DbArg,
    /// Replace what differs with what the log gives (takes the writer lock).
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// `lifewatch rebuild`.
pub fn main(args: RebuildArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, args.config.load()?.engine, args.repair)
}

/// Compares, and with `repair` replaces what differs (taking the writer
/// lock). Exit 1 when anything differed. On a terminal, a progress bar on
/// standard error shows the events of the log refolded out of the total,
/// then the comparison.
pub fn run(db: &Path, config: Config, repair: bool) -> anyhow::Result<ExitCode> {
    // The bar starts when the store knows how many events the log holds.
    let progress = OnceCell::new();
    let mut refolded = |done: u64, total: u64| {
        progress
            .get_or_init(|| Progress::on_terminal(false, "rebuild", Measure::Count("events"), Some(total)))
            .set_position(done);
    };
    let comparing = || {
        if let Some(progress) = progress.get() {
            progress.set_message(|| "comparing".to_string());
        }
    };
    let differences = if repair {
        // Repairing never creates a database: a mistyped path is an error.
        if !db.exists() {
            return Err(StoreError::NotFound { path: db.to_path_buf() }.into());
        }
        let mut writer =
            Writer::open_with_progress(db, config, WriterOptions::default(), Some(&mut refolded))?;
        comparing();
        writer.repair()?
    } else {
        let store = Store::open_read_only(db)?;
        store.snapshot(|store| {
            let (engine, _) = store.restore_with_progress(config, &mut refolded)?;
            comparing();
            store.compare(&engine)
        })?
    };
    if let Some(progress) = progress.get() {
        progress.finish();
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    const SHOWN: usize = 50;
    for difference in differences.iter().take(SHOWN) {
        // A difference names entity ids and states read from the database.
        writeln!(out, "{}", crate::output::terminal_safe(&difference.to_string()))?;
    }
    if differences.len() > SHOWN {
        writeln!(out, "… and {} more", differences.len() - SHOWN)?;
    }
    if differences.is_empty() {
        writeln!(out, "rebuild: the stored projections are identical to what the log gives")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let what =
        if repair { "replaced with what the log gives" } else { "run rebuild --repair to replace them" };
    writeln!(
        out,
        "rebuild: {} differences between the stored projections and the log; {what}",
        differences.len()
    )?;
    out.flush()?;
    Ok(ExitCode::FAILURE)
}
