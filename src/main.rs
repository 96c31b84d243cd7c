//! lifewatch: watches the lifecycle of cloud accounts, projects and billing
//! disputes, and raises routed incidents when something goes wrong.
//!
//! Exit status: 0 success; 1 the work failed (unreadable input, a check that
//! found problems); 2 bad usage or a bad configuration.

mod check;
mod commands;
mod input;
mod live;
mod output;
mod pipeline;
mod publish;
mod replay;

/// jemalloc rather than glibc's malloc, whose bookkeeping (`malloc_consolidate`,
/// `_int_free`) was a sixth of the monitor's CPU: async-nats allocates several
/// times per message. See README "NATS benchmark".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf`, read at startup; the environment's
/// `_RJEM_MALLOC_CONF` still overrides it): freed pages are returned to the
/// system after 30 s rather than 10 s (dirty) and at once (muzzy), so that a
/// batch's buffers freed and allocated again a moment later are not faulted
/// in again each time (`replay --db` was 6% slower without it).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static _rjem_malloc_conf: &[u8] = b"dirty_decay_ms:30000,muzzy_decay_ms:30000\0";

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lifewatch_core::{Config, Engine, Timestamp};

use crate::output::Format;

/// Exit status for bad usage or a bad configuration.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "lifewatch",
    version,
    about = "Lifecycle monitor for cloud accounts, projects and billing disputes",
    long_about = "lifewatch folds CloudEvents lifecycle events (JSON Lines) through typed state machines \
and raises incidents routed to the owning team with a runbook: stuck entities, illegal transitions, \
provisioning and onboarding failures, quota breaches, billing disputes and regional outages.\n\n\
Start with:  lifewatch replay fixtures/launch-day.jsonl --format table"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay event files offline and print every incident raised, open or resolved.
    ///
    /// The files are read in order as one stream (`-` or no file: standard input).
    /// Rejected lines are listed on standard error with their line numbers and reasons;
    /// they do not change the exit status.
    Replay {
        /// Event files (JSON Lines, one CloudEvent per line); `-` for standard input.
        files: Vec<PathBuf>,
        /// The instant the replay ends at (RFC 3339); visits still open are judged
        /// against it. Default: the latest time of an accepted event.
        #[arg(long, value_parser = parse_time)]
        now: Option<Timestamp>,
        /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format: jsonl for tools, table for people.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Persist to this SQLite database as the replay goes (created if missing):
        /// events already in it are duplicates, so a second file continues the first.
        #[arg(long)]
        db: Option<PathBuf>,
        /// With --db: input lines per transaction. Larger batches write
        /// faster (fewer rewrites of the same pages) and hold more memory
        /// (about 250 bytes per line, twice); a crash redoes at most two.
        #[arg(long, default_value_t = commands::replay_db::BATCH_LINES, value_parser = clap::value_parser!(u64).range(1..), requires = "db")]
        batch_lines: u64,
    },
    /// List the incidents stored in a database, ordered by opened_at then key.
    Incidents {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Only open or only resolved incidents.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only this team's incidents.
        #[arg(long)]
        owner: Option<String>,
        /// Only this kind (e.g. stuck, quota_breach).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<lifewatch_core::IncidentKind>,
        /// Only incidents open at some moment since this instant (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<Timestamp>,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an entity's timeline: every event, the state it moved to and how long it
    /// stayed, the incidents raised, and rejected events for that subject.
    Show {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// The entity id (account, project or dispute).
        entity_id: String,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// On-call reports over a database.
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// Recompute every projection and incident from the event log alone and compare
    /// with what is stored. Exit 1 if they differ.
    Rebuild {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Replace what differs with what the log gives (takes the writer lock).
        #[arg(long)]
        repair: bool,
        /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a database for damage without writing: SQLite's integrity check, every
    /// block of the event log, the stored projections against the log (as rebuild),
    /// and the log's end against the checkpoints. Exit 1 naming each problem.
    Verify {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Copy a database to a new file, safely while a writer runs (SQLite's VACUUM INTO).
    Backup {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// The copy to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the rejected events kept in a database.
    Rejected {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Only this reason (e.g. malformed_json).
        #[arg(long, value_parser = parse_reason)]
        reason: Option<lifewatch_core::RejectReason>,
        /// Include events already re-driven.
        #[arg(long)]
        all: bool,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List the incident transitions set aside: the NATS server refused them for
    /// good (payload too large, invalid subject, no stream for the subject), so the
    /// monitor stopped retrying them and published the others.
    Outbox {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Feed rejected events through validation again; accepted ones join the log.
    Redrive {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Only events rejected for this reason.
        #[arg(long, value_parser = parse_reason)]
        reason: Option<lifewatch_core::RejectReason>,
        /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and the operations package: every incident kind
    /// reaches an owner, every runbook named exists.
    ///
    /// Prints the routing table; exits 1 with one line per problem.
    Check {
        /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory that runbook paths are relative to.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Generate a realistic, time-ordered event stream (JSON Lines).
    ///
    /// The same seed always gives the same stream. With --faults it also contains
    /// every kind of trouble lifewatch detects, plus duplicates and malformed lines.
    Simulate {
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
        #[arg(long, value_parser = parse_time)]
        start: Option<Timestamp>,
        /// Publish live traffic to NATS instead of writing a file: the simulator's
        /// events in order, each timed at the wall clock when sent.
        #[command(flatten)]
        nats: live::NatsFlags,
        /// With --nats: events per second.
        #[arg(long, value_name = "EVENTS_PER_S", default_value_t = 100.0)]
        rate: f64,
        /// With --nats: how long to publish (e.g. 30s, 5m).
        #[arg(long, value_name = "D", default_value = "1m", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// With --nats: configuration file whose `[nats]` section gives connection options.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the live monitor: consume events from NATS JetStream, store them,
    /// detect incidents in real time and publish them to the INCIDENTS stream.
    ///
    /// Stops cleanly on SIGINT or SIGTERM (exit 0). Exit 1 when NATS refuses the
    /// credentials or the store fails; 2 for a bad configuration.
    Run {
        #[command(flatten)]
        nats: live::NatsFlags,
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
        log_format: live::LogFormat,
    },
    /// Publish event files to NATS JetStream, each event to its subject with
    /// Nats-Msg-Id = its id; report how many were stored and how many were duplicates.
    Publish {
        /// Event files (JSON Lines); `-` for standard input.
        files: Vec<PathBuf>,
        #[command(flatten)]
        nats: live::NatsFlags,
        /// Publish invalid lines too, unchanged (they are skipped and reported otherwise).
        #[arg(long)]
        raw: bool,
        /// Configuration file whose `[nats]` section gives connection options.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = lifewatch_core::Duration::parse_human(text)?;
    u64::try_from(duration.as_nanos())
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{text:?} is negative"))
}

/// `lifewatch report` reports.
#[derive(Subcommand)]
enum ReportCommand {
    /// What is stuck now, grouped by owner and state, oldest first, with how long
    /// past its deadline each one is.
    Stuck {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// The instant to judge at (RFC 3339). Default: the database's clock.
        #[arg(long, value_parser = parse_time)]
        now: Option<Timestamp>,
        /// Configuration file for deadlines and owners (default: the shipped one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// `--status` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Open,
    Resolved,
}

fn parse_kind(text: &str) -> Result<lifewatch_core::IncidentKind, String> {
    lifewatch_core::IncidentKind::parse(text).ok_or_else(|| format!("{text:?} is not an incident kind"))
}

fn parse_reason(text: &str) -> Result<lifewatch_core::RejectReason, String> {
    lifewatch_core::RejectReason::parse(text).ok_or_else(|| format!("{text:?} is not a rejection reason"))
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time with an offset, e.g. 2026-11-27T12:00:00Z"))
}

/// Reads and validates the configuration, or the built-in default.
pub fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        None => Config::from_toml(lifewatch_core::DEFAULT_CONFIG_TOML)
            .map_err(|error| format!("built-in configuration: {error}")),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
            Config::from_toml(&text).map_err(|error| format!("{}: {error}", path.display()))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if error.chain().any(is_broken_pipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("lifewatch: error: {}", error_message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text
/// the message already holds (async-nats, for one, prints its own source).
fn error_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<io::Error>().is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("lifewatch: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn config_or_exit(path: Option<&Path>) -> Result<Config, ExitCode> {
    load_config(path).map_err(|message| {
        eprintln!("lifewatch: bad configuration: {message}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay { files, now, config, format, db, batch_lines } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            if let Some(db) = db {
                commands::replay_db::run(&db, &files, now, config, format, batch_lines)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut engine = Engine::new(config);
            let mut totals = replay::feed(&mut engine, &files)?;
            replay::finish(&mut engine, now);
            totals.entities = engine.entity_count();
            let order = engine.sorted_incidents();
            output::print_record_stream(order.into_iter().filter_map(|index| engine.record(index)), format)?;
            replay::report(&totals)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents { db, status, owner, kind, since, format } => {
            let status = status.map(|status| match status {
                StatusArg::Open => lifewatch_core::Status::Open,
                StatusArg::Resolved => lifewatch_core::Status::Resolved,
            });
            let query =
                lifewatch_store::query::IncidentQuery { status, owner, kind, since, ..Default::default() };
            commands::incidents::run(&db, &query, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { db, entity_id, format } => commands::show::run(&db, &entity_id, format),
        Command::Report { report: ReportCommand::Stuck { db, now, config, format } } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            commands::report::stuck(&db, now, &config, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { db, repair, config } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            commands::rebuild::run(&db, config, repair)
        }
        Command::Verify { db, config, format } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            commands::verify::run(&db, config, format)
        }
        Command::Backup { db, out } => commands::backup::run(&db, &out),
        Command::Rejected { db, reason, all, format } => {
            let filter =
                lifewatch_store::query::RejectedFilter { reason, subject: None, include_redriven: all };
            commands::rejected::run(&db, &filter, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox { db, format } => {
            commands::outbox::run(&db, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Redrive { db, reason, config } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            commands::redrive::run(&db, reason, config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, root } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            let problems = check::check(&config, &root, &mut io::stdout().lock())?;
            for problem in &problems {
                eprintln!("lifewatch check: {problem}");
            }
            Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Run { nats, db, config, no_create, log_format } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            let nats = match nats.nats_config(&config) {
                Ok(nats) => nats,
                Err(message) => return Ok(usage_error(&message)),
            };
            live::init_logging(log_format);
            live::run(config, nats, db, no_create)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { files, nats, raw, config } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            let nats = match nats.nats_config(&config) {
                Ok(nats) => nats,
                Err(message) => return Ok(usage_error(&message)),
            };
            publish::publish(nats, files, raw)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { seed, accounts, faults, out, start, nats, rate, duration, config } => {
            let mut options = lifewatch_sim::SimulateOptions { seed, accounts, faults, ..Default::default() };
            if let Some(start) = start {
                options.start = start.unix_nanos().div_euclid(1_000_000_000);
            }
            if nats.url.is_some() {
                let config = match config_or_exit(config.as_deref()) {
                    Ok(config) => config,
                    Err(code) => return Ok(code),
                };
                let nats = match nats.nats_config(&config) {
                    Ok(nats) => nats,
                    Err(message) => return Ok(usage_error(&message)),
                };
                live::init_logging(live::LogFormat::Human);
                // Live traffic needs more accounts than a file: enough for the whole run.
                options.accounts = options.accounts.max((rate * duration.as_secs_f64() / 10.0) as u64 + 10);
                live::simulate(nats, options, rate, duration)?;
                return Ok(ExitCode::SUCCESS);
            }
            let stats = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
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
    }
}
