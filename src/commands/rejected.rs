//! `rejected`: the rejected inputs kept.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use lifewatch_store::Store;
use lifewatch_store::query::{self, RejectedFilter};

use crate::output::{self, Format, Table};

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
