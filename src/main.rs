//! lifewatch: watches the lifecycle of cloud accounts, projects and billing
//! disputes, and raises routed incidents when something goes wrong.
//!
//! This file holds the command line (clap) and the dispatch to
//! `commands::<command>::run`. Exit status: 0 success; 1 the work failed
//! (unreadable input, a check that found problems); 2 bad usage or a bad
//! configuration (a [`error::UsageError`] in the error's chain).

mod commands;
mod config;
mod deliver;
mod drill;
mod drill_live;
mod error;
mod input;
mod live;
mod output;
mod pipeline;
mod progress;
mod readiness;
mod risks;

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
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::UsageError;

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
    /// A simulated launch day through the real monitor in about a minute, with the
    /// dashboard served meanwhile: the main job in one command.
    ///
    /// Incidents are printed as they open; the dashboard's URL is printed first.
    /// Ctrl-C stops it cleanly (exit 0).
    #[command(after_help = commands::demo::EXAMPLES)]
    Demo(commands::demo::DemoArgs),
    /// Replay event files offline and print every incident raised, open or resolved.
    ///
    /// The files are read in order as one stream (`-` or no file: standard input).
    /// Rejected lines are listed on standard error with their line numbers and reasons;
    /// they do not change the exit status.
    #[command(after_help = commands::replay::EXAMPLES)]
    Replay(commands::replay::ReplayArgs),
    /// List the incidents stored in a database, ordered by opened_at then key.
    #[command(after_help = commands::incidents::EXAMPLES)]
    Incidents(commands::incidents::IncidentsArgs),
    /// Show an entity's timeline: every event, the state it moved to and how long it
    /// stayed, the incidents raised, and rejected events for that subject.
    #[command(after_help = commands::show::EXAMPLES)]
    Show(commands::show::ShowArgs),
    /// On-call reports over a database.
    #[command(after_help = commands::report::EXAMPLES)]
    Report {
        #[command(subcommand)]
        report: commands::report::ReportCommand,
    },
    /// Recompute every projection and incident from the event log alone and compare
    /// with what is stored. Exit 1 if they differ.
    #[command(after_help = commands::rebuild::EXAMPLES)]
    Rebuild(commands::rebuild::RebuildArgs),
    /// Check a database for damage without writing: SQLite's integrity check, every
    /// block of the event log, the stored projections against the log (as rebuild),
    /// and the log's end against the checkpoints. Exit 1 naming each problem.
    #[command(after_help = commands::verify::EXAMPLES)]
    Verify(commands::verify::VerifyArgs),
    /// Copy a database to a new file, safely while a writer runs (SQLite's VACUUM INTO).
    #[command(after_help = commands::backup::EXAMPLES)]
    Backup(commands::backup::BackupArgs),
    /// List the rejected events kept in a database.
    #[command(after_help = commands::rejected::EXAMPLES)]
    Rejected(commands::rejected::RejectedArgs),
    /// List the incident transitions set aside: the NATS server refused them for
    /// good (payload too large, invalid subject, no stream for the subject), so the
    /// monitor stopped retrying them and published the others.
    #[command(after_help = commands::outbox::EXAMPLES)]
    Outbox(commands::outbox::OutboxArgs),
    /// Acknowledge an incident: its escalation stops, `acknowledged` goes to its channels.
    #[command(after_help = commands::act::ACK_EXAMPLES)]
    Ack(commands::act::ActArgs),
    /// Resolve an illegal_transition or invariant_violation incident by hand.
    #[command(after_help = commands::act::RESOLVE_EXAMPLES)]
    Resolve(commands::act::ActArgs),
    /// Add a note to an incident's timeline.
    #[command(after_help = commands::act::NOTE_EXAMPLES)]
    Note(commands::act::NoteArgs),
    /// Feed rejected events through validation again; accepted ones join the log.
    #[command(after_help = commands::redrive::EXAMPLES)]
    Redrive(commands::redrive::RedriveArgs),
    /// The launch-readiness gate: the configuration and the operations package
    /// (owners, runbooks, comms, drills, risks, teams, deadlines) have no gap.
    ///
    /// Prints the readiness table; exits 1 naming each gap, 2 for an invalid
    /// configuration.
    #[command(after_help = commands::check::EXAMPLES)]
    Check(commands::check::CheckArgs),
    /// The launch risk register (ops/risks.toml): each risk's likelihood, impact,
    /// detection, owner, runbook and drill, and whether it is covered, accepted or
    /// has gaps (named).
    #[command(after_help = commands::risks::EXAMPLES)]
    Risks(commands::risks::RisksArgs),
    /// Run the launch drills (ops/drills/*.toml) through the real engine and
    /// store: a table of expectations met and missed with the time to detect
    /// and to notify, and a Markdown and JSON report; exits 1 on a miss.
    #[command(after_help = commands::drill::EXAMPLES)]
    Drill(commands::drill::DrillArgs),
    /// An incident's communication templates (ops/comms/<kind>.md: status-page
    /// updates, support macro, follow-up email), filled from its record.
    #[command(after_help = commands::comms::EXAMPLES)]
    Comms(commands::comms::CommsArgs),
    /// Replay a database's log under a changed configuration, without writing,
    /// and print what it would have changed: incidents opened, closed,
    /// re-routed, re-graded or re-timed.
    #[command(after_help = commands::backtest::EXAMPLES)]
    Backtest(commands::backtest::BacktestArgs),
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
    /// Serve the dashboard, the JSON API, /metrics and health probes over a database,
    /// read-only (next to a running `lifewatch run`, or over a copy).
    #[command(after_help = commands::serve::EXAMPLES)]
    Serve(commands::serve::ServeArgs),
    /// Publish event files to NATS JetStream, each event to its subject with
    /// Nats-Msg-Id = its id; report how many were stored and how many were duplicates.
    #[command(after_help = commands::publish::EXAMPLES)]
    Publish(commands::publish::PublishArgs),
    /// Print incident transitions from the INCIDENTS stream as they arrive, from now,
    /// from the start or from a time.
    #[command(after_help = commands::tail::EXAMPLES)]
    Tail(commands::tail::TailArgs),
    /// List the notifications of a database (pending, delivered, dead); `deliveries
    /// retry` sends dead ones again.
    #[command(after_help = commands::deliveries::EXAMPLES)]
    Deliveries(commands::deliveries::DeliveriesArgs),
    /// Notification channels: `notify test --channel NAME` sends a test message.
    #[command(after_help = commands::notify::EXAMPLES)]
    Notify {
        #[command(subcommand)]
        notify: commands::notify::NotifyCommand,
    },
    /// The effective configuration (`config show`).
    #[command(after_help = commands::config::EXAMPLES)]
    Config {
        #[command(subcommand)]
        config: commands::config::ConfigCommand,
    },
    /// Print a shell completion script to standard output.
    #[command(after_help = commands::completions::EXAMPLES)]
    Completions(commands::completions::CompletionsArgs),
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
        Command::Demo(args) => commands::demo::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Risks(args) => commands::risks::main(args),
        Command::Drill(args) => commands::drill::main(args),
        Command::Comms(args) => commands::comms::run(args),
        Command::Backtest(args) => commands::backtest::run(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Publish(args) => commands::publish::run(args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Tail(args) => commands::tail::run(args),
        Command::Config { config } => commands::config::main(config),
        Command::Notify { notify } => commands::notify::main(notify),
        Command::Deliveries(args) => commands::deliveries::main(args),
        Command::Incidents(args) => commands::incidents::main(args),
        Command::Show(args) => commands::show::main(args),
        Command::Report { report } => commands::report::main(report),
        Command::Rebuild(args) => commands::rebuild::main(args),
        Command::Verify(args) => commands::verify::main(args),
        Command::Backup(args) => commands::backup::main(args),
        Command::Rejected(args) => commands::rejected::main(args),
        Command::Outbox(args) => commands::outbox::main(args),
        Command::Ack(args) => commands::act::ack(args),
        Command::Resolve(args) => commands::act::resolve(args),
        Command::Note(args) => commands::act::note(args),
        Command::Redrive(args) => commands::redrive::main(args),
    }
}
