//! `verify`: every check of a database for damage, read-only.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::Config;
use lifewatch_store::Store;

use crate::commands::{ConfigArg, DbArg};
use crate::output::{self, Format};

/// The `Examples:` section of `lifewatch verify --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch verify --db /tmp/lifewatch.db
  lifewatch verify --db /tmp/lifewatch.db --format jsonl";

/// `lifewatch verify` arguments.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    config: ConfigArg,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch verify`.
pub fn main(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, args.config.load()?.engine, args.format)
}

/// Prints one line per check passed (`ok`) and one per problem found; exit 1
/// when any check found a problem.
pub fn run(db: &Path, config: Config, format: Format) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(db)?;
    let verification = store.verify(config)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for check in &verification.checks {
                output::write_json_line(&mut out, check)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, verification.checks.iter())?,
        Format::Table => {
            for check in &verification.checks {
                if check.ok() {
                    writeln!(out, "ok    {:<12} {}", check.check, check.summary)?;
                }
                for problem in &check.problems {
                    // Problems quote ids and values read from a damaged database.
                    writeln!(out, "FAIL  {:<12} {}", check.check, output::terminal_safe(problem))?;
                }
            }
        }
    }
    let problems: usize = verification.checks.iter().map(|check| check.problems.len()).sum();
    if verification.ok() {
        if format == Format::Table {
            writeln!(out, "verify: {} is sound", output::terminal_safe(&db.display().to_string()))?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Table {
        writeln!(
            out,
            "verify: {} is damaged ({problems} {}); restore it from a backup (docs/operations.md), \
             or run rebuild --repair if only the projections differ",
            output::terminal_safe(&db.display().to_string()),
            if problems == 1 { "problem" } else { "problems" }
        )?;
    }
    out.flush()?;
    Ok(ExitCode::FAILURE)
}
