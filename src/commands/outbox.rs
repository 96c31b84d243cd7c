//! `lifewatch outbox`: the incident transitions the NATS server refused for
//! good, which the monitor set aside so that they no longer hold back the
//! others.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use lifewatch_store::SetAsideEntry;
use serde::Serialize;

use crate::commands::DbArg;
use crate::output::{self, Format, Table};

/// The `Examples:` section of `lifewatch outbox --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch outbox --db /tmp/lifewatch.db
  lifewatch outbox --db /tmp/lifewatch.db --format jsonl";

/// `lifewatch outbox` arguments.
#[derive(Args)]
pub struct OutboxArgs {
    #[command(flatten)]
    db: DbArg,
    /// Output format: table for people, jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch outbox`.
pub fn main(args: OutboxArgs) -> anyhow::Result<ExitCode> {
    run(&args.db.db, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// One line of `--format jsonl`.
#[derive(Serialize)]
struct Line<'a> {
    id: i64,
    incident_id: &'a str,
    transition: &'a str,
    subject: &'a str,
    reason: &'a str,
    set_aside_at: String,
}

/// Lists the outbox entries set aside in `db`, oldest first.
pub fn run(db: &Path, format: Format) -> anyhow::Result<()> {
    let entries = lifewatch_store::set_aside_outbox(db)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    write(&mut out, &entries, format)?;
    out.flush()?;
    Ok(())
}

/// The JSON line of `entry`.
fn line(entry: &SetAsideEntry) -> Line<'_> {
    Line {
        id: entry.id,
        incident_id: &entry.incident_id,
        transition: &entry.transition,
        subject: &entry.subject,
        reason: &entry.reason,
        set_aside_at: entry.set_aside_at.to_string(),
    }
}

fn write(out: &mut impl Write, entries: &[SetAsideEntry], format: Format) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for entry in entries {
                output::write_json_line(out, &line(entry))?;
            }
        }
        Format::Json => output::write_json_array(out, entries.iter().map(line))?,
        Format::Table => {
            // Subjects stored before schema 8 were not cleaned and can hold
            // anything a region name held; the table escapes every cell.
            let mut table =
                Table::new(&["ID", "INCIDENT", "TRANSITION", "SUBJECT", "SET ASIDE AT", "REASON"]);
            for entry in entries {
                table.row([
                    entry.id.to_string(),
                    entry.incident_id.clone(),
                    entry.transition.clone(),
                    entry.subject.clone(),
                    entry.set_aside_at.to_string(),
                    entry.reason.clone(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "{} set aside", entries.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> SetAsideEntry {
        SetAsideEntry {
            id: 7,
            incident_id: "inc_1".to_string(),
            transition: "opened".to_string(),
            subject: "incidents.regional_outage.region.eu west\u{1b}[2J".to_string(),
            reason: "publish failed: invalid subject".to_string(),
            set_aside_at: lifewatch_core::Timestamp::from_unix_nanos(1_800_000_000_000_000_000),
        }
    }

    #[test]
    fn table_and_json_lines() {
        let mut table = Vec::new();
        write(&mut table, &[entry()], Format::Table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.starts_with("ID  INCIDENT  TRANSITION  SUBJECT"), "{table}");
        assert!(table.contains("eu west\\u{1b}[2J"), "{table}");
        assert!(!table.contains('\u{1b}'));
        assert!(table.ends_with("1 set aside\n"), "{table}");
        let mut jsonl = Vec::new();
        write(&mut jsonl, &[entry()], Format::Jsonl).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&jsonl).unwrap();
        assert_eq!(value["id"], 7);
        assert_eq!(value["incident_id"], "inc_1");
        assert_eq!(value["reason"], "publish failed: invalid subject");
        assert_eq!(value["set_aside_at"], "2027-01-15T08:00:00Z");
    }
}
