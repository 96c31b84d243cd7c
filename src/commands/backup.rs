//! `backup`: a consistent copy of a database, safe while a writer runs.

use std::path::Path;
use std::process::ExitCode;

use lifewatch_store::Store;

/// Writes the copy, which must not exist yet, and says how to check it.
pub fn run(db: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(db)?;
    store.backup(out)?;
    let bytes = std::fs::metadata(out).map(|metadata| metadata.len()).unwrap_or(0);
    println!(
        "backup: wrote {} ({bytes} bytes); check it with: lifewatch verify --db {}",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
