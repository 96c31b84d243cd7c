//! `lifewatch tail`: incident transitions from the INCIDENTS stream as they
//! arrive, as the published JSON or as table rows, flushed one by one.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use lifewatch_core::Timestamp;
use lifewatch_nats::{Tail, TailMessage, TailStart};
use serde_json::Value;

use crate::commands::parse_time;
use crate::config::AppConfig;
use crate::live::{NatsFlags, runtime, shutdown_signal};
use crate::output::{Table, colour_stdout};

/// The `Examples:` section of `lifewatch tail --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch tail --nats nats://127.0.0.1:4222
  NATS_URL=nats://127.0.0.1:4222 lifewatch tail --from-start --format jsonl
  lifewatch tail --since 2026-11-27T12:00:00Z --count 10

--nats left out: LIFEWATCH_NATS_URL, else NATS_URL, else `nats.url` of the configuration.
tail reads through an ordered consumer of its own, which the server forgets when tail
stops: it never takes messages from the monitor, never leaves a durable consumer behind
and never creates a stream. Stops on SIGINT or SIGTERM (exit 0), or after --count messages.";

/// How `tail` prints each message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// One row per transition (the header once, at the start).
    #[default]
    Table,
    /// The published message body, one per line.
    Jsonl,
}

/// `lifewatch tail` arguments.
#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    nats: NatsFlags,
    /// Start with the oldest transition the stream still holds (default: only new ones).
    #[arg(long, conflicts_with = "since")]
    from_start: bool,
    /// Start with the transitions stored at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Exit after this many messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: TailFormat,
    /// Configuration file whose `[nats]` section gives connection options.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// How long `tail` tries to reach its server before giving up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(3);

/// `lifewatch tail`.
pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(args.config.as_deref())?;
    let nats = args.nats.with_env_url().nats_config(&config.nats)?;
    let start = match (args.from_start, args.since) {
        (true, _) => TailStart::FromStart,
        (false, Some(time)) => TailStart::Since(time),
        (false, None) => TailStart::Now,
    };
    let (format, count) = (args.format, args.count);
    if count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    runtime()?.block_on(async move {
        let client = lifewatch_nats::connect(&nats.connect, CONNECT_PATIENCE).await?;
        let mut tail = Tail::start(client, &nats.streams, start).await?;
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut printer = Printer { format, colour: colour_stdout(), header_printed: false };
        let mut seen = 0u64;
        loop {
            let message = tokio::select! {
                () = &mut shutdown => break,
                message = tail.next() => message,
            };
            let Some(message) = message else { break };
            printer.print(&message?)?;
            seen += 1;
            if count.is_some_and(|count| seen >= count) {
                break;
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints messages one at a time, flushing after each so that a pipe sees
/// every transition as it arrives.
struct Printer {
    format: TailFormat,
    colour: bool,
    header_printed: bool,
}

/// The table's columns.
const HEADER: [&str; 8] = ["TRANSITION", "OPENED", "SEVERITY", "KIND", "ENTITY", "STATE", "OWNER", "SUMMARY"];

/// The width every cell but the last is padded to, so that rows printed one
/// at a time line up under the header (a longer cell still shows whole).
const WIDTHS: [usize; 7] = [10, 24, 8, 19, 24, 12, 16];

/// `cells` padded to [`WIDTHS`].
fn padded(cells: Vec<String>) -> Vec<String> {
    cells
        .into_iter()
        .enumerate()
        .map(|(index, cell)| match WIDTHS.get(index) {
            Some(&width) => format!("{cell:<width$}"),
            None => cell,
        })
        .collect()
}

impl Printer {
    fn print(&mut self, message: &TailMessage) -> io::Result<()> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        match self.format {
            TailFormat::Jsonl => {
                out.write_all(&message.payload)?;
                out.write_all(b"\n")?;
            }
            TailFormat::Table => {
                let header = padded(HEADER.iter().map(|name| name.to_string()).collect());
                let header: Vec<&str> = header.iter().map(String::as_str).collect();
                let mut table = Table::new(&header).coloured(self.colour);
                let (cells, severity) = row(message);
                let cells = padded(cells);
                match severity {
                    Some(severity) => table.row_with_severity(cells, 2, severity),
                    None => table.row(cells),
                }
                let mut text = Vec::new();
                table.write(&mut text)?;
                // Each message is a table of its own (it is printed as it
                // arrives); the header is shown once, above the first.
                let skip = usize::from(self.header_printed);
                for line in text.split_inclusive(|&byte| byte == b'\n').skip(skip) {
                    out.write_all(line)?;
                }
                self.header_printed = true;
            }
        }
        out.flush()
    }
}

/// The cells of one message, from its JSON: a message that is not the
/// expected shape still gets a row, with its subject and `-` elsewhere.
fn row(message: &TailMessage) -> (Vec<String>, Option<lifewatch_core::Severity>) {
    let value: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
    let incident = &value["incident"];
    let text = |value: &Value| value.as_str().map_or_else(|| "-".to_string(), str::to_string);
    let entity = match (incident["entity"]["type"].as_str(), incident["entity"]["id"].as_str()) {
        (Some(kind), Some(id)) => format!("{kind} {id}"),
        _ => message.subject.clone(),
    };
    let severity = incident["severity"].as_str().and_then(lifewatch_core::Severity::parse);
    let cells = vec![
        text(&value["transition"]),
        text(&incident["opened_at"]),
        text(&incident["severity"]),
        text(&incident["kind"]),
        entity,
        text(&incident["state"]),
        text(&incident["owner"]),
        text(&incident["summary"]),
    ];
    (cells, severity)
}
