//! lifewatch's on-call surfaces over HTTP: the dashboard (server-rendered
//! HTML), the JSON API the pages and scripts use, `/metrics` and the health
//! probes.
//!
//! Everything is read from the store through `lifewatch_store::query`, the
//! same typed answers the CLI prints, so the pages, the API and the commands
//! cannot disagree. The server only reads: it runs next to the writer (`run
//! --listen`) or on its own over a database another process writes (`serve`).
//!
//! ```text
//! router ── auth (bearer token) ── security headers ── limits/timeout ── handlers
//!                                                                        │
//!                                  pool of read-only Stores ◄── spawn_blocking
//! ```

mod actions;
mod api;
mod auth;
pub mod comms;
mod error;
mod openapi;
mod pages;
mod params;
mod pool;
mod runbook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use crate::error::WebError;
pub use crate::openapi::openapi_document;
use crate::pool::StorePool;

/// The address the web server listens on when none is given: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// What a probe or a scrape asks of the process besides the store.
pub trait Probe: Send + Sync + 'static {
    /// The Prometheus text exposition, and its content type; `store` is a
    /// read-only handle for the read side's gauges.
    fn metrics(&self, store: &lifewatch_store::Store) -> Result<(String, &'static str), String>;
    /// `Ok` when the process can do its work; else the reason, one line.
    fn ready(&self) -> Result<(), String>;
}

/// How the web server is set up.
#[derive(Clone)]
pub struct WebConfig {
    /// The database to read.
    pub db: PathBuf,
    /// The engine configuration: deadlines and owners of the stuck report.
    pub engine: lifewatch_core::Config,
    /// Where runbook paths (`ops/runbooks/<kind>.md`) are resolved.
    pub runbook_root: PathBuf,
    /// When set, every route but `/healthz` and `/readyz` requires it as a
    /// bearer token.
    pub token: Option<String>,
    /// Metrics and readiness; `None` serves the read side's own.
    pub probe: Option<Arc<dyn Probe>>,
    /// How long one request may take.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("WebConfig")
            .field("db", &self.db)
            .field("runbook_root", &self.runbook_root)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// A configuration reading `db` with the shipped engine configuration,
    /// no token and a 10 s request timeout.
    pub fn new(db: PathBuf) -> WebConfig {
        WebConfig {
            db,
            engine: lifewatch_core::Config::shipped(),
            runbook_root: PathBuf::from("."),
            token: None,
            probe: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What every handler shares.
struct Shared {
    pool: Arc<StorePool>,
    engine: lifewatch_core::Config,
    runbook_root: PathBuf,
    token: Option<String>,
    probe: Option<Arc<dyn Probe>>,
    home_cache: pages::HomeCache,
}

type AppState = Arc<Shared>;

/// The whole application: every route with its layers.
pub fn router(config: WebConfig) -> Router {
    let state: AppState = Arc::new(Shared {
        pool: Arc::new(StorePool::new(config.db)),
        engine: config.engine,
        runbook_root: config.runbook_root,
        token: config.token,
        probe: config.probe,
        home_cache: pages::HomeCache::new(),
    });
    let guarded = Router::new()
        .route("/", get(pages::home))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/act", axum::routing::post(actions::form))
        .route("/entities/{id}", get(pages::entity))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/app.js", get(pages::script))
        .merge(api::routes())
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .merge(guarded)
        .with_state(state)
        .layer(axum::middleware::from_fn(auth::bounded_query))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        // Fastest: at the default level, gzip of the home page took 44 % of
        // the server's CPU under load (perf, 1M-event database); fastest
        // still shrinks its HTML about 8-fold.
        .layer(CompressionLayer::new().quality(tower_http::CompressionLevel::Fastest))
        .layer(TraceLayer::new_for_http())
}

/// Binds `listen`; the error names the address.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, WebError> {
    tokio::net::TcpListener::bind(listen).await.map_err(|source| WebError::Bind { listen, source })
}

/// Serves `config` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await.map_err(WebError::Serve)
}
