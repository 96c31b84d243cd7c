//! `backup`: a consistent copy of a database, safe while a writer runs.

use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use lifewatch_store::Store;

use crate::commands::DbArg;

/// The `Examples:` section of `lifewatch backup --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch backup --db /tmp/lifewatch.db --out /tmp/lifewatch-backup.db
  lifewatch verify --db /tmp/lifewatch-backup.db";

/// `lifewatch backup` arguments.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    db: DbArg,
    /// The copy to write; it must not exist.
    #[arg(long)]
    out: PathBuf,
}

/// `lifewatch backup`.
pub fn main(args: BackupArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, &args.out)
}

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
