//! The one place the commands render what they print: tables for people
//! (one renderer, [`Table`], which makes every cell [`terminal_safe`]) and
//! JSON Lines for tools (serde structs, one per line).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use clap::ValueEnum;
use comfy_table::{Attribute, Cell, CellAlignment, Color, presets};
use lifewatch_core::{Duration, IncidentRecord, Severity, Timestamp};
use serde::Serialize;

/// How records are printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    /// One JSON object per line, for tools that read a stream.
    Jsonl,
    /// One JSON document (an array of the same objects), for scripts.
    Json,
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

/// How an incident table is laid out: `wide` shows every column and whole
/// summaries; `clock` is the instant the table is shown at, for how long
/// open incidents have been open (the store's clock, or replay's end).
#[derive(Clone, Copy, Default, Debug)]
pub struct TableView {
    /// Every column, nothing cut (`--wide`).
    pub wide: bool,
    /// The instant open incidents are aged at.
    pub clock: Option<Timestamp>,
}

/// The width an incident table fits in by default (`--wide` lifts it).
pub const TABLE_WIDTH: usize = 120;

/// Writes records to standard output in `format`, one at a time for JSON
/// Lines so that a million incidents never sit in memory as records at once.
pub fn print_record_stream(
    records: impl Iterator<Item = IncidentRecord>,
    format: Format,
    view: TableView,
) -> io::Result<()> {
    let stdout = io::stdout();
    let colour = colour_stdout();
    let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    match format {
        Format::Jsonl => {
            for record in records {
                write_json_line(&mut out, &record)?;
            }
        }
        Format::Json => write_json_array(&mut out, records)?,
        Format::Table => write_incident_table(&mut out, &records.collect::<Vec<_>>(), colour, view)?,
    }
    out.flush()
}

/// Writes `items` as one JSON array, one element a line, without holding
/// them all: `-o json` for scripts that want a single document.
pub fn write_json_array<T: Serialize>(
    out: &mut impl Write,
    items: impl Iterator<Item = T>,
) -> io::Result<()> {
    out.write_all(b"[")?;
    for (index, item) in items.enumerate() {
        out.write_all(if index == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, &item)?;
    }
    out.write_all(b"\n]\n")
}

/// A duration as a person reads it: its two largest units, rounded down
/// (`2h42m`, `3d4h`, `45s`, `0s`); negative durations as `0s`.
pub fn rounded_duration(duration: Duration) -> String {
    let seconds = duration.as_nanos().max(0) / 1_000_000_000;
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(size, _)| seconds >= *size) else {
        return "0s".to_string();
    };
    let mut text = String::new();
    let mut rest = seconds;
    for (size, name) in &units[first..(first + 2).min(units.len())] {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            let _ = write!(text, "{count}{name}");
        }
    }
    text
}

/// `text` cut to `width` characters, the last one `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The table of incident `records`, then how many there are and how many
/// are open, and the runbook of each kind shown. By default it fits in
/// [`TABLE_WIDTH`] columns: the status with how long the incident has
/// been open (as of `view.clock`) or how long it lasted, and the summary
/// cut to the room left; `view.wide` adds the opening and resolving times,
/// the entity, state, count and runbook, and shows whole summaries.
pub fn write_incident_table(
    out: &mut impl Write,
    records: &[IncidentRecord],
    colour: bool,
    view: TableView,
) -> io::Result<()> {
    let status = |record: &IncidentRecord| match (record.resolved_at, view.clock) {
        (Some(resolved), _) => format!("resolved {}", rounded_duration(resolved.since(record.opened_at))),
        (None, Some(clock)) => format!("open {}", rounded_duration(clock.since(record.opened_at))),
        (None, None) => "open".to_string(),
    };
    if view.wide {
        let mut table = Table::new(&[
            "ID", "OPENED", "RESOLVED", "STATUS", "SEVERITY", "KIND", "ENTITY", "STATE", "OWNER", "COUNT",
            "RUNBOOK", "SUMMARY",
        ])
        .coloured(colour);
        for record in records {
            let cells = [
                record.id.clone(),
                record.opened_at.to_string(),
                record.resolved_at.map_or_else(|| "-".to_string(), |at| at.to_string()),
                status(record),
                record.severity.to_string(),
                record.kind.to_string(),
                format!("{} {}", record.entity.entity_type, record.entity.id),
                record.state.clone().unwrap_or_else(|| "-".to_string()),
                record.owner.clone(),
                record.count.to_string(),
                record.runbook.clone(),
                record.summary.clone(),
            ];
            table.row_with_severity(cells, 4, record.severity);
        }
        table.write(out)?;
    } else {
        let rows: Vec<[String; 6]> = records
            .iter()
            .map(|record| {
                [
                    record.id.clone(),
                    status(record),
                    record.severity.to_string(),
                    record.kind.to_string(),
                    terminal_safe(&record.owner).into_owned(),
                    terminal_safe(&record.summary).into_owned(),
                ]
            })
            .collect();
        let header = ["ID", "STATUS", "SEVERITY", "KIND", "OWNER", "SUMMARY"];
        // Every column but the summary at its widest, two spaces apart;
        // the summary gets the rest of the width, at least 20 characters.
        let fixed: usize = (0..5)
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].chars().count())
                    .chain([header[column].len()])
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .sum();
        let room = TABLE_WIDTH.saturating_sub(fixed).max(20);
        let mut table = Table::new(&header).coloured(colour);
        for (record, mut row) in records.iter().zip(rows) {
            row[5] = fit(&row[5], room);
            table.row_with_severity(row, 2, record.severity);
        }
        table.write(out)?;
    }
    let open = records.iter().filter(|record| record.resolved_at.is_none()).count();
    match view.clock {
        Some(clock) => writeln!(out, "{}, {open} open as of {clock}", plural(records.len(), "incident"))?,
        None => writeln!(out, "{}, {open} open", plural(records.len(), "incident"))?,
    }
    if !view.wide {
        // The runbook of each kind shown, once, rather than a wide column
        // repeating the same path on every row.
        let runbooks: std::collections::BTreeSet<(&str, &str)> =
            records.iter().map(|record| (record.kind.as_str(), record.runbook.as_str())).collect();
        for (kind, runbook) in runbooks {
            writeln!(out, "runbook for {kind}: {}", terminal_safe(runbook))?;
        }
    }
    Ok(())
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
    fn durations_are_rounded_to_two_units() {
        let d = |seconds: i64| rounded_duration(Duration::from_nanos(seconds * 1_000_000_000 + 120_000_000));
        assert_eq!(d(0), "0s");
        assert_eq!(d(45), "45s");
        assert_eq!(d(2 * 3600 + 41 * 60 + 56), "2h41m");
        assert_eq!(d(3 * 86_400 + 4 * 3600 + 59), "3d4h");
        assert_eq!(d(86_400 + 30), "1d", "a zero second unit is left out");
        assert_eq!(d(600), "10m");
        assert_eq!(rounded_duration(Duration::from_nanos(-5)), "0s");
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("région lointaine", 8), "région …");
    }

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
