//! `report stuck`: what is stuck at an instant, grouped by owner and state,
//! oldest first.

use std::io::{self, Write};
use std::path::Path;

use lifewatch_core::{Config, Timestamp};
use lifewatch_store::Store;
use lifewatch_store::query::{self, JudgedAt, StuckEntity};

use crate::output::{self, Format, Table};

/// Prints the stuck report at `now` (default: the database's clock).
pub fn stuck(db: &Path, now: Option<Timestamp>, config: &Config, format: Format) -> anyhow::Result<()> {
    let store = Store::open_read_only(db)?;
    let Some(report) = query::stuck_report(&store, config, now)? else {
        eprintln!("lifewatch: {} holds no events yet: nothing is stuck", db.display());
        return Ok(());
    };
    // Which clock the report is judged at is said on every run: an on-call
    // engineer must never read "nothing is stuck" without knowing "as of when".
    let clock = match report.judged_at {
        JudgedAt::Given => "--now",
        JudgedAt::StoreClock => "the store's clock",
        JudgedAt::LatestCommittedEvent => {
            eprintln!(
                "lifewatch: the store's clock has not been set ({} holds committed events but no clock: \
                 a `replay --db` is still running or was interrupted); judging at the latest committed \
                 event time, {}",
                db.display(),
                report.now
            );
            "the latest committed event"
        }
    };
    if format == Format::Jsonl {
        eprintln!(
            "lifewatch: stuck at {} ({clock}): {}",
            report.now,
            output::plural(report.entities.len(), "entity")
        );
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Jsonl => {
            for item in &report.entities {
                output::write_json_line(&mut out, item)?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "stuck at {} ({clock}): {}",
                report.now,
                output::plural(report.entities.len(), "entity")
            )?;
            let group = |item: &StuckEntity| (item.owner.clone(), item.entity.entity_type, item.state);
            for items in report.entities.chunk_by(|a, b| group(a) == group(b)) {
                let first = &items[0];
                writeln!(
                    out,
                    "\n{} — {} {} ({})",
                    output::terminal_safe(&first.owner),
                    first.entity.entity_type,
                    first.state,
                    items.len()
                )?;
                let mut table =
                    Table::new(&["ENTITY", "ENTERED", "PAST DEADLINE", "ACCOUNT", "REGION", "INCIDENT"]);
                for item in items {
                    table.row([
                        item.entity.id.clone(),
                        item.entered_at.to_string(),
                        item.past_deadline.to_string(),
                        item.account_id.clone().unwrap_or_else(|| "-".to_string()),
                        item.region.clone().unwrap_or_else(|| "-".to_string()),
                        item.incident_id.clone().unwrap_or_else(|| "-".to_string()),
                    ]);
                }
                table.write(&mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
