//! Writing incident records for tools (JSON Lines) and people (a table).

use std::io::{self, IsTerminal, Write};

use clap::ValueEnum;
use lifewatch_core::{IncidentRecord, Severity};

/// How records are printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    /// One JSON record per line (SPEC.md section 4), for tools.
    Jsonl,
    /// Aligned columns for people; coloured on a terminal unless NO_COLOR is set.
    Table,
}

/// Writes records to standard output in `format`, one at a time for JSON
/// Lines so that a million incidents never sit in memory as records at once.
pub fn print_record_stream(records: impl Iterator<Item = IncidentRecord>, format: Format) -> io::Result<()> {
    let stdout = io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    match format {
        Format::Jsonl => {
            for record in records {
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Table => write_table(&mut out, &records.collect::<Vec<_>>(), colour)?,
    }
    out.flush()
}

/// The table of `records`.
pub fn write_table(out: &mut impl Write, records: &[IncidentRecord], colour: bool) -> io::Result<()> {
    let header = ["OPENED", "RESOLVED", "SEVERITY", "KIND", "ENTITY", "STATE", "OWNER", "COUNT", "SUMMARY"];
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|record| {
            [
                record.opened_at.to_string(),
                record.resolved_at.map_or_else(|| "open".to_string(), |at| at.to_string()),
                record.severity.to_string(),
                record.kind.to_string(),
                format!("{} {}", record.entity.entity_type, record.entity.id),
                record.state.clone().unwrap_or_else(|| "-".to_string()),
                record.owner.clone(),
                record.count.to_string(),
                record.summary.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    write_row(out, &header.map(String::from), &widths, None)?;
    for (row, record) in rows.iter().zip(records) {
        write_row(out, row, &widths, colour.then_some(record.severity))?;
    }
    writeln!(
        out,
        "{} incidents, {} open",
        records.len(),
        records.iter().filter(|r| r.resolved_at.is_none()).count()
    )
}

fn write_row(
    out: &mut impl Write,
    cells: &[String; 9],
    widths: &[usize; 9],
    colour: Option<Severity>,
) -> io::Result<()> {
    let last = cells.len() - 1;
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let padding = width.saturating_sub(cell.chars().count());
        let painted = match (index, colour) {
            (2, Some(severity)) => {
                let code = match severity {
                    Severity::Critical => "1;31",
                    Severity::Error => "31",
                    Severity::Warning => "33",
                    Severity::Info => "36",
                };
                format!("\x1b[{code}m{cell}\x1b[0m")
            }
            _ => cell.clone(),
        };
        if index == last {
            writeln!(out, "{painted}")?;
        } else {
            write!(out, "{painted}{}  ", " ".repeat(padding))?;
        }
    }
    Ok(())
}
