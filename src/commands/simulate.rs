//! `lifewatch simulate`: a realistic event stream, to a file or standard
//! output, or paced live to NATS (`--nats`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifewatch_core::Timestamp;
use lifewatch_nats::{CreateStreams, NatsConfig, Outgoing, Publisher};

use crate::commands::{parse_duration, parse_time};
use crate::config::AppConfig;
use crate::error::UsageError;
use crate::live::{self, NatsFlags, runtime, shutdown_signal};

/// The `Examples:` section of `lifewatch simulate --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch simulate --seed 7 --accounts 50 --faults --out /tmp/sim.jsonl
  lifewatch simulate --faults | lifewatch replay --format table
  lifewatch simulate --nats nats://127.0.0.1:4222 --rate 200 --duration 30s

simulate reads no NATS_URL or LIFEWATCH_NATS_URL: here --nats switches from printing
to publishing live traffic, which an environment variable must not do unseen.";

/// `lifewatch simulate` arguments.
#[derive(Args)]
pub struct SimulateArgs {
    /// Seed of the pseudo-random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many accounts to simulate (about 10 events each).
    #[arg(long, default_value_t = 100)]
    accounts: u64,
    /// Inject faults: stuck entities, failures, illegal transitions, quota
    /// breaches, outages, duplicates and malformed lines.
    #[arg(long)]
    faults: bool,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time of the first event (RFC 3339; default 2026-11-27T00:00:00Z).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    start: Option<Timestamp>,
    /// Publish live traffic to NATS instead of writing a file: the simulator's
    /// events in order, each timed at the wall clock when sent.
    #[command(flatten)]
    nats: NatsFlags,
    /// With --nats: events per second.
    #[arg(long, value_name = "EVENTS_PER_S", default_value_t = 100.0)]
    rate: f64,
    /// With --nats: how long to publish (e.g. 30s, 5m).
    #[arg(long, value_name = "D", default_value = "1m", value_parser = parse_duration)]
    duration: Duration,
    /// With --nats: configuration file whose `[nats]` section gives connection options.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `lifewatch simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let SimulateArgs { seed, accounts, faults, out, start, nats, rate, duration, config } = args;
    let mut options = lifewatch_sim::SimulateOptions { seed, accounts, faults, ..Default::default() };
    if let Some(start) = start {
        options.start = start.unix_nanos().div_euclid(1_000_000_000);
    }
    if nats.url.is_some() {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(UsageError::Option {
                option: "--rate",
                message: "must be a positive number of events per second".into(),
            }
            .into());
        }
        let config = AppConfig::load(config.as_deref())?;
        let nats = nats.nats_config(&config.nats)?;
        live::init_logging(live::LogFormat::Human);
        // Live traffic needs more accounts than a file: enough for the whole run.
        options.accounts = options.accounts.max((rate * duration.as_secs_f64() / 10.0) as u64 + 10);
        simulate_live(nats, options, rate, duration)?;
        return Ok(ExitCode::SUCCESS);
    }
    let stats = match out {
        Some(path) => {
            let file =
                std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = io::BufWriter::with_capacity(256 * 1024, file);
            let stats = lifewatch_sim::generate(options, &mut writer)?;
            writer.flush().with_context(|| format!("cannot write {}", path.display()))?;
            stats
        }
        None => {
            let mut writer = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
            let stats = lifewatch_sim::generate(options, &mut writer)?;
            writer.flush()?;
            stats
        }
    };
    eprintln!(
        "simulate: {} events, {} duplicates, {} malformed lines",
        stats.events, stats.duplicates, stats.malformed
    );
    Ok(ExitCode::SUCCESS)
}

/// `lifewatch simulate --nats`: publishes the simulator's stream at `rate`
/// events per second for `duration`, each event timed at the wall clock when
/// it is sent (the simulator's order, live times), with `Nats-Msg-Id` = event
/// id. Malformed lines go to `lifecycle.invalid.<n>.malformed` so that the
/// monitor rejects and keeps them.
fn simulate_live(
    nats: NatsConfig,
    options: lifewatch_sim::SimulateOptions,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        let client = lifewatch_nats::connect(&nats.connect, Duration::from_secs(30)).await?;
        let jetstream = lifewatch_nats::publishing_context(client.clone(), Duration::from_secs(10));
        lifewatch_nats::ensure_streams(&jetstream, &nats.streams, CreateStreams::IfMissing).await?;
        let mut publisher = Publisher::new(jetstream, 4_096);
        let started = tokio::time::Instant::now();
        let end = started + duration;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut sent: u64 = 0;
        let mut simulator = lifewatch_sim::Simulator::new(options);
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        // A signal stops it at once, also while it waits for the server
        // (a full window of unacknowledged messages, a server that is gone):
        // it must never outlive whoever started it.
        let mut stopped = false;
        loop {
            let due = started + interval.mul_f64(sent as f64);
            if due >= end {
                break;
            }
            tokio::select! {
                () = &mut shutdown => { stopped = true; break }
                () = tokio::time::sleep_until(due) => {}
            }
            let Some(line) = simulator.next() else { break };
            let now = lifewatch_nats::wall_clock().context("the system clock is out of range")?;
            let payload = retime(&line.line, now);
            let subject =
                line.subject.clone().unwrap_or_else(|| format!("lifecycle.invalid.{sent}.malformed"));
            let message = Outgoing { subject, message_id: line.id.clone(), payload: payload.into() };
            tokio::select! {
                published = publisher.publish(message) => published?,
                () = &mut shutdown => { stopped = true; break }
            }
            sent += 1;
        }
        if stopped {
            eprintln!("simulate: stopped by a signal after {sent} messages (their acknowledgements not awaited)");
            return anyhow::Ok(());
        }
        let totals = tokio::select! {
            totals = publisher.finish() => totals?,
            () = &mut shutdown => {
                eprintln!("simulate: stopped by a signal after {sent} messages (their acknowledgements not awaited)");
                return anyhow::Ok(());
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "simulate: {sent} messages in {seconds:.1}s ({:.0}/s): {} stored, {} duplicates",
            sent as f64 / seconds.max(1e-9),
            totals.stored,
            totals.duplicates
        );
        anyhow::Ok(())
    })
}

/// The line with its `"time":"..."` value replaced by `now` (RFC 3339 UTC,
/// milliseconds). Lines without a time are returned unchanged.
fn retime(line: &str, now: lifewatch_core::Timestamp) -> String {
    const KEY: &str = "\"time\":\"";
    let Some(start) = line.find(KEY).map(|index| index + KEY.len()) else { return line.to_string() };
    let Some(length) = line[start..].find('"') else { return line.to_string() };
    format!("{}{}{}", &line[..start], format_millis(now), &line[start + length..])
}

fn format_millis(time: lifewatch_core::Timestamp) -> String {
    let text = time.to_string();
    // Timestamp prints RFC 3339 UTC with as many fractional digits as needed;
    // trim to milliseconds for tidy events.
    match (text.find('.'), text.strip_suffix('Z')) {
        (Some(dot), Some(body)) if body.len() > dot + 4 => format!("{}Z", &body[..dot + 4]),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retime_replaces_only_the_time() {
        let now = lifewatch_core::Timestamp::parse_rfc3339("2026-11-27T12:00:00.123456Z").unwrap();
        let line = r#"{"id":"a","time":"2020-01-01T00:00:00Z","data":{}}"#;
        assert_eq!(retime(line, now), r#"{"id":"a","time":"2026-11-27T12:00:00.123Z","data":{}}"#);
        assert_eq!(retime(r#"{"id":"a"}"#, now), r#"{"id":"a"}"#);
    }
}
