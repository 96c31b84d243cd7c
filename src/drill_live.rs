//! `lifewatch drill --nats URL`: an event drill through a live monitor.
//!
//! The drill starts `lifewatch run` as a child process on a rehearsal NATS
//! server, with the configuration's channels pointed at receivers of its
//! own on loopback (each channel keeps its kind: a PagerDuty channel sends
//! PagerDuty events, a Slack channel Slack messages), publishes the
//! scenario's events with `lifewatch publish`, and waits until every
//! expectation is met or the timeout passes. The events are moved in time
//! so that the scenario ends just now: the monitor's clock (the wall clock
//! minus `[live] allowed_lateness`) is then past every deadline and
//! escalation step of the scenario, so a five-day dispute deadline takes
//! seconds. Expectations are checked against the monitor's database as the
//! offline drill checks its own, except that a notification counts only once
//! it was delivered; the time to notify is measured on the wall clock, from
//! publishing the events to the first expected channel's receiver hearing.
//!
//! The rehearsal server must be one of its own: the drill refuses a server
//! that already has the monitor's streams (it would feed a real monitor, or
//! read a real one's incidents), and deletes the streams it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration as WallDuration, Instant};

use anyhow::Context;
use lifewatch_core::{Duration, Timestamp};
use lifewatch_store::Store;

use crate::config::{AppConfig, Effective};
use crate::drill::{Check, Drill, Outcome, Scenario};

/// How to reach the rehearsal server and how long to wait.
pub struct LiveOptions {
    /// The rehearsal server.
    pub url: String,
    /// How long to wait for the expectations after publishing.
    pub timeout: WallDuration,
    /// The `--config` file, overlaid on the built-in configuration.
    pub config: Option<PathBuf>,
}

/// Requests the receivers heard: the channel (the path), when, and the body.
type Arrivals = Arc<Mutex<Vec<(String, Instant, String)>>>;

/// Runs one event drill live; alert drills are the offline ones.
pub fn run(drill: &Drill, config: &AppConfig, root: &Path, options: &LiveOptions) -> anyhow::Result<Outcome> {
    let Scenario::Events { lines, fault_at, end } = &drill.scenario else {
        return crate::drill::run(drill, config, root);
    };
    let runtime = crate::live::runtime()?;
    // async-nats builds its JetStream context within a runtime.
    let _entered = runtime.enter();
    let streams = [
        stream_name(&config.nats, "lifecycle_stream", "LIFECYCLE"),
        stream_name(&config.nats, "incidents_stream", "INCIDENTS"),
        stream_name(&config.nats, "rejected_stream", "REJECTED"),
    ];
    let client = runtime
        .block_on(async_nats::connect(options.url.as_str()))
        .with_context(|| format!("cannot connect to the rehearsal server {}", options.url))?;
    let jetstream = async_nats::jetstream::new(client);
    for name in &streams {
        if runtime.block_on(jetstream.get_stream(name)).is_ok() {
            anyhow::bail!(
                "the server at {} already has the stream {name}: a live drill needs a rehearsal server of its own \
                 (it would feed a real monitor and read its incidents)",
                options.url
            );
        }
    }
    let arrivals: Arrivals = Arc::default();
    let port = runtime.block_on(receivers(arrivals.clone()))?;
    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("drill.toml");
    std::fs::write(&config_file, rehearsal_config(options.config.as_deref(), port)?)?;
    // Move the scenario so that it ends just before the monitor's clock.
    let now = Timestamp::from_unix_nanos(
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos())
            .unwrap_or(i64::MAX),
    );
    let lateness = config.live.allowed_lateness;
    let target_end = now.saturating_sub(lateness).saturating_sub(Duration::from_seconds(2));
    let shift = target_end.since(*end);
    let events = dir.path().join("events.jsonl");
    let mut shifted = String::new();
    for line in lines {
        let mut event: serde_json::Value = serde_json::from_str(line)?;
        let time =
            event["time"].as_str().and_then(Timestamp::parse_rfc3339).context("a drill event's time")?;
        event["time"] = serde_json::Value::from(time.saturating_add(shift).to_string());
        shifted.push_str(&event.to_string());
        shifted.push('\n');
    }
    std::fs::write(&events, shifted)?;
    let db = dir.path().join("drill.db");
    let log = dir.path().join("monitor.log");
    let exe = std::env::current_exe().context("cannot find the lifewatch binary")?;
    let mut monitor = Monitor(
        Command::new(&exe)
            .args(["run", "--log-format", "json", "--nats", &options.url, "--db"])
            .arg(&db)
            .arg("--config")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start the monitor")?,
    );
    let outcome = (|| -> anyhow::Result<Outcome> {
        // The monitor creates the streams: publish once they exist.
        let started = Instant::now();
        while runtime.block_on(jetstream.get_stream(&streams[0])).is_err() {
            if started.elapsed() > WallDuration::from_secs(30) {
                anyhow::bail!("the monitor did not create its streams in 30 s: see {}", log.display());
            }
            if let Some(status) = monitor.0.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("the monitor exited ({status}): {}", text.lines().last().unwrap_or(""));
            }
            std::thread::sleep(WallDuration::from_millis(100));
        }
        let published_at = Instant::now();
        let published = Command::new(&exe)
            .args(["publish", "--nats", &options.url])
            .arg(&events)
            .output()
            .context("cannot run lifewatch publish")?;
        if !published.status.success() {
            anyhow::bail!(
                "publishing the drill's events failed: {}",
                String::from_utf8_lossy(&published.stderr)
            );
        }
        let fault = fault_at.saturating_add(shift);
        let mut checks: Vec<Check> = Vec::new();
        loop {
            if db.exists() {
                let store = Store::open_read_only(&db)?;
                checks = crate::drill::evaluate(&store, fault, drill, root, true)?;
            }
            if (!checks.is_empty() && checks.iter().all(|check| check.met))
                || published_at.elapsed() > options.timeout
            {
                break;
            }
            std::thread::sleep(WallDuration::from_millis(250));
        }
        let heard = arrivals.lock().map(|heard| heard.clone()).unwrap_or_default();
        for (check, expectation) in checks.iter_mut().zip(&drill.expectations) {
            // The first message about one of its incidents on an expected channel.
            let first = heard
                .iter()
                .filter(|(channel, _, body)| {
                    expectation.notify.contains(channel)
                        && check.incidents.iter().any(|id| body.contains(id.as_str()))
                })
                .map(|(_, at, _)| at.saturating_duration_since(published_at))
                .min();
            check.time_to_notify = first.map(|wall| {
                Duration::from_nanos(i64::try_from(wall.as_millis() * 1_000_000).unwrap_or(i64::MAX))
                    .to_string()
            });
            if !check.met && published_at.elapsed() > options.timeout {
                check.misses.push(format!("not all met {} s after publishing", options.timeout.as_secs()));
            }
        }
        let shown = drill.path.strip_prefix(root).unwrap_or(&drill.path).display().to_string();
        let passed = !checks.is_empty() && checks.iter().all(|check| check.met);
        Ok(Outcome { drill: shown, risk: drill.risk.clone(), title: drill.title.clone(), passed, checks })
    })();
    monitor.stop();
    for name in &streams {
        let _ = runtime.block_on(jetstream.delete_stream(name));
    }
    outcome
}

/// A stream's name as `[nats]` sets it, else the default.
fn stream_name(nats: &toml::Table, key: &str, default: &str) -> String {
    nats.get(key).and_then(toml::Value::as_str).unwrap_or(default).to_string()
}

/// The effective configuration with every channel pointed at the drill's
/// receivers (`http://127.0.0.1:PORT/<channel>`), its kind kept; secrets
/// are placeholders, so none need be set. Email channels become webhooks
/// to the receivers (there is no SMTP sink here); NATS channels publish on
/// the rehearsal server.
fn rehearsal_config(path: Option<&Path>, port: u16) -> anyhow::Result<String> {
    let mut table = Effective::load(path)?.table;
    if let Some(toml::Value::Array(channels)) = table.get_mut("channels") {
        for channel in channels.iter_mut() {
            let Some(channel) = channel.as_table_mut() else { continue };
            let name = channel.get("name").and_then(toml::Value::as_str).unwrap_or_default().to_string();
            let kind = channel.get("kind").and_then(toml::Value::as_str).unwrap_or_default().to_string();
            let url = toml::Value::from(format!("http://127.0.0.1:{port}/{name}"));
            for key in ["url_env", "secret_env", "routing_key_env", "password_env"] {
                channel.remove(key);
            }
            match kind.as_str() {
                "pagerduty" => {
                    channel.insert("routing_key".into(), toml::Value::from("drill-routing-key"));
                    channel.insert("url".into(), url);
                }
                "slack" | "webhook" => {
                    channel.insert("url".into(), url);
                    if channel.contains_key("secret") {
                        channel.insert("secret".into(), toml::Value::from("drill-secret"));
                    }
                }
                "email" => {
                    for key in ["smtp", "from", "to", "user", "password", "tls"] {
                        channel.remove(key);
                    }
                    channel.insert("kind".into(), toml::Value::from("webhook"));
                    channel.insert("url".into(), url);
                }
                _ => {}
            }
        }
    }
    Ok(toml::to_string(&table)?)
}

/// Starts the receivers on a free loopback port: every POST is recorded by
/// its first path segment (the channel) and answered 202 as PagerDuty does
/// (Slack and webhooks take any 2xx).
async fn receivers(arrivals: Arrivals) -> anyhow::Result<u16> {
    use axum::extract::{Path as UrlPath, State};
    async fn heard(
        State(arrivals): State<Arrivals>,
        UrlPath(path): UrlPath<String>,
        body: String,
    ) -> (axum::http::StatusCode, &'static str) {
        let channel = path.split('/').next().unwrap_or_default().to_string();
        if let Ok(mut arrivals) = arrivals.lock() {
            arrivals.push((channel, Instant::now(), body));
        }
        (axum::http::StatusCode::ACCEPTED, "{\"status\":\"success\"}")
    }
    let app = axum::Router::new().route("/{*path}", axum::routing::post(heard)).with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(port)
}

/// The monitor child: stopped with SIGTERM (and waited for) however the
/// drill ends.
struct Monitor(Child);

impl Monitor {
    fn stop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            let deadline = Instant::now() + WallDuration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(WallDuration::from_millis(50));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}
