//! lifewatch: watches the lifecycle of cloud accounts, projects and billing
//! disputes, and raises routed incidents when something goes wrong.
//!
//! Exit status: 0 success; 1 the work failed (unreadable input, a check that
//! found problems); 2 bad usage or a bad configuration.

mod check;
mod input;
mod output;
mod replay;

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
    },
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
            eprintln!("lifewatch: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<io::Error>().is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

fn config_or_exit(path: Option<&Path>) -> Result<Config, ExitCode> {
    load_config(path).map_err(|message| {
        eprintln!("lifewatch: bad configuration: {message}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay { files, now, config, format } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(code) => return Ok(code),
            };
            let mut engine = Engine::new(config);
            let mut totals = replay::feed(&mut engine, &files)?;
            replay::finish(&mut engine, now);
            totals.entities = engine.entity_count();
            let order = engine.sorted_incidents();
            output::print_record_stream(order.into_iter().filter_map(|index| engine.record(index)), format)?;
            replay::report(&totals)?;
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
        Command::Simulate { seed, accounts, faults, out } => {
            let options = lifewatch_sim::SimulateOptions { seed, accounts, faults, ..Default::default() };
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
