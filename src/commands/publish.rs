//! `lifewatch publish`: the emitter tool. Reads event files, validates each
//! line, publishes each event to its subject with `Nats-Msg-Id` = event id,
//! and reports how many JetStream stored and how many it dropped as
//! duplicates. With `--raw`, a line that fails validation is sent too, with a
//! `Nats-Msg-Id` of its own (see [`raw_message_id`]), never its event id.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifewatch_core::{MAX_LINE_BYTES, parse_event};
use lifewatch_nats::{CreateStreams, NatsConfig, Outgoing, Publisher};

use crate::config::AppConfig;
use crate::input::{Input, Line, for_each_line, is_blank};
use crate::live::NatsFlags;

/// The `Examples:` section of `lifewatch publish --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch publish --nats nats://127.0.0.1:4222 fixtures/launch-day.jsonl
  lifewatch publish --nats nats://127.0.0.1:4222 --raw fixtures/bad-input.jsonl
  NATS_URL=nats://127.0.0.1:4222 lifewatch publish fixtures/launch-day.jsonl

--nats left out: LIFEWATCH_NATS_URL, else NATS_URL, else `nats.url` of the configuration.
A server that cannot be reached within a few seconds is an error naming it (exit 1).";

/// `lifewatch publish` arguments.
#[derive(Args)]
pub struct PublishArgs {
    /// Event files (JSON Lines); `-` for standard input.
    files: Vec<PathBuf>,
    #[command(flatten)]
    nats: NatsFlags,
    /// Publish invalid lines too, unchanged (they are skipped and reported otherwise).
    #[arg(long)]
    raw: bool,
    /// Configuration file whose `[nats]` section gives connection options.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `lifewatch publish`.
pub fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(args.config.as_deref())?;
    let nats = args.nats.with_env_url().nats_config(&config.nats)?;
    publish(nats, args.files, args.raw)?;
    Ok(ExitCode::SUCCESS)
}

/// How long `publish`, a one-shot command, tries to reach its server: long
/// enough for a server that is starting, short enough that a wrong address
/// is reported at once rather than after a silent wait.
const CONNECT_PATIENCE: Duration = Duration::from_secs(3);

/// Pending acknowledgements at most; enough to keep the server busy.
const MAX_IN_FLIGHT: usize = 8_192;

/// A line read and checked, ready to publish (also what `demo` sends).
pub enum Prepared {
    Publish(Outgoing),
    Skipped { source: String, line: u64, why: String },
}

/// Publishes the lines of `files` (in order; `-` is standard input). Invalid
/// lines are reported and skipped, unless `raw`, which sends them as they are
/// (to test how a monitor rejects them): to the subject their `type` and
/// `subject` attributes name when they have them, else to
/// `lifecycle.invalid.<line>.malformed`, with the `Nats-Msg-Id` of
/// [`raw_message_id`].
fn publish(nats: NatsConfig, files: Vec<PathBuf>, raw: bool) -> anyhow::Result<()> {
    let files = if files.is_empty() { vec![PathBuf::from("-")] } else { files };
    let runtime = crate::live::runtime()?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Prepared>(16_384);
    // Reading and parsing happen on a plain thread; the async side only publishes.
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        for path in &files {
            let input = Input::open(path)?;
            let name = input.name.clone();
            let mut closed = false;
            for_each_line(input.into_reader(), |number, line| {
                if closed {
                    return;
                }
                let prepared = match line {
                    Line::TooLong(length) => {
                        let why = format!("too_large: line of {length} bytes exceeds {MAX_LINE_BYTES}");
                        Prepared::Skipped { source: name.clone(), line: number, why }
                    }
                    Line::Text(bytes) if is_blank(bytes) => return,
                    Line::Text(bytes) => prepare(bytes, raw, &name, number),
                };
                closed = sender.blocking_send(prepared).is_err();
            })
            .with_context(|| format!("cannot read {name}"))?;
        }
        Ok(())
    });

    let result = runtime.block_on(async move {
        let client = lifewatch_nats::connect(&nats.connect, CONNECT_PATIENCE).await?;
        let jetstream = lifewatch_nats::publishing_context(client.clone(), Duration::from_secs(10));
        lifewatch_nats::ensure_streams(&jetstream, &nats.streams, CreateStreams::IfMissing).await?;
        let mut publisher = Publisher::new(jetstream, MAX_IN_FLIGHT);
        let started = std::time::Instant::now();
        let (mut sent, mut skipped) = (0u64, 0u64);
        while let Some(prepared) = receiver.recv().await {
            match prepared {
                Prepared::Publish(message) => {
                    publisher.publish(message).await?;
                    sent += 1;
                }
                Prepared::Skipped { source, line, why } => {
                    skipped += 1;
                    eprintln!("{source}:{line}: skipped: {why}");
                }
            }
        }
        let totals = publisher.finish().await?;
        client.flush().await.ok();
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "publish: {sent} published in {seconds:.1}s ({:.0}/s): {} stored, {} duplicates; {skipped} invalid lines skipped",
            sent as f64 / seconds,
            totals.stored,
            totals.duplicates
        );
        anyhow::Ok(())
    });
    match reader.join() {
        Ok(read) => read?,
        Err(_) => anyhow::bail!("the reading thread panicked"),
    }
    result
}

pub fn prepare(bytes: &[u8], raw: bool, source: &str, number: u64) -> Prepared {
    match parse_event(bytes) {
        Ok(event) => Prepared::Publish(Outgoing {
            subject: event.nats_subject(),
            message_id: Some(event.id.to_string()),
            payload: bytes.to_vec().into(),
        }),
        Err(rejection) if !raw => {
            Prepared::Skipped { source: source.to_string(), line: number, why: rejection.to_string() }
        }
        Err(_) => Prepared::Publish(Outgoing {
            subject: raw_subject(bytes, number),
            message_id: Some(raw_message_id(source, number, bytes)),
            payload: bytes.to_vec().into(),
        }),
    }
}

/// The `Nats-Msg-Id` of a line that failed validation: `raw:` and the 128-bit
/// xxh3 hash, in hex, of where the line was read (input name and line number)
/// and of its bytes.
///
/// It must not be the id the line names. lifewatch does not take the id of a
/// rejected event, so the corrected event that follows with the same id must
/// be accepted; but JetStream drops, within its duplicate window, any message
/// whose `Nats-Msg-Id` it has already stored, so the correction would never
/// reach the monitor and live mode would differ from `replay`.
///
/// It still has an id, so that a re-send after a lost acknowledgement (or
/// publishing the same file again within the window) is dropped as it is for
/// valid events. The position is part of it because `replay` rejects every
/// invalid line, even one identical to an earlier line (the fault stream of
/// `simulate` has repeated `null` lines): with the bytes alone, the broker
/// would keep only the first of them, and the live rejected list would be
/// shorter than replay's.
fn raw_message_id(source: &str, number: u64, bytes: &[u8]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // The input name's length first, so that no name and line can run into another's.
    hasher.update(&(source.len() as u64).to_le_bytes());
    hasher.update(source.as_bytes());
    hasher.update(&number.to_le_bytes());
    hasher.update(bytes);
    format!("raw:{:032x}", hasher.digest128())
}

/// Where an invalid line goes with `--raw`: as close to its own subject as
/// its attributes allow.
fn raw_subject(bytes: &[u8], number: u64) -> String {
    let value: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    let text = |key: &str| {
        value.as_ref().and_then(|value| value.get(key)).and_then(|value| value.as_str()).map(str::to_string)
    };
    match (text("type"), text("subject")) {
        (Some(event_type), Some(entity)) if !entity.is_empty() => {
            let (entity_type, name) = event_type.split_once('.').unwrap_or((&event_type, "unknown"));
            format!(
                "lifecycle.{}.{}.{}",
                lifewatch_nats::subject_token(entity_type),
                lifewatch_nats::subject_token(&entity),
                lifewatch_nats::subject_token(name)
            )
        }
        _ => format!("lifecycle.invalid.{number}.malformed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_subjects_follow_the_attributes() {
        let subject = raw_subject(br#"{"id":"x1","type":"project.exploded","subject":"prj_1"}"#, 7);
        assert_eq!(subject, "lifecycle.project.prj_1.exploded");
        assert_eq!(raw_subject(b"{torn", 7), "lifecycle.invalid.7.malformed");
        assert_eq!(raw_subject(br#"{"type":"a.b","subject":"x.y >"}"#, 1), "lifecycle.a.x_y__.b");
    }

    /// The message id of an invalid line never is the id it names, so that
    /// the corrected event with that id is not dropped by the broker.
    #[test]
    fn an_invalid_line_is_sent_with_an_id_of_its_own_and_its_correction_with_the_event_id() {
        let bad = br#"{"specversion":"1","id":"x1","source":"s","type":"account.created","subject":"acc_1","time":"2026-11-27T00:00:00Z","data":{"plan":"free"}}"#;
        let good = br#"{"specversion":"1.0","id":"x1","source":"s","type":"account.created","subject":"acc_1","time":"2026-11-27T00:00:00Z","data":{"plan":"free"}}"#;
        let id_of = |bytes: &[u8], number| match prepare(bytes, true, "events.jsonl", number) {
            Prepared::Publish(message) => message.message_id,
            Prepared::Skipped { why, .. } => panic!("skipped with --raw: {why}"),
        };
        let bad_id = id_of(bad, 1).unwrap_or_default();
        assert!(bad_id.starts_with("raw:") && bad_id.len() == 36, "{bad_id}");
        assert_eq!(id_of(good, 2).as_deref(), Some("x1"));
        assert!(matches!(prepare(bad, false, "events.jsonl", 1), Prepared::Skipped { line: 1, .. }));
    }

    /// The same line at the same place has the same id (a re-send is a
    /// duplicate); an identical line elsewhere is another message, as it is
    /// another rejection for `replay`.
    #[test]
    fn raw_message_ids_follow_the_bytes_and_the_position() {
        let id = raw_message_id("a.jsonl", 3, b"null");
        assert_eq!(id, raw_message_id("a.jsonl", 3, b"null"));
        assert_ne!(id, raw_message_id("a.jsonl", 4, b"null"));
        assert_ne!(id, raw_message_id("b.jsonl", 3, b"null"));
        assert_ne!(id, raw_message_id("a.jsonl", 3, b"true"));
        assert_ne!(raw_message_id("a", 1, b"x"), raw_message_id("", 1, b"ax"));
    }
}
