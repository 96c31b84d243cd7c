//! `incidents`: the stored incident records, filtered.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{IncidentKind, Status, Timestamp};
use lifewatch_store::Store;
use lifewatch_store::query::{self, IncidentQuery};

use crate::commands::{DbArg, parse_kind, parse_time};
use crate::output::{self, Format};

/// The `Examples:` section of `lifewatch incidents --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch incidents --db /tmp/lifewatch.db --status open --format jsonl";

/// `lifewatch incidents` arguments.
#[derive(Args)]
pub struct IncidentsArgs {
    #[command(flatten)]
    db: DbArg,
    /// Only open or only resolved incidents.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// Only this team's incidents.
    #[arg(long)]
    owner: Option<String>,
    /// Only this kind (e.g. stuck, quota_breach).
    #[arg(long, value_parser = parse_kind)]
    kind: Option<IncidentKind>,
    /// Only incidents open at some moment since this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `--status` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Open,
    Resolved,
}

/// `lifewatch incidents`.
pub fn main(args: IncidentsArgs) -> anyhow::Result<ExitCode> {
    let IncidentsArgs { db, status, owner, kind, since, format } = args;
    let status = status.map(|status| match status {
        StatusArg::Open => Status::Open,
        StatusArg::Resolved => Status::Resolved,
    });
    let query = IncidentQuery { status, owner, kind, since, ..Default::default() };
    run(&db.db, &query, format)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the incidents `query` selects, in its order.
pub fn run(db: &Path, query: &IncidentQuery, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let page = query::incidents(&store, query)?;
    output::print_record_stream(page.incidents.into_iter(), format)?;
    Ok(())
}
