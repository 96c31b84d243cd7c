//! `lifewatch replay`: run event files through the engine offline.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use lifewatch_core::{Engine, Outcome, RejectReason, Rejection, Timestamp};

use crate::pipeline::for_each_parsed;

/// A rejected line: where it was and why.
pub struct RejectedLine {
    /// The input's name.
    pub source: String,
    /// The 1-based line number in that input.
    pub line: u64,
    /// Why.
    pub rejection: Rejection,
}

/// Totals of one replay.
#[derive(Default)]
pub struct ReplayTotals {
    /// Non-blank lines read.
    pub lines: u64,
    /// Events applied.
    pub accepted: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Lines rejected.
    pub rejected: Vec<RejectedLine>,
    /// Entities tracked at the end.
    pub entities: usize,
}

/// Feeds every line of `inputs`, in order, to `engine` as one stream.
pub fn feed(engine: &mut Engine, inputs: &[PathBuf]) -> anyhow::Result<ReplayTotals> {
    let mut totals = ReplayTotals::default();
    // Progress for people: only when standard error is a terminal, so logs and
    // tests see nothing but the summary.
    let progress = io::stderr().is_terminal();
    let default_input = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() { &default_input[..] } else { inputs };
    for_each_parsed(inputs, |line| {
        totals.lines += 1;
        if progress && totals.lines % (1 << 18) == 0 {
            eprint!("\rreplay: {} lines read…", totals.lines);
        }
        match line.result {
            Ok(event) => match engine.handle_event(event) {
                Outcome::Accepted => totals.accepted += 1,
                Outcome::Duplicate => totals.duplicates += 1,
            },
            Err(rejection) => totals.rejected.push(RejectedLine {
                source: line.input.to_string(),
                line: line.number,
                rejection: rejection.clone(),
            }),
        }
    })?;
    if progress && totals.lines >= 1 << 18 {
        eprint!("\r\x1b[K");
    }
    Ok(totals)
}

/// Moves the engine's clock to the end of the replay: `now`, or the latest
/// accepted event time.
pub fn finish(engine: &mut Engine, now: Option<Timestamp>) {
    if let Some(now) = now.or(engine.latest_event_time()) {
        engine.handle_time(now);
    }
}

/// The summary on standard error: every rejected line, then the totals.
pub fn report(totals: &ReplayTotals) -> io::Result<()> {
    let stderr = io::stderr();
    let mut err = io::BufWriter::new(stderr.lock());
    for rejected in &totals.rejected {
        writeln!(err, "{}:{}: rejected: {}", rejected.source, rejected.line, rejected.rejection)?;
    }
    let mut by_reason: BTreeMap<RejectReason, u64> = BTreeMap::new();
    for rejected in &totals.rejected {
        *by_reason.entry(rejected.rejection.reason).or_default() += 1;
    }
    let reasons: Vec<String> = by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
    writeln!(
        err,
        "replay: {} lines, {} accepted, {} duplicates, {} rejected{reasons}; {} entities",
        totals.lines,
        totals.accepted,
        totals.duplicates,
        totals.rejected.len(),
        totals.entities
    )?;
    err.flush()
}
