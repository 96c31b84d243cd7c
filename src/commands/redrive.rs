//! `redrive`: feeds rejected inputs through validation again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use lifewatch_core::{Config, RejectReason};
use lifewatch_store::{StoreError, Writer};

use crate::commands::{ConfigArg, DbArg, parse_reason};

/// The `Examples:` section of `lifewatch redrive --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/bad-input.jsonl --db /tmp/lifewatch-bad.db > /dev/null
  lifewatch redrive --db /tmp/lifewatch-bad.db --reason unknown_type";

/// `lifewatch redrive` arguments.
#[derive(Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    db: DbArg,
    /// Only events rejected for this reason.
    #[arg(long, value_parser = parse_reason)]
    reason: Option<RejectReason>,
    #[command(flatten)]
    config: ConfigArg,
}

/// `lifewatch redrive`.
pub fn main(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, args.reason, args.config.load()?.engine)?;
    Ok(ExitCode::SUCCESS)
}

/// Re-drives the rejected inputs (only those of `reason`, when given) and
/// prints what became of them.
pub fn run(db: &Path, reason: Option<RejectReason>, config: Config) -> anyhow::Result<()> {
    // A repair command never creates a database: a mistyped path must not
    // look like an empty store that had nothing to re-drive.
    if !db.exists() {
        return Err(StoreError::NotFound { path: db.to_path_buf() }.into());
    }
    let mut writer = Writer::open(db, config).with_context(|| "cannot re-drive rejected events")?;
    let summary = writer.redrive(reason)?;
    println!(
        "redrive: {} tried, {} accepted into the log, {} duplicates of accepted events, {} still rejected",
        summary.tried, summary.accepted, summary.duplicates, summary.still_rejected
    );
    Ok(())
}
