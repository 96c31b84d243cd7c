//! `rejected`: the rejected inputs kept.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::RejectReason;
use lifewatch_store::Store;
use lifewatch_store::query::{self, RejectedFilter};

use crate::commands::{DbArg, parse_reason};
use crate::output::{self, Format, Table};

/// The `Examples:` section of `lifewatch rejected --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/bad-input.jsonl --db /tmp/lifewatch-bad.db > /dev/null
  lifewatch rejected --db /tmp/lifewatch-bad.db --reason malformed_json";

/// `lifewatch rejected` arguments.
#[derive(Args)]
pub struct RejectedArgs {
    #[command(flatten)]
    db: DbArg,
    /// Only this reason (e.g. malformed_json).
    #[arg(long, value_parser = parse_reason)]
    reason: Option<RejectReason>,
    /// Include events already re-driven.
    #[arg(long)]
    all: bool,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch rejected`.
pub fn main(args: RejectedArgs) -> anyhow::Result<ExitCode> {
    let filter = RejectedFilter { reason: args.reason, subject: None, include_redriven: args.all };
    run(&args.db.db, &filter, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the rejected inputs `filter` selects, oldest first.
pub fn run(db: &Path, filter: &RejectedFilter, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let rejected = query::rejected(&store, filter)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for rejection in &rejected {
                output::write_json_line(&mut out, rejection)?;
            }
        }
        Format::Json => output::write_json_array(&mut out, rejected.iter())?,
        Format::Table => {
            let mut table = Table::new(&["ID", "ORIGIN", "REASON", "SUBJECT", "DETAIL"]);
            for rejection in &rejected {
                table.row([
                    rejection.id.to_string(),
                    rejection.origin.clone(),
                    rejection.reason.clone(),
                    rejection.subject.as_deref().map_or_else(|| "-".to_string(), output::shorten),
                    rejection.detail.clone(),
                ]);
            }
            table.write(&mut out)?;
            let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
            for rejection in &rejected {
                *by_reason.entry(rejection.reason.as_str()).or_default() += 1;
            }
            let reasons: Vec<String> =
                by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            writeln!(out, "{} rejected ({})", rejected.len(), output::terminal_safe(&reasons.join(", ")))?;
        }
    }
    out.flush()?;
    Ok(())
}
