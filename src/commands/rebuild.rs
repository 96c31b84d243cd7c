//! `rebuild`: refolds the log into a fresh engine and compares it with the
//! stored projections.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use lifewatch_core::Config;
use lifewatch_store::{Store, StoreError, Writer};

/// Compares, and with `repair` replaces what differs (taking the writer
/// lock). Exit 1 when anything differed.
pub fn run(db: &Path, config: Config, repair: bool) -> anyhow::Result<ExitCode> {
    let differences = if repair {
        // Repairing never creates a database: a mistyped path is an error.
        if !db.exists() {
            return Err(StoreError::NotFound { path: db.to_path_buf() }.into());
        }
        let mut writer = Writer::open(db, config)?;
        writer.repair()?
    } else {
        let store = Store::open_read_only(db)?;
        store.snapshot(|store| {
            let (engine, _) = store.restore(config)?;
            store.compare(&engine)
        })?
    };
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
