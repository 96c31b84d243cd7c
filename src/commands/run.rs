//! `lifewatch run`: the live monitor on NATS JetStream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifewatch_nats::{CreateStreams, MonitorOptions};

use crate::config::AppConfig;
use crate::live::{self, LogFormat, NatsFlags, runtime, shutdown_signal};

/// The `Examples:` section of `lifewatch run --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch run --nats nats://127.0.0.1:4222 --db /tmp/lifewatch-live.db
  LIFEWATCH_NATS_PASSWORD=secret lifewatch run --nats nats://127.0.0.1:4222 --user monitor \\
      --db /tmp/lifewatch-live.db --log-format json";

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
}

/// `lifewatch run`: until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs { nats, db, config, no_create, log_format } = args;
    let config = AppConfig::load(config.as_deref())?;
    let nats = nats.nats_config(&config.nats)?;
    live::init_logging(log_format);
    let options = MonitorOptions {
        nats,
        create: if no_create { CreateStreams::Never } else { CreateStreams::IfMissing },
        allowed_lateness: config.live.allowed_lateness,
        max_future: config.live.max_future,
    };
    let engine_config = config.engine;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let mut writer = tokio::task::block_in_place(|| lifewatch_store::Writer::open(&db, engine_config))
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
    })?;
    Ok(ExitCode::SUCCESS)
}
