//! What the NATS commands (`run`, `publish`, `simulate --nats`) share: the
//! connection flags, the log format, the runtime and the signals.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use lifewatch_nats::{ConnectKeys, NatsConfig, Secret};

use crate::error::UsageError;

/// Connection flags shared by `run`, `publish` and `simulate --nats`. Each
/// overrides the same key of the configuration's `[nats]` section.
#[derive(Args, Clone, Debug, Default)]
pub struct NatsFlags {
    /// NATS server URL(s), comma-separated: nats://, tls://, ws:// or wss://. Left out:
    /// for run, publish and tail, LIFEWATCH_NATS_URL, else NATS_URL (the nats CLI's),
    /// else `nats.url` of the configuration.
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

/// The environment variables that give the server URL when `--nats` is left
/// out, first found first: lifewatch's own, then the nats CLI's.
pub const NATS_URL_VARIABLES: [&str; 2] = ["LIFEWATCH_NATS_URL", "NATS_URL"];

impl NatsFlags {
    /// These flags with the URL taken from the environment
    /// ([`NATS_URL_VARIABLES`]) when `--nats` was left out. `run`, `publish`
    /// and `tail` use it; `simulate` does not, since there `--nats` switches
    /// from printing to publishing, which a variable must not do unseen.
    pub fn with_env_url(mut self) -> NatsFlags {
        if self.url.is_none() {
            self.url = NATS_URL_VARIABLES
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()));
        }
        self
    }

    fn overrides(&self) -> ConnectKeys {
        ConnectKeys {
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

    /// The validated `[nats]` table of the configuration with these flags applied.
    pub fn nats_config(&self, table: &toml::Table) -> Result<NatsConfig, UsageError> {
        NatsConfig::from_table(table, &self.overrides()).map_err(UsageError::Nats)
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
