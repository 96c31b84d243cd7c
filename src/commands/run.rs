//! `lifewatch run`: the live monitor on NATS JetStream.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifewatch_nats::{CreateStreams, MonitorOptions};

use crate::config::AppConfig;
use crate::error::UsageError;
use crate::live::{self, LogFormat, NatsFlags, runtime, shutdown_signal};

/// The `Examples:` section of `lifewatch run --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch run --nats nats://127.0.0.1:4222 --db /tmp/lifewatch-live.db
  LIFEWATCH_NATS_PASSWORD=secret lifewatch run --nats nats://127.0.0.1:4222 --user monitor \\
      --db /tmp/lifewatch-live.db --log-format json
  export NATS_URL=nats://127.0.0.1:4222; lifewatch run --db /tmp/lifewatch-live.db

--nats left out: LIFEWATCH_NATS_URL, else NATS_URL, else `nats.url` of the configuration.
A server that is down at start is waited for, each retry logged, until it answers or
SIGINT/SIGTERM; refused credentials and TLS failures stop at once (exit 1).";

/// `lifewatch run` arguments.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    nats: NatsFlags,
    /// The SQLite event store (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only bind to existing streams; never create them.
    #[arg(long)]
    no_create: bool,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Also serve the dashboard, the JSON API, /metrics, /healthz and /readyz on
    /// this address (`--listen` alone: `web.listen`, 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", num_args = 0..=1)]
    listen: Option<Option<std::net::SocketAddr>>,
}

/// Refuses a database path whose directory does not exist, naming that
/// directory: SQLite's own message ("unable to open database file") does not
/// say which part of the path is wrong.
pub fn check_parent(db: &Path) -> Result<(), UsageError> {
    let parent = match db.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()),
    };
    if parent.is_dir() {
        return Ok(());
    }
    Err(UsageError::Option {
        option: "--db",
        message: format!("the directory {} does not exist (create it first)", parent.display()),
    })
}

/// `lifewatch run`: until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs { nats, db, config: config_path, no_create, log_format, listen } = args;
    let config = AppConfig::load(config_path.as_deref())?;
    let nats = nats.with_env_url().nats_config(&config.nats)?;
    check_parent(&db)?;
    live::init_logging(log_format);
    let options = MonitorOptions {
        nats,
        create: if no_create { CreateStreams::Never } else { CreateStreams::IfMissing },
        allowed_lateness: config.live.allowed_lateness,
        max_future: config.live.max_future,
        telemetry: listen.is_some().then(|| std::sync::Arc::new(lifewatch_nats::Telemetry::new())),
    };
    let engine_config = config.engine.clone();
    let runtime = runtime()?;
    runtime.block_on(async move {
        let mut writer = tokio::task::block_in_place(|| lifewatch_store::Writer::open(&db, engine_config))
            .with_context(|| format!("cannot open the event store {}", db.display()))?;
        let notifying = !config.notifications.teams.is_empty();
        if notifying {
            writer.set_delivery_router(crate::deliver::router(&config.notifications));
            for channel in config.notifications.channels.values() {
                for (key, variable) in channel.unset_secrets() {
                    tracing::warn!(
                        channel = %channel.name,
                        key,
                        variable,
                        "a channel's secret is not set: its deliveries will be given up (dead) until the monitor runs with it"
                    );
                }
            }
        }
        let restored = writer.restore_stats();
        tracing::info!(
            db = %db.display(),
            events = restored.events,
            ticks = restored.ticks,
            incidents = writer.engine().incident_count(),
            "engine restored from the event log"
        );
        // The web server reads the database the monitor writes; it answers
        // (/readyz: not ready) while NATS is awaited, and stops when the
        // monitor has stopped.
        let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
        let web = match listen {
            None => None,
            Some(listen) => {
                let listener = lifewatch_web::bind(listen.unwrap_or(config.web.listen)).await?;
                let bound = listener.local_addr().context("the listening socket has no address")?;
                let probe = options
                    .telemetry
                    .clone()
                    .map(|telemetry| crate::commands::serve::probe(&config, telemetry));
                let web = crate::commands::serve::web_config(&db, &config, config_path.as_deref(), probe);
                crate::commands::serve::announce(bound, web.token.is_some());
                Some(tokio::spawn(lifewatch_web::serve(listener, web, async move {
                    let _ = web_stopped.await;
                })))
            }
        };
        // Notifications go out from the delivery rows, on a task of their
        // own, until the monitor has stopped.
        let (stop_delivery, delivery_stopped) = tokio::sync::oneshot::channel::<()>();
        // `nats` channels publish through the monitor's client, once connected.
        let (nats_for_delivery, nats_client) = tokio::sync::watch::channel(None);
        let delivery = notifying.then(|| {
            let dashboard =
                config.delivery.dashboard_url.clone().or_else(|| {
                    listen.map(|listen| format!("http://{}", listen.unwrap_or(config.web.listen)))
                });
            tokio::spawn(crate::deliver::run_worker(
                db.clone(),
                config.notifications.clone(),
                config.delivery.policy,
                config.delivery.timeout,
                dashboard,
                nats_client,
                async move {
                    let _ = delivery_stopped.await;
                },
            ))
        });
        // A daemon waits for its server, logging each retry, rather than
        // exiting while NATS restarts; a signal still stops it.
        let client = tokio::select! {
            client = lifewatch_nats::connect(&options.nats.connect, Duration::MAX) => client?,
            () = shutdown_signal() => return anyhow::Ok(()),
        };
        let _ = nats_for_delivery.send(Some(client.clone()));
        let totals = lifewatch_nats::run_monitor(client, &options, &mut writer, shutdown_signal()).await;
        let _ = stop_web.send(());
        let _ = stop_delivery.send(());
        if let Some(delivery) = delivery {
            match delivery.await {
                Ok(Err(error)) => {
                    tracing::error!(error = %format!("{error:#}"), "the delivery worker failed")
                }
                Err(error) => tracing::error!(%error, "the delivery worker task failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(web) = web {
            match web.await {
                Ok(Err(error)) => tracing::warn!(error = %error, "the web server failed"),
                Err(error) => tracing::warn!(error = %error, "the web server task failed"),
                Ok(Ok(())) => {}
            }
        }
        let totals = totals?;
        tracing::debug!(?totals, "totals");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
