//! The one place the commands render what they print: tables for people
//! (one renderer, [`Table`], which makes every cell [`terminal_safe`]) and
//! JSON Lines for tools (serde structs, one per line).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use clap::ValueEnum;
use comfy_table::{Attribute, Cell, CellAlignment, Color, presets};
use lifewatch_core::{IncidentRecord, Severity};
use serde::Serialize;

/// How records are printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    /// One JSON record per line (SPEC.md section 4), for tools.
    Jsonl,
    /// Aligned columns for people; coloured on a terminal unless NO_COLOR is set.
    Table,
}

/// `text` with every character that a terminal would act on rather than
/// show written as `\u{..}`: C0 controls (ESC, BEL, CR, LF, TAB…), DEL, C1
/// controls, and the bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), which reorder what follows them on screen. Event fields
/// are untrusted: raw, an ESC sequence could clear the screen or set the
/// window title, and a CR or LF could forge a table row.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(safe, "\\u{{{:x}}}", u32::from(c));
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// Whether tables on standard output are coloured: on a terminal, unless
/// NO_COLOR is set.
pub fn colour_stdout() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A table for people: left-aligned columns two spaces apart, a header line,
/// no borders. Every cell goes through [`terminal_safe`] as it is added, so
/// no caller can print an untrusted string raw.
pub struct Table {
    table: comfy_table::Table,
    columns: usize,
    colour: bool,
}

impl Table {
    /// An empty table with these column names, uncoloured.
    pub fn new(header: &[&str]) -> Table {
        let mut table = comfy_table::Table::new();
        table.load_style(presets::NOTHING);
        table.set_header(header.iter().map(|name| Cell::new(terminal_safe(name))));
        Table { table, columns: header.len(), colour: false }
    }

    /// Colours cells added with [`Table::row_with_severity`] when `colour`.
    pub fn coloured(mut self, colour: bool) -> Table {
        self.colour = colour;
        self
    }

    /// Adds a row.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.add(cells, None);
    }

    /// Adds a row whose cell `column` shows `severity`, in its colour when
    /// the table is coloured.
    pub fn row_with_severity<S: AsRef<str>>(
        &mut self,
        cells: impl IntoIterator<Item = S>,
        column: usize,
        severity: Severity,
    ) {
        self.add(cells, Some((column, severity)));
    }

    fn add<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>, painted: Option<(usize, Severity)>) {
        let row = cells.into_iter().enumerate().map(|(index, text)| {
            let cell = Cell::new(terminal_safe(text.as_ref())).set_alignment(CellAlignment::Left);
            match painted {
                Some((column, severity)) if column == index && self.colour => paint(cell, severity),
                _ => cell,
            }
        });
        self.table.add_row(row);
    }

    /// Writes the table; lines carry no trailing spaces.
    pub fn write(mut self, out: &mut impl Write) -> io::Result<()> {
        if self.colour {
            // Colour the text of a cell, not the padding after it.
            self.table.enforce_styling().style_text_only();
        } else {
            self.table.force_no_tty();
        }
        let last = self.columns.saturating_sub(1);
        for (index, column) in self.table.column_iter_mut().enumerate() {
            column.set_padding((0, if index == last { 0 } else { 2 }));
        }
        for line in self.table.lines() {
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn paint(cell: Cell, severity: Severity) -> Cell {
    match severity {
        Severity::Critical => cell.fg(Color::DarkRed).add_attribute(Attribute::Bold),
        Severity::Error => cell.fg(Color::DarkRed),
        Severity::Warning => cell.fg(Color::DarkYellow),
        Severity::Info => cell.fg(Color::DarkCyan),
    }
}

/// A cell of at most 40 characters: a subject may be any length in a
/// rejected input, and one must not push the table off the screen.
pub fn shorten(text: &str) -> String {
    const LONGEST: usize = 40;
    if text.chars().count() <= LONGEST {
        return text.to_string();
    }
    let mut short: String = text.chars().take(LONGEST - 1).collect();
    short.push('…');
    short
}

/// Writes `value` as one line of JSON.
pub fn write_json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes records to standard output in `format`, one at a time for JSON
/// Lines so that a million incidents never sit in memory as records at once.
pub fn print_record_stream(records: impl Iterator<Item = IncidentRecord>, format: Format) -> io::Result<()> {
    let stdout = io::stdout();
    let colour = colour_stdout();
    let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    match format {
        Format::Jsonl => {
            for record in records {
                write_json_line(&mut out, &record)?;
            }
        }
        Format::Table => write_incident_table(&mut out, &records.collect::<Vec<_>>(), colour)?,
    }
    out.flush()
}

/// The table of incident `records`, then how many there are and how many are open.
pub fn write_incident_table(
    out: &mut impl Write,
    records: &[IncidentRecord],
    colour: bool,
) -> io::Result<()> {
    let mut table = Table::new(&[
        "OPENED", "RESOLVED", "SEVERITY", "KIND", "ENTITY", "STATE", "OWNER", "COUNT", "SUMMARY",
    ])
    .coloured(colour);
    for record in records {
        let cells = [
            record.opened_at.to_string(),
            record.resolved_at.map_or_else(|| "open".to_string(), |at| at.to_string()),
            record.severity.to_string(),
            record.kind.to_string(),
            format!("{} {}", record.entity.entity_type, record.entity.id),
            record.state.clone().unwrap_or_else(|| "-".to_string()),
            record.owner.clone(),
            record.count.to_string(),
            record.summary.clone(),
        ];
        table.row_with_severity(cells, 2, record.severity);
    }
    table.write(out)?;
    writeln!(
        out,
        "{}, {} open",
        plural(records.len(), "incident"),
        records.iter().filter(|r| r.resolved_at.is_none()).count()
    )
}

/// A count with its noun, as a person writes it: "1 incident", "2
/// incidents", "1 entity", "3 entities".
pub fn plural(count: usize, noun: &str) -> String {
    match (count, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{count} {stem}ies"),
        _ => format!("{count} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_a_person_writes_them() {
        assert_eq!(plural(1, "incident"), "1 incident");
        assert_eq!(plural(0, "incident"), "0 incidents");
        assert_eq!(plural(2, "entity"), "2 entities");
        assert_eq!(plural(1, "entity"), "1 entity");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(terminal_safe("acc_1"), Cow::Borrowed("acc_1"));
        assert_eq!(terminal_safe("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(terminal_safe("\x1b]0;title\x07"), "\\u{1b}]0;title\\u{7}");
        assert_eq!(terminal_safe("row\r\nforged\t"), "row\\u{d}\\u{a}forged\\u{9}");
        assert_eq!(terminal_safe("\u{7f}\u{9b}\u{85}"), "\\u{7f}\\u{9b}\\u{85}");
        assert_eq!(terminal_safe("\u{202e}cba\u{2066}\u{2069}"), "\\u{202e}cba\\u{2066}\\u{2069}");
        assert_eq!(terminal_safe("région → ok"), "région → ok");
    }

    #[test]
    fn only_the_severity_is_coloured_and_escapes_in_it_are_still_escaped() {
        let write = |colour: bool| {
            let mut table = Table::new(&["SEVERITY", "SUMMARY"]).coloured(colour);
            table.row_with_severity(["critical", "x\x1b[2J"], 0, Severity::Critical);
            let mut out = Vec::new();
            table.write(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(write(false), "SEVERITY  SUMMARY\ncritical  x\\u{1b}[2J\n");
        let coloured = write(true);
        assert_eq!(coloured.matches('\x1b').count(), 3, "bold, red and reset around one cell: {coloured:?}");
        assert!(coloured.contains("critical\x1b[0m  x\\u{1b}[2J\n"), "{coloured:?}");
    }

    #[test]
    fn cells_are_aligned_two_spaces_apart_and_escaped() {
        let mut table = Table::new(&["A", "LONGER", "LAST"]);
        table.row(["x\ny", "1", ""]);
        table.row(["abc", "\x1b[2J", "tail"]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "A        LONGER     LAST\nx\\u{a}y  1\nabc      \\u{1b}[2J  tail\n");
    }
}
