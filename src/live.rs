//! `lifewatch run` (the live monitor on NATS JetStream) and
//! `lifewatch simulate --nats` (paced live traffic), and what they share:
//! the connection flags, the log format, the runtime and the signals.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use lifewatch_core::Config;
use lifewatch_nats::{
    ConnectOverrides, CreateStreams, MonitorOptions, NatsConfig, Outgoing, Publisher, Secret,
};

/// Connection flags shared by `run`, `publish` and `simulate --nats`. Each
/// overrides the same key of the configuration's `[nats]` section.
#[derive(Args, Clone, Debug, Default)]
pub struct NatsFlags {
    /// NATS server URL(s), comma-separated (default: `nats.url` of the configuration).
    #[arg(long = "nats", value_name = "URL")]
    pub url: Option<String>,
    /// User for user/password authentication.
    #[arg(long, env = "LIFEWATCH_NATS_USER")]
    pub user: Option<String>,
    /// Password for user/password authentication (prefer the environment variable:
    /// command lines are visible to other users).
    #[arg(long, env = "LIFEWATCH_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Token authentication (prefer the environment variable).
    #[arg(long, env = "LIFEWATCH_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Credentials file (JWT and nkey seed, as issued by nsc).
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// File holding an nkey seed, for nkey authentication.
    #[arg(long, value_name = "FILE")]
    pub nkey_seed_file: Option<PathBuf>,
    /// PEM file of the CAs that sign the server certificate (turns TLS on).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl NatsFlags {
    fn overrides(&self) -> ConnectOverrides {
        ConnectOverrides {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone().map(Secret::new),
            token: self.token.clone().map(Secret::new),
            credentials: self.creds.clone(),
            nkey_seed_file: self.nkey_seed_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }

    /// The validated `[nats]` configuration with these flags applied.
    pub fn nats_config(&self, config: &Config) -> Result<NatsConfig, String> {
        NatsConfig::from_table(&config.nats, &self.overrides())
            .map_err(|error| crate::error_message(&anyhow::Error::new(error)))
    }
}

/// Log formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the tracing subscriber: logs go to standard error, filtered by
/// `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// The tokio runtime of the NATS commands: two worker threads, so that the
/// client's connection task runs while the monitor commits a batch.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Completes on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                    _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}

/// `lifewatch run`.
pub fn run(config: Config, nats: NatsConfig, db: PathBuf, no_create: bool) -> anyhow::Result<()> {
    let options = MonitorOptions {
        nats,
        create: if no_create { CreateStreams::Never } else { CreateStreams::IfMissing },
    };
    let runtime = runtime()?;
    runtime.block_on(async move {
        let mut writer = tokio::task::block_in_place(|| lifewatch_store::Writer::open(&db, config))
            .with_context(|| format!("cannot open the event store {}", db.display()))?;
        let restored = writer.restore_stats();
        tracing::info!(
            db = %db.display(),
            events = restored.events,
            ticks = restored.ticks,
            incidents = writer.engine().incident_count(),
            "engine restored from the event log"
        );
        let client = lifewatch_nats::connect(&options.nats.connect, Duration::from_secs(30)).await?;
        let totals = lifewatch_nats::run_monitor(client, &options, &mut writer, shutdown_signal()).await?;
        tracing::debug!(?totals, "totals");
        anyhow::Ok(())
    })
}

/// `lifewatch simulate --nats`: publishes the simulator's stream at `rate`
/// events per second for `duration`, each event timed at the wall clock when
/// it is sent (the simulator's order, live times), with `Nats-Msg-Id` = event
/// id. Malformed lines go to `lifecycle.invalid.<n>.malformed` so that the
/// monitor rejects and keeps them.
pub fn simulate(
    nats: NatsConfig,
    options: lifewatch_sim::SimulateOptions,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number of events per second");
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
        loop {
            let due = started + interval.mul_f64(sent as f64);
            if due >= end {
                break;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(due) => {}
            }
            let Some(line) = simulator.next() else { break };
            let now = lifewatch_nats::wall_clock().context("the system clock is out of range")?;
            let payload = retime(&line.line, now);
            let subject =
                line.subject.clone().unwrap_or_else(|| format!("lifecycle.invalid.{sent}.malformed"));
            publisher
                .publish(Outgoing { subject, message_id: line.id.clone(), payload: payload.into() })
                .await?;
            sent += 1;
        }
        let totals = publisher.finish().await?;
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
