//! `redrive`: feeds rejected inputs through validation again.

use std::path::Path;

use anyhow::Context;
use lifewatch_core::{Config, RejectReason};
use lifewatch_store::{StoreError, Writer};

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
