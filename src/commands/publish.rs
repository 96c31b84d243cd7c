//! `lifewatch publish`: the emitter tool. Reads event files, validates each
//! line, publishes each event to its subject with `Nats-Msg-Id` = event id,
//! and reports how many JetStream stored and how many it dropped as
//! duplicates.

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
  lifewatch publish --nats nats://127.0.0.1:4222 --raw fixtures/bad-input.jsonl";

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
    let nats = args.nats.nats_config(&config.nats)?;
    publish(nats, args.files, args.raw)?;
    Ok(ExitCode::SUCCESS)
}

/// Pending acknowledgements at most; enough to keep the server busy.
const MAX_IN_FLIGHT: usize = 8_192;

/// A line read and checked, ready to publish.
enum Prepared {
    Publish(Outgoing),
    Skipped { source: String, line: u64, why: String },
}

/// Publishes the lines of `files` (in order; `-` is standard input). Invalid
/// lines are reported and skipped, unless `raw`, which sends them as they are
/// (to test how a monitor rejects them): to the subject their `type` and
/// `subject` attributes name when they have them, else to
/// `lifecycle.invalid.<line>.malformed`.
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
        let client = lifewatch_nats::connect(&nats.connect, Duration::from_secs(30)).await?;
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

fn prepare(bytes: &[u8], raw: bool, source: &str, number: u64) -> Prepared {
    match parse_event(bytes) {
        Ok(event) => Prepared::Publish(Outgoing {
            subject: event.nats_subject(),
            message_id: Some(event.id.to_string()),
            payload: bytes.to_vec().into(),
        }),
        Err(rejection) if !raw => {
            Prepared::Skipped { source: source.to_string(), line: number, why: rejection.to_string() }
        }
        Err(_) => {
            let (subject, message_id) = raw_subject(bytes, number);
            Prepared::Publish(Outgoing { subject, message_id, payload: bytes.to_vec().into() })
        }
    }
}

/// Where an invalid line goes with `--raw`, and its `Nats-Msg-Id`: as close
/// to its own subject as its attributes allow.
fn raw_subject(bytes: &[u8], number: u64) -> (String, Option<String>) {
    let value: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    let text = |key: &str| {
        value.as_ref().and_then(|value| value.get(key)).and_then(|value| value.as_str()).map(str::to_string)
    };
    let id = text("id").filter(|id| !id.is_empty() && id.len() <= lifewatch_core::MAX_ID_BYTES);
    let subject = match (text("type"), text("subject")) {
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
    };
    (subject, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_subjects_follow_the_attributes() {
        let (subject, id) = raw_subject(br#"{"id":"x1","type":"project.exploded","subject":"prj_1"}"#, 7);
        assert_eq!(subject, "lifecycle.project.prj_1.exploded");
        assert_eq!(id.as_deref(), Some("x1"));
        let (subject, id) = raw_subject(b"{torn", 7);
        assert_eq!(subject, "lifecycle.invalid.7.malformed");
        assert_eq!(id, None);
        let (subject, _) = raw_subject(br#"{"type":"a.b","subject":"x.y >"}"#, 1);
        assert_eq!(subject, "lifecycle.a.x_y__.b");
    }
}
