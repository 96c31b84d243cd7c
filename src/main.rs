//! lifewatch: watches the lifecycle of cloud accounts, projects and billing
//! disputes, and raises routed incidents when something goes wrong.
//!
//! This file holds the command line (clap) and the dispatch to
//! `commands::<command>::run`. Exit status: 0 success; 1 the work failed
//! (unreadable input, a check that found problems); 2 bad usage or a bad
//! configuration (a [`error::UsageError`] in the error's chain).

mod commands;
mod config;
mod error;
mod input;
mod live;
mod output;
mod pipeline;

/// jemalloc rather than glibc's malloc, whose bookkeeping (`malloc_consolidate`,
/// `_int_free`) was a sixth of the monitor's CPU: async-nats allocates several
/// times per message. See docs/benchmarks.md.
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

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifewatch_core::Timestamp;

use crate::commands::{parse_kind, parse_reason, parse_time};
use crate::config::AppConfig;
use crate::error::UsageError;
use crate::output::Format;

/// Exit status for bad usage or a bad configuration.
const EXIT_USAGE: u8 = 2;

/// The version, with the git commit it was built from when known (build.rs).
const VERSION: &str = env!("LIFEWATCH_VERSION");

#[derive(Parser)]
#[command(
    name = "lifewatch",
    version = VERSION,
    about = "Lifecycle monitor for cloud accounts, projects and billing disputes",
    long_about = "lifewatch folds CloudEvents lifecycle events (JSON Lines) through typed state machines \
and raises incidents routed to the owning team with a runbook: stuck entities, illegal transitions, \
provisioning and onboarding failures, quota breaches, billing disputes and regional outages.\n\n\
Start with:  lifewatch replay fixtures/launch-day.jsonl --format table"
)]
pub struct Cli {
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
    #[command(after_help = commands::replay::EXAMPLES)]
    Replay(commands::replay::ReplayArgs),
    /// List the incidents stored in a database, ordered by opened_at then key.
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch incidents --db /tmp/lifewatch.db --status open --format jsonl")]
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
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/stuck.jsonl --db /tmp/lifewatch-stuck.db > /dev/null\n  \
        lifewatch show --db /tmp/lifewatch-stuck.db dsp_late")]
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
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch report stuck --db /tmp/lifewatch.db")]
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// Recompute every projection and incident from the event log alone and compare
    /// with what is stored. Exit 1 if they differ.
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch rebuild --db /tmp/lifewatch.db\n  \
        lifewatch rebuild --db /tmp/lifewatch.db --repair")]
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
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch verify --db /tmp/lifewatch.db\n  \
        lifewatch verify --db /tmp/lifewatch.db --format jsonl")]
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
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch backup --db /tmp/lifewatch.db --out /tmp/lifewatch-backup.db\n  \
        lifewatch verify --db /tmp/lifewatch-backup.db")]
    Backup {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// The copy to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the rejected events kept in a database.
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/bad-input.jsonl --db /tmp/lifewatch-bad.db > /dev/null\n  \
        lifewatch rejected --db /tmp/lifewatch-bad.db --reason malformed_json")]
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
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch outbox --db /tmp/lifewatch.db\n  \
        lifewatch outbox --db /tmp/lifewatch.db --format jsonl")]
    Outbox {
        /// The database.
        #[arg(long)]
        db: PathBuf,
        /// Output format: table for people, jsonl for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Feed rejected events through validation again; accepted ones join the log.
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/bad-input.jsonl --db /tmp/lifewatch-bad.db > /dev/null\n  \
        lifewatch redrive --db /tmp/lifewatch-bad.db --reason unknown_type")]
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
    #[command(after_help = commands::check::EXAMPLES)]
    Check(commands::check::CheckArgs),
    /// Generate a realistic, time-ordered event stream (JSON Lines).
    ///
    /// The same seed always gives the same stream. With --faults it also contains
    /// every kind of trouble lifewatch detects, plus duplicates and malformed lines.
    #[command(after_help = commands::simulate::EXAMPLES)]
    Simulate(commands::simulate::SimulateArgs),
    /// Run the live monitor: consume events from NATS JetStream, store them,
    /// detect incidents in real time and publish them to the INCIDENTS stream.
    ///
    /// Stops cleanly on SIGINT or SIGTERM (exit 0). Exit 1 when NATS refuses the
    /// credentials or the store fails; 2 for a bad configuration.
    #[command(after_help = commands::run::EXAMPLES)]
    Run(commands::run::RunArgs),
    /// Publish event files to NATS JetStream, each event to its subject with
    /// Nats-Msg-Id = its id; report how many were stored and how many were duplicates.
    #[command(after_help = commands::publish::EXAMPLES)]
    Publish(commands::publish::PublishArgs),
    /// Print a shell completion script to standard output.
    #[command(after_help = commands::completions::EXAMPLES)]
    Completions(commands::completions::CompletionsArgs),
}

/// `lifewatch report` reports.
#[derive(Subcommand)]
enum ReportCommand {
    /// What is stuck now, grouped by owner and state, oldest first, with how long
    /// past its deadline each one is.
    #[command(after_help = "Examples:\n  \
        lifewatch replay fixtures/launch-day.jsonl --db /tmp/lifewatch.db > /dev/null\n  \
        lifewatch report stuck --db /tmp/lifewatch.db --now 2026-11-28T00:00:00Z --format jsonl")]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if error.chain().any(is_broken_pipe) {
                return ExitCode::SUCCESS;
            }
            if error.chain().any(|cause| cause.is::<UsageError>()) {
                eprintln!("lifewatch: {}", error_message(&error));
                return ExitCode::from(EXIT_USAGE);
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => commands::replay::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Publish(args) => commands::publish::run(args),
        Command::Completions(args) => commands::completions::run(args),
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
            let config = AppConfig::load(config.as_deref())?;
            commands::report::stuck(&db, now, &config.engine, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { db, repair, config } => {
            let config = AppConfig::load(config.as_deref())?;
            commands::rebuild::run(&db, config.engine, repair)
        }
        Command::Verify { db, config, format } => {
            let config = AppConfig::load(config.as_deref())?;
            commands::verify::run(&db, config.engine, format)
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
            let config = AppConfig::load(config.as_deref())?;
            commands::redrive::run(&db, reason, config.engine)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
