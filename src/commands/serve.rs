//! `lifewatch serve`: the dashboard, the JSON API, `/metrics` and the health
//! probes over a database, read-only (next to a running writer, or over a
//! copy). `run --listen` serves the same next to the live monitor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lifewatch_store::Store;

use crate::commands::{ConfigArg, DbArg};
use crate::config::AppConfig;
use crate::live::{self, LogFormat, runtime, shutdown_signal};

/// The `Examples:` section of `lifewatch serve --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null
  lifewatch serve --db /tmp/lifewatch.db            # then open http://127.0.0.1:9464/
  LIFEWATCH_WEB_TOKEN=s3cret lifewatch serve --db /tmp/lifewatch.db --listen 0.0.0.0:9464
  curl -s 'http://127.0.0.1:9464/api/incidents?status=open&limit=5'

--listen left out: `web.listen` of the configuration (127.0.0.1:9464). With a token
(LIFEWATCH_WEB_TOKEN or `web.token`) every route but /healthz and /readyz requires
`Authorization: Bearer <token>`; a browser opens /?access_token=<token> once.";

/// `lifewatch serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    /// Address and port to listen on (default: `web.listen`, 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    config: ConfigArg,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

/// `lifewatch serve`: until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { db, listen, config, log_format } = args;
    let app = config.load()?;
    // Refuse a missing or foreign database now, with the store's message,
    // rather than on the first request.
    drop(Store::open_read_only(&db.db)?);
    live::init_logging(log_format);
    let listen = listen.unwrap_or(app.web.listen);
    let probe = probe(&app, Arc::new(lifewatch_nats::Telemetry::new()));
    let web = web_config(&db.db, &app, config.config.as_deref(), Some(probe));
    runtime()?.block_on(async move {
        let listener = lifewatch_web::bind(listen).await?;
        let bound = listener.local_addr().context("the listening socket has no address")?;
        announce(bound, web.token.is_some());
        lifewatch_web::serve(listener, web, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Says where the dashboard is, on standard error and in the log.
pub fn announce(bound: SocketAddr, token: bool) {
    let url = format!("http://{bound}/");
    tracing::info!(%url, token, "serving the dashboard, the API and /metrics");
    eprintln!("lifewatch: dashboard at {url}{}", if token { " (bearer token required)" } else { "" });
}

/// `/metrics` and `/readyz` from the process's telemetry: the live
/// monitor's (`run --listen`) or a read-only server's (`serve`).
pub struct TelemetryProbe {
    pub telemetry: Arc<lifewatch_nats::Telemetry>,
    pub max_outbox_stall: std::time::Duration,
}

impl lifewatch_web::Probe for TelemetryProbe {
    fn metrics(&self, store: &Store) -> Result<(String, &'static str), String> {
        let text = self.telemetry.encode(Some(store)).map_err(|error| format!("{error:#}"))?;
        Ok((text, lifewatch_nats::CONTENT_TYPE))
    }

    fn ready(&self) -> Result<(), String> {
        match self.telemetry.readiness(self.max_outbox_stall) {
            lifewatch_nats::Readiness::Ready => Ok(()),
            lifewatch_nats::Readiness::NotReady(reason) => Err(reason),
        }
    }
}

/// The probe of `app`'s `[web]` settings over `telemetry`.
pub fn probe(app: &AppConfig, telemetry: Arc<lifewatch_nats::Telemetry>) -> Arc<dyn lifewatch_web::Probe> {
    let stall = app.web.ready_outbox_stall.as_nanos().max(0);
    Arc::new(TelemetryProbe {
        telemetry,
        max_outbox_stall: std::time::Duration::from_nanos(u64::try_from(stall).unwrap_or(u64::MAX)),
    })
}

/// The web server's settings from the application configuration.
pub fn web_config(
    db: &Path,
    app: &AppConfig,
    config_path: Option<&Path>,
    probe: Option<Arc<dyn lifewatch_web::Probe>>,
) -> lifewatch_web::WebConfig {
    let mut web = lifewatch_web::WebConfig::new(PathBuf::from(db));
    web.engine = app.engine.clone();
    web.runbook_root = crate::config::runbook_root(config_path);
    web.token = app.web.token.clone();
    web.probe = probe;
    web
}
