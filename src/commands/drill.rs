//! `lifewatch drill [FILE...]`: the launch's tabletop rehearsals run through
//! the real engine and store (see src/drill.rs), a table of expectations met
//! and missed, and a report for the launch review.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::AppConfig;
use crate::drill::{self, Outcome};
use crate::output::{self, Format, Table};

/// The `Examples:` section of `lifewatch drill --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch drill
  lifewatch drill ops/drills/project_stuck.toml --report /tmp/drill-report
  lifewatch drill --config /etc/lifewatch/lifewatch.toml --format json
  lifewatch drill ops/drills/project_stuck.toml --nats nats://127.0.0.1:4222

Without FILE, every drill of ops/drills/ under the package root runs. Event
drills replay their scenario into a temporary database with the
configuration's deadlines, owners, severities and notification routing, so a
changed configuration is rehearsed before it ships; times are event time.
Alert drills need promtool (Debian: apt-get install prometheus).

With --nats URL, event drills run through a live monitor (`lifewatch run`,
started by the drill) on a rehearsal NATS server, their channels pointed at
local receivers: the events are moved so that the scenario ends now, a
notification counts once delivered, and the time to notify is wall-clock.

The report is written as PATH.md and PATH.json (default drill-report in the
current directory). Exit 0 when every expectation was met, 1 when one was
missed, 2 when a drill file is invalid.";

/// `lifewatch drill` arguments.
#[derive(Args)]
pub struct DrillArgs {
    /// Drill files (default: every ops/drills/*.toml under the package root).
    files: Vec<PathBuf>,
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The operations package's root, where ops/drills, ops/comms and
    /// ops/prometheus are (default: the configuration's root, as for check).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Write the report to PATH.md and PATH.json.
    #[arg(long, value_name = "PATH", default_value = "drill-report")]
    report: PathBuf,
    /// Write no report files.
    #[arg(long, conflicts_with = "report")]
    no_report: bool,
    /// Output format: table for people, json or jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
    /// Run the event drills through a live monitor on this rehearsal NATS
    /// server (one of its own: the drill refuses a server that has the
    /// monitor's streams), with every channel pointed at local receivers.
    #[arg(long = "nats", value_name = "URL")]
    nats: Option<String>,
    /// With --nats: how long to wait for a drill's expectations.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = crate::commands::parse_duration)]
    timeout: std::time::Duration,
}

/// `lifewatch drill`.
pub fn main(args: DrillArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(args.config.as_deref())?;
    let root = args.root.clone().unwrap_or_else(|| crate::config::runbook_root(args.config.as_deref()));
    let files = if args.files.is_empty() {
        drill::shipped(&root).map_err(|error| crate::error::UsageError::Drill(Box::new(error)))?
    } else {
        args.files.clone()
    };
    let mut drills = Vec::new();
    for file in &files {
        drills.push(drill::load(file).map_err(|error| crate::error::UsageError::Drill(Box::new(error)))?);
    }
    let outcomes = match &args.nats {
        None => run_all(&drills, &config, &root)?,
        Some(url) => {
            let options = crate::drill_live::LiveOptions {
                url: url.clone(),
                timeout: args.timeout,
                config: args.config.clone(),
            };
            let mut outcomes = Vec::new();
            for drill in &drills {
                eprintln!("lifewatch drill: {} (live)", crate::readiness::drill_name(&drill.path));
                outcomes.push(crate::drill_live::run(drill, &config, &root, &options)?);
            }
            outcomes
        }
    };
    let mut out = io::stdout().lock();
    match args.format {
        Format::Table => write_table(&outcomes, &mut out)?,
        Format::Json => output::write_json_array(&mut out, outcomes.iter())?,
        Format::Jsonl => {
            for outcome in &outcomes {
                output::write_json_line(&mut out, outcome)?;
            }
        }
    }
    out.flush()?;
    drop(out);
    if !args.no_report {
        let markdown = args.report.with_extension("md");
        let json = args.report.with_extension("json");
        std::fs::write(&markdown, drill::markdown(&outcomes))
            .map_err(|error| anyhow::anyhow!("cannot write the report {}: {error}", markdown.display()))?;
        std::fs::write(&json, serde_json::to_vec_pretty(&outcomes)?)
            .map_err(|error| anyhow::anyhow!("cannot write the report {}: {error}", json.display()))?;
        eprintln!("lifewatch drill: report written to {} and {}", markdown.display(), json.display());
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|outcome| !outcome.passed).collect();
    for outcome in &failed {
        for check in outcome.checks.iter().filter(|check| !check.met) {
            eprintln!(
                "lifewatch drill: {}: {}: {}",
                output::terminal_safe(&outcome.drill),
                output::terminal_safe(&check.expectation),
                output::terminal_safe(&check.misses.join("; "))
            );
        }
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs every drill, in order.
pub fn run_all(
    drills: &[drill::Drill],
    config: &AppConfig,
    root: &std::path::Path,
) -> anyhow::Result<Vec<Outcome>> {
    drills.iter().map(|drill| drill::run(drill, config, root)).collect()
}

fn write_table(outcomes: &[Outcome], out: &mut impl Write) -> io::Result<()> {
    let mut table = Table::new(&["DRILL", "EXPECTATION", "MET", "DETECT", "NOTIFY", "NOTIFIED", "MISSED"]);
    for outcome in outcomes {
        let name = std::path::Path::new(&outcome.drill)
            .file_stem()
            .map_or_else(|| outcome.drill.clone(), |stem| stem.to_string_lossy().into_owned());
        for check in &outcome.checks {
            table.row([
                name.as_str(),
                check.expectation.as_str(),
                if check.met { "met" } else { "MISSED" },
                check.time_to_detect.as_deref().unwrap_or("-"),
                check.time_to_notify.as_deref().unwrap_or("-"),
                &check.notified.join(","),
                &check.misses.join("; "),
            ]);
        }
    }
    table.write(out)?;
    let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
    writeln!(out, "{passed} of {} drills passed", outcomes.len())
}
