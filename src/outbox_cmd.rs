//! `lifewatch outbox`: the incident transitions the NATS server refused for
//! good, which the monitor set aside so that they no longer hold back the
//! others.

use std::io::{self, Write};
use std::path::Path;

use lifewatch_store::SetAsideEntry;
use serde::Serialize;

use crate::output::Format;

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
pub fn list(db: &Path, format: Format) -> anyhow::Result<()> {
    let entries = lifewatch_store::set_aside_outbox(db)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    write(&mut out, &entries, format)?;
    out.flush()?;
    Ok(())
}

fn write(out: &mut impl Write, entries: &[SetAsideEntry], format: Format) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for entry in entries {
                let line = Line {
                    id: entry.id,
                    incident_id: &entry.incident_id,
                    transition: &entry.transition,
                    subject: &entry.subject,
                    reason: &entry.reason,
                    set_aside_at: entry.set_aside_at.to_string(),
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Table => {
            let header =
                ["ID", "INCIDENT", "TRANSITION", "SUBJECT", "SET ASIDE AT", "REASON"].map(String::from);
            let rows: Vec<[String; 6]> = entries
                .iter()
                .map(|entry| {
                    [
                        entry.id.to_string(),
                        entry.incident_id.clone(),
                        entry.transition.clone(),
                        // Subjects stored before schema 8 were not cleaned
                        // and can hold anything a region name held.
                        printable(&entry.subject),
                        entry.set_aside_at.to_string(),
                        printable(&entry.reason),
                    ]
                })
                .collect();
            let mut widths = header.clone().map(|name| name.chars().count());
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let mut line = String::new();
                for (cell, width) in row.iter().zip(widths) {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
                }
                writeln!(out, "{}", line.trim_end())?;
            }
            writeln!(out, "{} set aside", entries.len())?;
        }
    }
    Ok(())
}

/// `text` with control characters written as `\u{..}`, so that a table
/// cannot be forged or the terminal driven by what a server or an event said.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
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
