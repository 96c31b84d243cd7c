//! `incidents`: the stored incident records, filtered.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{IncidentKind, Severity, Status, Timestamp};
use lifewatch_store::Store;
use lifewatch_store::query::{self, IncidentQuery};

use crate::commands::{DbArg, parse_kind, parse_time};
use crate::output::{self, Format, TableView};

/// The `Examples:` section of `lifewatch incidents --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch incidents --db /tmp/lifewatch.db --status open
  lifewatch incidents --db /tmp/lifewatch.db --severity critical --wide
  lifewatch incidents --db /tmp/lifewatch.db --owner platform-oncall -o json";

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
    /// Only this severity.
    #[arg(long, value_enum)]
    severity: Option<SeverityArg>,
    /// Only incidents whose record names this region.
    #[arg(long)]
    region: Option<String>,
    /// Only incidents about this entity (an account, project or dispute id, or
    /// a region for a regional outage).
    #[arg(long)]
    entity: Option<String>,
    /// Only incidents open at some moment since this instant: RFC 3339,
    /// `now`, or a time before now such as `-1h` or `-2d`.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    since: Option<Timestamp>,
    /// Every column and whole summaries (by default the table fits in 120
    /// columns, the summary cut to the room left).
    #[arg(long)]
    wide: bool,
    /// What standard output holds. table: columns for people, with how long
    /// each open incident has been open as of the store's clock; jsonl: one
    /// incident record per line, as in the contract; json: one array of them.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `--status` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Open,
    Resolved,
}

/// `--severity` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SeverityArg {
    Critical,
    Error,
    Warning,
    Info,
}

/// `lifewatch incidents`.
pub fn main(args: IncidentsArgs) -> anyhow::Result<ExitCode> {
    let IncidentsArgs { db, status, owner, kind, severity, region, entity, since, wide, format } = args;
    let status = status.map(|status| match status {
        StatusArg::Open => Status::Open,
        StatusArg::Resolved => Status::Resolved,
    });
    let severity = severity.map(|severity| match severity {
        SeverityArg::Critical => Severity::Critical,
        SeverityArg::Error => Severity::Error,
        SeverityArg::Warning => Severity::Warning,
        SeverityArg::Info => Severity::Info,
    });
    let query = IncidentQuery { status, owner, kind, severity, region, entity, since, ..Default::default() };
    run(&db.db, &query, format, wide)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the incidents `query` selects, in its order. When an owner or a
/// region selects nothing, says on standard error which ones the store has
/// incidents for: a mistyped team name must not read as "all clear".
pub fn run(db: &Path, query: &IncidentQuery, format: Format, wide: bool) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let page = query::incidents(&store, query)?;
    if page.incidents.is_empty() && (query.owner.is_some() || query.region.is_some()) {
        let all = query::incidents(&store, &IncidentQuery::default())?.incidents;
        if let Some(owner) = &query.owner {
            name_known("owner", owner, all.iter().map(|record| record.owner.as_str()).collect());
        }
        if let Some(region) = &query.region {
            name_known("region", region, all.iter().filter_map(|record| record.region.as_deref()).collect());
        }
    }
    let view = TableView { wide, clock: store.clock()? };
    output::print_record_stream(page.incidents.into_iter(), format, view)?;
    Ok(())
}

/// Says on standard error which values of `what` have incidents, when
/// `given` is not one of them.
fn name_known(what: &str, given: &str, known: BTreeSet<&str>) {
    if !known.contains(given) {
        let known: Vec<&str> = known.into_iter().collect();
        eprintln!(
            "lifewatch: no incidents for {what} {}; {what}s with incidents: {}",
            output::terminal_safe(&format!("{given:?}")),
            output::terminal_safe(&known.join(", "))
        );
    }
}
