//! Test support for the live monitor: a real `nats-server` on a free loopback
//! port with JetStream in a temporary directory, the `lifewatch` binary run as
//! a child process, and readers of the streams and the database. Nothing is
//! mocked. Every wait polls a condition with a deadline; nothing sleeps to
//! wait for a condition.

pub use crate::common::TempDir;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lifewatch_nats::async_nats;
use serde_json::Value;

/// The `lifewatch` binary under test.
pub fn lifewatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifewatch"))
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a future to completion on a small runtime of its own.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Polls `condition` every 50 ms until it returns `Some`, or panics with
/// `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago, for a server that a test
/// does not start itself (the doc test's examples start their own).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("the port").port()
}

/// A `nats-server` with JetStream, started by the test and stopped by its pid.
pub struct NatsServer {
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its JetStream store directory (kept across restarts).
    pub store_dir: PathBuf,
    extra_args: Vec<String>,
    log: PathBuf,
    _dir: TempDir,
}

impl NatsServer {
    /// Starts a server with `extra_args` (e.g. `--user u --pass p`).
    pub fn start(extra_args: &[&str]) -> NatsServer {
        static VERSION: Once = Once::new();
        VERSION.call_once(|| {
            let output = Command::new("nats-server").arg("--version").output().expect(
                "nats-server is not installed: run scripts/install-nats-server.sh (pinned version from PyPI)",
            );
            eprintln!("using {}", String::from_utf8_lossy(&output.stdout).trim());
        });
        let dir = TempDir::new("nats");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("the port").port();
        drop(listener);
        let mut server = NatsServer {
            child: None,
            port,
            store_dir: dir.path().join("jetstream"),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            log: dir.path().join("nats-server.log"),
            _dir: dir,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("server log");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let port = self.port;
        wait_for("nats-server to accept connections", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A connected client (no credentials).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to the test server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shipped configuration without its `[[channels]]` and `[[teams]]`
/// (the section from `# Notifications:` on): live tests that send define
/// their own receivers, and the others send nothing.
pub fn shipped_without_notifications() -> String {
    let text = std::fs::read_to_string(repo_root().join("ops/lifewatch.toml")).expect("ops/lifewatch.toml");
    let end = text.find("\n# Notifications:").expect("ops/lifewatch.toml has a # Notifications: section");
    text[..=end].to_string()
}

/// A configuration file: the shipped one (without its notifications) with
/// `replacements` applied (each `(old, new)` must occur) and `[nats]` lines
/// appended.
pub fn write_config(dir: &Path, replacements: &[(&str, &str)], nats: &str) -> PathBuf {
    let mut text = shipped_without_notifications();
    for (old, new) in replacements {
        assert!(text.contains(old), "ops/lifewatch.toml has no {old:?}");
        text = text.replacen(old, new, 1);
    }
    text.push_str("\n[nats]\n");
    text.push_str(nats);
    let path = dir.join("lifewatch.toml");
    std::fs::write(&path, text).expect("write the test configuration");
    path
}

/// A `lifewatch run` child process, with its log in a file.
pub struct Monitor {
    child: Child,
    /// Its log (standard error).
    pub log: PathBuf,
}

impl Monitor {
    /// Starts `lifewatch run --nats <url> --db <db> --config <config> --log-format json <extra>`.
    pub fn start(url: &str, db: &Path, config: &Path, extra: &[&str]) -> Monitor {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let log = db.with_extension(format!("monitor-{}.log", COUNTER.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::File::create(&log).expect("monitor log");
        let child = lifewatch()
            .args(["run", "--nats", url, "--log-format", "json", "--db"])
            .arg(db)
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start lifewatch run");
        Monitor { child, log }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and wait for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait (up to 20 s) for it to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -TERM failed");
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for("the monitor to exit after SIGTERM", Duration::from_secs(20), || {
            child.try_wait().ok().flatten()
        })
        .tap_log(&log)
    }

    /// Waits (up to `limit`) for it to exit by itself.
    pub fn wait_exit(mut self, limit: Duration) -> (ExitStatus, String) {
        let child = &mut self.child;
        let status = wait_for("the monitor to exit", limit, || child.try_wait().ok().flatten());
        (status, std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait TapLog {
    fn tap_log(self, log: &Path) -> Self;
}

impl TapLog for ExitStatus {
    /// Prints the monitor's log when it did not exit successfully.
    fn tap_log(self, log: &Path) -> Self {
        if !self.success() {
            eprintln!("monitor log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        self
    }
}

/// Runs `lifewatch publish` and returns its standard error; panics if it fails.
pub fn publish(url: &str, files: &[&Path], extra: &[&str]) -> String {
    let output = lifewatch()
        .arg("publish")
        .args(files)
        .args(["--nats", url])
        .args(extra)
        .output()
        .expect("run lifewatch publish");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "lifewatch publish failed: {stderr}");
    stderr
}

/// `lifewatch replay FILES --now NOW --config CONFIG --format jsonl`: the records, by id.
pub fn replay(files: &[&Path], now: &str, config: &Path) -> BTreeMap<String, Value> {
    let output = lifewatch()
        .arg("replay")
        .args(files)
        .args(["--now", now, "--format", "jsonl", "--config"])
        .arg(config)
        .output()
        .expect("run lifewatch replay");
    assert!(output.status.success(), "replay failed: {}", String::from_utf8_lossy(&output.stderr));
    by_id(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON record")),
    )
}

/// Records keyed by their `id`.
pub fn by_id(records: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .map(|record| (record["id"].as_str().expect("a record id").to_string(), record))
        .collect()
}

/// How long the NATS tests wait for the monitor to get somewhere.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// How many events replay accepts from `files` (with the clock at 1970, so
/// that nothing is judged stuck).
pub fn accepted_by_replay(files: &[&Path], config: &Path) -> i64 {
    let output = lifewatch()
        .arg("replay")
        .args(files)
        .args(["--now", "1970-01-01T00:00:00Z", "--config"])
        .arg(config)
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let totals = stderr.lines().rfind(|line| line.starts_with("replay: ")).expect("replay totals");
    let accepted = totals.split(", ").find(|part| part.ends_with(" accepted")).expect("accepted count");
    accepted.trim_end_matches(" accepted").parse().expect("a number")
}

/// Waits until the database holds `events` events and nothing waits in the
/// outbox (every incident was published and acknowledged); prints the last
/// summary and the monitor's log if it times out.
pub fn wait_until_processed(db: &Path, events: i64, monitor: &Monitor) {
    let mut last = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the monitor to store every event and publish every incident", PATIENCE, || {
            let summary = db_summary(db)?;
            last = Some(summary);
            (summary.events == events && summary.pending_outbox == 0).then_some(())
        })
    }));
    if let Err(panic) = outcome {
        eprintln!("last summary {last:?}\nmonitor log:\n{}", monitor.log_text());
        std::panic::resume_unwind(panic);
    }
}

/// The set-up most live tests start from: publishes `files` to `server`,
/// starts a monitor on `db` with `config` and the `extra` arguments, and
/// waits until it has stored every event of `files` that replay accepts and
/// published every incident.
pub fn started_monitor(
    server: &NatsServer,
    db: &Path,
    config: &Path,
    files: &[&Path],
    extra: &[&str],
) -> Monitor {
    publish(&server.url(), files, &[]);
    let monitor = Monitor::start(&server.url(), db, config, extra);
    wait_until_processed(db, accepted_by_replay(files, config), &monitor);
    monitor
}

/// Deletes the stream `name` from `server`, as an operator might under a
/// running monitor.
pub fn delete_stream(server: &NatsServer, name: &str) {
    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        if let Err(error) = jetstream.delete_stream(name).await {
            panic!("delete {name}: {error}");
        }
    });
}

/// The database's counts, or `None` while it cannot be opened yet.
pub fn db_summary(db: &Path) -> Option<lifewatch_store::StoreSummary> {
    lifewatch_store::Store::open_read_only(db).ok()?.summary().ok()
}

/// The database's incident records, by id.
pub fn db_incidents(db: &Path) -> BTreeMap<String, Value> {
    let store = lifewatch_store::Store::open_read_only(db).expect("open the database");
    let records = store.incidents(&lifewatch_store::IncidentFilter::default()).expect("read incidents");
    by_id(records.into_iter().map(|record| serde_json::to_value(record).expect("a record")))
}

/// One message of a stream.
#[derive(Debug)]
pub struct StoredMessage {
    /// Its subject.
    pub subject: String,
    /// Its headers, by name (first value).
    pub headers: BTreeMap<String, String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Every message of `stream`, in order.
pub fn stream_messages(url: &str, stream: &str) -> Vec<StoredMessage> {
    block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = match jetstream.get_stream(stream).await {
            Ok(stream) => stream,
            Err(_) => return Vec::new(),
        };
        let state = stream.info().await.expect("stream info").state.clone();
        let mut messages = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let Ok(message) = stream.get_raw_message(sequence).await else { continue };
            let headers = message
                .headers
                .iter()
                .filter_map(|(name, values)| Some((name.to_string(), values.first()?.to_string())))
                .collect();
            messages.push(StoredMessage {
                subject: message.subject.to_string(),
                headers,
                payload: message.payload.to_vec(),
            });
        }
        messages
    })
}

/// The INCIDENTS stream folded: the latest record of each incident (by id),
/// and every `Nats-Msg-Id` in stream order. Fails when one incident's
/// messages are out of outbox order.
pub fn incidents_stream(url: &str) -> (BTreeMap<String, Value>, Vec<String>) {
    let mut latest = BTreeMap::new();
    let mut ids = Vec::new();
    let mut order: BTreeMap<String, u64> = BTreeMap::new();
    for message in stream_messages(url, "INCIDENTS") {
        let body: Value = serde_json::from_slice(&message.payload).expect("an incident message");
        let record = body["incident"].clone();
        let transition = body["transition"].as_str().expect("a transition").to_string();
        let id = record["id"].as_str().expect("an incident id").to_string();
        // The entity id as core makes it a subject token (a region name
        // may hold spaces or dots); a valid id is kept as it is.
        let expected_subject = format!(
            "incidents.{}.{}.{}",
            record["kind"].as_str().unwrap_or_default(),
            record["entity"]["type"].as_str().unwrap_or_default(),
            lifewatch_core::subject_token(record["entity"]["id"].as_str().unwrap_or_default())
        );
        assert_eq!(message.subject, expected_subject, "incident subject");
        let message_id = message.headers.get("Nats-Msg-Id").cloned().expect("a Nats-Msg-Id");
        let outbox_id: u64 =
            message_id.rsplit(':').next().and_then(|n| n.parse().ok()).expect("an outbox id");
        // Consumers read the latest message per subject: one incident's
        // messages must be stored in the order they were written.
        if let Some(previous) = order.insert(message.subject.clone(), outbox_id) {
            assert!(
                previous < outbox_id,
                "{}: outbox entry {outbox_id} stored after {previous}",
                message.subject
            );
        }
        ids.push(message_id);
        if transition == "retracted" {
            latest.remove(&id);
        } else {
            latest.insert(id, record);
        }
    }
    (latest, ids)
}

/// Checks that the `Nats-Msg-Id`s (`<incident id>:<outbox id>`) are each
/// outbox entry 1..=N exactly once: no transition missing, none doubled.
pub fn assert_each_transition_once(message_ids: &[String]) {
    let mut outbox_ids: Vec<u64> = message_ids
        .iter()
        .map(|id| {
            id.rsplit(':').next().and_then(|n| n.parse().ok()).expect("an <incident>:<outbox id> message id")
        })
        .collect();
    outbox_ids.sort_unstable();
    let expected: Vec<u64> = (1..=outbox_ids.len() as u64).collect();
    assert_eq!(outbox_ids, expected, "INCIDENTS must hold every outbox entry exactly once");
}

/// Compares two record maps and prints the first difference.
pub fn assert_same_records(what: &str, left: &BTreeMap<String, Value>, right: &BTreeMap<String, Value>) {
    if left == right {
        return;
    }
    let only_left: Vec<_> = left.keys().filter(|id| !right.contains_key(*id)).take(5).collect();
    let only_right: Vec<_> = right.keys().filter(|id| !left.contains_key(*id)).take(5).collect();
    let differing = left.iter().find(|(id, record)| right.get(*id).is_some_and(|other| other != *record));
    panic!(
        "{what}: {} vs {} records; only left {only_left:?}; only right {only_right:?}; first differing {:#?}",
        left.len(),
        right.len(),
        differing.map(|(id, record)| (record, &right[id]))
    );
}
