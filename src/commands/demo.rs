//! `lifewatch demo`: a simulated launch day through the real monitor,
//! compressed into about a minute, with the dashboard served meanwhile.
//!
//! The day comes from the simulator with faults (onboarding waves, failing
//! and stuck provisioning that makes regional outages, quota breaches,
//! billing disputes, illegal transitions, duplicates and poison lines),
//! dated so that it ends just before now. It goes through NATS when a
//! `nats-server` is on `PATH` (started on a free port with a store of its
//! own, stopped by its pid at the end) and the live monitor consumes it;
//! otherwise through the store's writer in event time, as `replay --db`
//! does. Both print each incident as it opens and serve the dashboard.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lifewatch_core::parse_event;
use lifewatch_nats::{CreateStreams, MonitorOptions, Publisher};
use lifewatch_store::query::{self, IncidentQuery, Order};
use lifewatch_store::{Store, Writer};

use crate::commands::parse_duration;
use crate::config::AppConfig;
use crate::live::{runtime, shutdown_signal};
use crate::output::terminal_safe;
use crate::progress::{Measure, Progress};

/// The `Examples:` section of `lifewatch demo --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch demo                                  # then open the URL it prints; Ctrl-C to stop
  lifewatch demo --in-process --duration 20s --exit
  lifewatch demo --db /tmp/demo.db --listen 127.0.0.1:9464

Through NATS (a nats-server on PATH), the events are dated in the past and published
faster than they happened, so the monitor runs with an allowed lateness longer than the
day while they are published (it would otherwise call entities stuck before their next
event arrives), then once more with the configured lateness, which fires what is
really stuck. Without nats-server (or with --in-process) the day goes through the store
in event time, as `replay --db` does: the same incidents either way.";

/// `lifewatch demo` arguments.
#[derive(Args)]
pub struct DemoArgs {
    /// Address of the dashboard (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// How long the day takes on the wall clock.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Accounts of the simulated day (about 12 events each).
    #[arg(long, default_value_t = 2000)]
    accounts: u64,
    /// Seed of the simulator: the same seed, the same day.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Feed the store directly even when a nats-server is on PATH.
    #[arg(long)]
    in_process: bool,
    /// Keep the database here (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Stop when the day is over instead of serving the dashboard until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// One line of the day with the instant it is due on the wall clock.
struct Timed {
    line: String,
    /// Offset from the start of the demo.
    due: Duration,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server` this process started, killed by its pid on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tracing::debug!(pid = self.child.id(), "nats-server stopped");
    }
}

/// `lifewatch demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let app = AppConfig::load(None)?;
    let temp = TempDir(std::env::temp_dir().join(format!("lifewatch-demo-{}", std::process::id())));
    std::fs::create_dir_all(&temp.0).with_context(|| format!("cannot create {}", temp.0.display()))?;
    let db = match &args.db {
        Some(db) => {
            crate::commands::run::check_parent(db)?;
            db.clone()
        }
        None => temp.0.join("lifewatch.db"),
    };
    let day = simulated_day(&args)?;
    let nats_server = if args.in_process { None } else { find_on_path("nats-server") };
    eprintln!(
        "lifewatch demo: {} lines of a simulated launch day in {}s, {}; database {}",
        day.len(),
        args.duration.as_secs(),
        if nats_server.is_some() { "through a nats-server started for the demo" } else { "in process" },
        db.display()
    );
    // The store exists before the dashboard reads it.
    drop(Writer::open(&db, app.engine.clone())?);
    let runtime = runtime()?;
    let summary = runtime.block_on(async {
        let listener = lifewatch_web::bind(args.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))).await?;
        let bound = listener.local_addr().context("the listening socket has no address")?;
        let telemetry = Arc::new(lifewatch_nats::Telemetry::new());
        let probe = crate::commands::serve::probe(&app, telemetry.clone());
        let web = crate::commands::serve::web_config(&db, &app, None, Some(probe));
        let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(lifewatch_web::serve(listener, web, async move {
            let _ = web_stopped.await;
        }));
        eprintln!("lifewatch demo: dashboard at http://{bound}/");
        let progress = Progress::on_terminal(false, "demo", Measure::Count("events"), Some(day.len() as u64));
        let printer = tokio::spawn(print_incidents(db.clone(), progress.clone()));
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let fed = tokio::select! {
            fed = async {
                match &nats_server {
                    Some(binary) => through_nats(binary, &temp.0, &db, &app, &day, telemetry.clone(), &progress).await,
                    None => in_process(&db, &app, &day, &progress).await,
                }
            } => Some(fed?),
            () = &mut shutdown => None,
        };
        progress.finish();
        // One last look for incidents, then the summary.
        tokio::time::sleep(Duration::from_millis(400)).await;
        printer.abort();
        let summary = summarise(&db)?;
        let mut interrupted = fed.is_none();
        if let Some(()) = fed {
            println!("{summary}");
            if !args.exit {
                eprintln!("lifewatch demo: the day is over; the dashboard stays at http://{bound}/ until Ctrl-C");
                shutdown.as_mut().await;
                interrupted = true;
            }
        }
        let _ = stop_web.send(());
        let _ = server.await;
        anyhow::Ok((summary, interrupted))
    })?;
    drop(runtime);
    if summary.1 {
        eprintln!("lifewatch demo: stopped");
    }
    if args.db.is_some() {
        eprintln!("lifewatch demo: the database stays at {}", db.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The simulated day, timed to end two minutes before now, each line due
/// at its event time scaled into `duration`.
fn simulated_day(args: &DemoArgs) -> anyhow::Result<Vec<Timed>> {
    let options = |start| lifewatch_sim::SimulateOptions {
        seed: args.seed,
        accounts: args.accounts,
        faults: true,
        start,
    };
    // A first pass finds how long the day is; the second dates it.
    let span_of = |lines: &[lifewatch_sim::SimLine]| {
        let times: Vec<i64> = lines
            .iter()
            .filter_map(|line| parse_event(line.line.as_bytes()).ok().map(|event| event.time.unix_nanos()))
            .collect();
        (times.iter().copied().min().unwrap_or(0), times.iter().copied().max().unwrap_or(0))
    };
    let first: Vec<_> = lifewatch_sim::Simulator::new(options(0)).collect();
    let (from, to) = span_of(&first);
    let span_seconds = (to - from) / 1_000_000_000 + 1;
    let now = lifewatch_nats::wall_clock().context("the system clock is out of range")?;
    let start = now.unix_nanos() / 1_000_000_000 - span_seconds - 120;
    let lines: Vec<_> = lifewatch_sim::Simulator::new(options(start)).collect();
    let (from, to) = span_of(&lines);
    let span = (to - from).max(1) as f64;
    let mut last = Duration::ZERO;
    Ok(lines
        .into_iter()
        .map(|line| {
            // A poison line has no time: it goes with the line before it.
            if let Ok(event) = parse_event(line.line.as_bytes()) {
                let fraction = (event.time.unix_nanos() - from) as f64 / span;
                last = args.duration.mul_f64(fraction.clamp(0.0, 1.0));
            }
            Timed { line: line.line, due: last }
        })
        .collect())
}

/// The directory-qualified path of `name` on `PATH`, if any.
fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// Feeds the day to the store in event time, committing every 100 ms of wall clock.
async fn in_process(db: &Path, app: &AppConfig, day: &[Timed], progress: &Progress) -> anyhow::Result<()> {
    let mut writer = tokio::task::block_in_place(|| Writer::open(db, app.engine.clone()))?;
    let started = tokio::time::Instant::now();
    let mut next = 0;
    while next < day.len() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed();
        while next < day.len() && day[next].due <= elapsed {
            let line = &day[next];
            match parse_event(line.line.as_bytes()) {
                Ok(event) => {
                    writer.feed_event(line.line.as_bytes(), &event);
                }
                Err(rejection) => {
                    writer.reject(line.line.as_bytes(), &rejection, &format!("demo:{}", next + 1))
                }
            }
            next += 1;
        }
        // The clock follows the events, as in replay: what overran its deadline is stuck.
        if let Some(latest) = writer.engine().latest_event_time() {
            writer.tick(latest);
        }
        tokio::task::block_in_place(|| writer.commit())?;
        progress.set_position(next as u64);
    }
    Ok(())
}

/// Starts a nats-server, publishes the day to it on time and runs the live
/// monitor on it (twice: see the module's help).
async fn through_nats(
    binary: &Path,
    dir: &Path,
    db: &Path,
    app: &AppConfig,
    day: &[Timed],
    telemetry: Arc<lifewatch_nats::Telemetry>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let server = start_nats_server(binary, dir).await?;
    let mut settings = app.nats.clone();
    settings.insert("url".into(), toml::Value::String(server.url.clone()));
    let nats = lifewatch_nats::NatsConfig::from_table(&settings, &Default::default())?;
    let monitor_run = |lateness: lifewatch_core::Duration| MonitorOptions {
        nats: nats.clone(),
        create: CreateStreams::IfMissing,
        allowed_lateness: lateness,
        max_future: app.live.max_future,
        telemetry: Some(telemetry.clone()),
    };
    let mut writer = tokio::task::block_in_place(|| Writer::open(db, app.engine.clone()))?;
    let client = lifewatch_nats::connect(&nats.connect, Duration::from_secs(10)).await?;
    let jetstream = lifewatch_nats::publishing_context(client.clone(), Duration::from_secs(10));
    lifewatch_nats::ensure_streams(&jetstream, &nats.streams, CreateStreams::IfMissing).await?;

    // Phase 1: publish on time while the monitor, with a lateness longer than
    // the day, consumes.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let patient = monitor_run(lifewatch_core::Duration::from_seconds(3 * 86_400));
    let monitor = async {
        lifewatch_nats::run_monitor(client.clone(), &patient, &mut writer, async move {
            let _ = stopped.await;
        })
        .await
    };
    let publish = async {
        let mut publisher = Publisher::new(jetstream.clone(), 1_024);
        let started = tokio::time::Instant::now();
        for (index, line) in day.iter().enumerate() {
            tokio::time::sleep_until(started + line.due).await;
            // As `publish --raw` sends it: a line that fails validation gets a
            // message id of its own, so the broker keeps a corrected re-send.
            let prepared =
                crate::commands::publish::prepare(line.line.as_bytes(), true, "demo", index as u64 + 1);
            if let crate::commands::publish::Prepared::Publish(outgoing) = prepared {
                publisher.publish(outgoing).await?;
            }
            progress.set_position(index as u64 + 1);
        }
        let totals = publisher.finish().await?;
        tracing::debug!(stored = totals.stored, duplicates = totals.duplicates, "the day is published");
        // Let the monitor take the last messages before it stops.
        wait_until_consumed(&jetstream, &nats.streams).await;
        let _ = stop.send(());
        anyhow::Ok(())
    };
    let (totals, published) = tokio::join!(monitor, publish);
    published?;
    totals?;
    // Phase 2: the configured lateness; the wall clock is past every
    // deadline of the day, so what is still waiting is stuck now.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = monitor_run(app.live.allowed_lateness);
    let monitor = lifewatch_nats::run_monitor(client.clone(), &live, &mut writer, async move {
        let _ = stopped.await;
    });
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = stop.send(());
    };
    let (totals, ()) = tokio::join!(monitor, stopper);
    totals?;
    drop(server);
    Ok(())
}

/// Waits (at most 30 s) until the monitor's consumer has nothing pending
/// and every delivered message is acknowledged (so committed).
async fn wait_until_consumed(
    jetstream: &lifewatch_nats::async_nats::jetstream::Context,
    settings: &lifewatch_nats::StreamSettings,
) {
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(stream) = jetstream.get_stream(&settings.lifecycle_stream).await else { continue };
        let Ok(info) = stream.consumer_info(&settings.consumer).await else { continue };
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
    }
}

async fn start_nats_server(binary: &Path, dir: &Path) -> anyhow::Result<NatsServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free port")?
        .port();
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let server = NatsServer { child, url: format!("nats://127.0.0.1:{port}") };
    tracing::debug!(pid = server.child.id(), url = %server.url, "nats-server started");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the nats-server started for the demo does not answer on port {port}")
}

/// Prints each incident once, as it appears in the store (polled every 250 ms).
async fn print_incidents(db: PathBuf, progress: Progress) {
    let mut printed: HashSet<String> = HashSet::new();
    let mut version = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let db = db.clone();
        let read = tokio::task::spawn_blocking(move || {
            let store = Store::open_read_only(&db).ok()?;
            let now = store.version().ok()?;
            let page = query::incidents(
                &store,
                &IncidentQuery { limit: Some(1000), order: Order::NewestFirst, ..Default::default() },
            )
            .ok()?;
            Some((now, page.incidents))
        })
        .await;
        let Ok(Some((now, incidents))) = read else { continue };
        if now == version {
            continue;
        }
        version = now;
        let mut fresh: Vec<_> =
            incidents.into_iter().filter(|record| !printed.contains(&record.id)).collect();
        fresh.reverse();
        progress.suspend(|| {
            let mut out = io::stdout().lock();
            for record in &fresh {
                let _ = writeln!(
                    out,
                    "{}  {:<8}  {:<19}  {:<28}  {:<16}  {}",
                    record.opened_at,
                    record.severity.as_str().to_uppercase(),
                    record.kind.as_str(),
                    terminal_safe(&format!("{} {}", record.entity.entity_type.as_str(), record.entity.id)),
                    terminal_safe(&record.owner),
                    terminal_safe(&shortened(&record.summary)),
                );
            }
            let _ = out.flush();
        });
        printed.extend(fresh.into_iter().map(|record| record.id));
    }
}

/// What the day raised, by kind.
fn summarise(db: &Path) -> anyhow::Result<String> {
    let store = Store::open_read_only(db)?;
    let all = query::incidents(&store, &IncidentQuery::default())?.incidents;
    let mut by_kind: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
    for record in &all {
        let entry = by_kind.entry(record.kind.as_str()).or_default();
        entry.0 += 1;
        if record.status == lifewatch_core::Status::Open {
            entry.1 += 1;
        }
    }
    let kinds: Vec<String> =
        by_kind.iter().map(|(kind, (all, open))| format!("{kind} {all} ({open} open)")).collect();
    let summary = store.summary()?;
    Ok(format!(
        "demo: {} events stored, {} rejected; {} incidents: {}",
        summary.events,
        summary.rejected,
        all.len(),
        kinds.join(", ")
    ))
}

/// A summary cut to 100 bytes for one line of the terminal.
fn shortened(summary: &str) -> String {
    let mut text = summary.to_string();
    lifewatch_core::cut_text(&mut text, 100);
    text
}
