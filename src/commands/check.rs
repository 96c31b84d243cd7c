//! `lifewatch check`: the configuration and the operations package agree.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{Config, IncidentKind, State, SubjectType};

use crate::config::AppConfig;
use crate::output::{self, Table};

/// The `Examples:` section of `lifewatch check --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch check
  lifewatch check --format json
  lifewatch check --config /etc/lifewatch/lifewatch.toml --secrets
  lifewatch check --config ops/lifewatch.toml --root . --config-only

The launch-readiness gate: every incident kind has an owner, a runbook with
every section (Detect, Impact, Triage, Mitigate, Rollback, Escalate,
Communicate), a comms template and a drill; every risk of ops/risks.toml is
covered or accepted; every team has a channel and an escalation chain that
ends with a person (a page or an email); every deadline is set; every drill
of ops/drills passes. Prints a table (kind or risk x owner, runbook, comms,
drill, channel, status) and exits 1 naming each gap on standard error; an
invalid configuration exits 2 naming the key. --config-only checks only the
configuration and its runbooks.

Paths are relative to the operations package's root: the directory of the
--config file (the directory above it when that directory is named ops, as
in the shipped ops/lifewatch.toml), or for the built-in configuration the
repository lifewatch was built from. --root overrides it.";

/// `lifewatch check` arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory that runbook, comms, drill and risk paths are relative to
    /// (default: the configuration's root, see below).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Check only the configuration and its runbooks, not the launch package
    /// (risks, comms, drills, teams).
    #[arg(long)]
    config_only: bool,
    /// Do not run the drills (the gate then does not prove they pass).
    #[arg(long, conflicts_with = "config_only")]
    no_drills: bool,
    /// A channel secret that is not set in this environment is a gap: run
    /// it where the monitor runs.
    #[arg(long, conflicts_with = "config_only")]
    secrets: bool,
    /// Output format: table for people, json for CI.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: CheckFormat,
}

/// How `check` prints.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Tables for people.
    Table,
    /// One JSON document: ready, rows, gaps, warnings, drills.
    Json,
}

/// `lifewatch check`: exit 1 when there is a problem.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(args.config.as_deref())?;
    let root = args.root.clone().unwrap_or_else(|| crate::config::runbook_root(args.config.as_deref()));
    if args.config_only {
        return config_only(&args, &config, &root);
    }
    let options = crate::readiness::Options { run_drills: !args.no_drills, secrets: args.secrets };
    let readiness = crate::readiness::assess(&config, &root, options);
    let mut out = io::stdout().lock();
    match args.format {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &readiness)?;
            writeln!(out)?;
        }
        CheckFormat::Table => {
            let mut table = Table::new(&["ITEM", "OWNER", "RUNBOOK", "COMMS", "DRILL", "CHANNEL", "STATUS"]);
            for row in &readiness.rows {
                table.row([
                    &row.item,
                    &row.owner,
                    &row.runbook,
                    &row.comms,
                    &row.drill,
                    &row.channel,
                    &row.status,
                ]);
            }
            table.write(&mut out)?;
            writeln!(out)?;
            check_notifications(&config.engine, &config.notifications, &mut out)?;
            let with_deadline: Vec<String> = State::all()
                .filter_map(|state| {
                    config
                        .engine
                        .deadline(state)
                        .map(|deadline| format!("{} {state} {deadline}", state.entity_type()))
                })
                .collect();
            writeln!(out, "deadlines: {}", with_deadline.join(", "))?;
            writeln!(out, "outage_threshold: {}", config.engine.outage_threshold)?;
            if !options.run_drills {
                writeln!(out, "drills: not run (--no-drills)")?;
            }
            if readiness.ready {
                writeln!(
                    out,
                    "ready: every kind and risk is owned, written down, rehearsed and routed to a person"
                )?;
            } else {
                writeln!(out, "NOT READY: {} gaps (listed on standard error)", readiness.gaps.len())?;
            }
        }
    }
    drop(out);
    for warning in &readiness.warnings {
        eprintln!("lifewatch check: warning: {}", output::terminal_safe(warning));
    }
    for gap in &readiness.gaps {
        eprintln!(
            "lifewatch check: gap: {}: {}",
            output::terminal_safe(&gap.item),
            output::terminal_safe(&gap.message)
        );
    }
    if args.root.is_none() && readiness.gaps.iter().any(|gap| gap.message.contains(" missing: ")) {
        eprintln!(
            "lifewatch check: the package was looked for in {} (the configuration's root); \
             give --root DIR to name the directory that holds it",
            root.display()
        );
    }
    Ok(if readiness.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `check --config-only`: the configuration and its runbooks.
fn config_only(args: &CheckArgs, config: &AppConfig, root: &Path) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut problems = check(&config.engine, root, &mut out)?;
    problems.extend(check_notifications(&config.engine, &config.notifications, &mut out)?);
    drop(out);
    for problem in &problems {
        eprintln!("lifewatch check: {problem}");
    }
    if args.root.is_none() && problems.iter().any(|problem| problem.contains(" missing: ")) {
        eprintln!(
            "lifewatch check: runbooks were looked for in {} (the configuration's root); \
             give --root DIR to name the directory that holds them",
            root.display()
        );
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The entity types each kind of incident can be about.
pub fn subjects_of(kind: IncidentKind) -> &'static [SubjectType] {
    use SubjectType::{Account, Dispute, Project, Region};
    match kind {
        IncidentKind::Stuck | IncidentKind::IllegalTransition => &[Account, Project, Dispute],
        IncidentKind::ProvisioningFailed | IncidentKind::InvariantViolation => &[Project],
        IncidentKind::OnboardingFailed => &[Account],
        IncidentKind::QuotaBreach => &[Account, Project],
        IncidentKind::BillingDispute => &[Dispute],
        IncidentKind::RegionalOutage => &[Region],
    }
}

/// What is wrong with the runbook at `runbook` (relative to `root`), if
/// anything. A runbook must be a non-empty file inside the root: an absolute
/// path, a `..` component or a symbolic link that leads out of the root would
/// point incidents at files that are not part of the operations package
/// (`/etc/passwd` exists everywhere, so existing is not enough).
pub fn runbook_problem(root: &Path, runbook: &str) -> Option<String> {
    let relative = Path::new(runbook);
    if relative.is_absolute() {
        return Some(format!("is outside the runbook root (an absolute path): {runbook}"));
    }
    if relative.components().any(|component| !matches!(component, Component::Normal(_) | Component::CurDir)) {
        return Some(format!("is outside the runbook root (a `..` component): {runbook}"));
    }
    let path = root.join(relative);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) => return Some(format!("missing: {}: {error}", path.display())),
    };
    // Both sides are canonical, so that a symbolic link anywhere on the way
    // (in the root itself too) is followed before comparing.
    match (std::fs::canonicalize(root), std::fs::canonicalize(&path)) {
        (Ok(canonical_root), Ok(canonical)) if !canonical.starts_with(&canonical_root) => {
            return Some(format!(
                "is outside the runbook root (a symbolic link to {}): {}",
                canonical.display(),
                path.display()
            ));
        }
        (Ok(_), Ok(_)) => {}
        (Err(error), _) | (_, Err(error)) => return Some(format!("missing: {}: {error}", path.display())),
    }
    if metadata.is_file() && metadata.len() > 0 {
        None
    } else {
        Some(format!("is empty or not a file: {}", path.display()))
    }
}

/// Prints where each team's incidents are sent (channel kinds, never their
/// secrets) and returns one line per problem: a team that owns no incident
/// kind is a typing mistake (its routes would never be used).
pub fn check_notifications(
    config: &Config,
    notifications: &lifewatch_notify::Notifications,
    out: &mut impl Write,
) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    if notifications.teams.is_empty() {
        writeln!(out, "notifications: none configured ([[channels]] and [[teams]])")?;
        return Ok(problems);
    }
    // Every team an owner rule names, the catch-all's too.
    let owners: std::collections::BTreeSet<&str> =
        config.owner_rules().iter().map(|rule| rule.owner.as_str()).collect();
    let any = |set: &std::collections::BTreeSet<String>| {
        if set.is_empty() { "any".to_string() } else { set.iter().cloned().collect::<Vec<_>>().join(",") }
    };
    writeln!(
        out,
        "{:<18} {:<20} {:<10} {:<16} {:<20} TRANSITIONS",
        "TEAM", "CHANNEL", "KIND", "SEVERITIES", "KINDS"
    )?;
    for team in notifications.teams.values() {
        for route in &team.routes {
            let kind = notifications.channels.get(&route.channel).map_or("?", |channel| channel.kind.name());
            writeln!(
                out,
                "{:<18} {:<20} {:<10} {:<16} {:<20} {}",
                team.name,
                route.channel,
                kind,
                any(&route.severities),
                any(&route.kinds),
                any(&route.transitions)
            )?;
        }
        for step in &team.escalation {
            writeln!(
                out,
                "{:<18} escalation after {}s{}: {}",
                team.name,
                step.after_seconds,
                if step.repeat { " (repeated)" } else { "" },
                step.notify.join(", ")
            )?;
        }
        if !owners.contains(team.name.as_str()) {
            problems.push(format!(
                "notifications: team {:?} owns no incident kind (owners: {})",
                team.name,
                owners.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(problems)
}

/// Prints the routing table to `out` and returns one line per problem.
pub fn check(config: &Config, root: &Path, out: &mut impl Write) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    writeln!(out, "{:<20} {:<8} {:<9} {:<18} RUNBOOK", "KIND", "ENTITY", "SEVERITY", "OWNER")?;
    for kind in IncidentKind::ALL {
        let runbook = config.runbook(kind);
        for &subject in subjects_of(kind) {
            let owner = config.owner(kind, subject);
            let severity = config.severity(kind, subject, None);
            writeln!(
                out,
                "{:<20} {:<8} {:<9} {:<18} {runbook}",
                kind.as_str(),
                subject.as_str(),
                severity.as_str(),
                owner
            )?;
            if owner.trim().is_empty() {
                problems.push(format!("{kind} on {subject} reaches no owner"));
            }
        }
        if let Some(problem) = runbook_problem(root, runbook) {
            problems.push(format!("runbook of {kind} {problem}"));
        }
    }
    let with_deadline: Vec<String> = State::all()
        .filter_map(|state| {
            config.deadline(state).map(|deadline| format!("{} {state} {deadline}", state.entity_type()))
        })
        .collect();
    writeln!(out, "deadlines: {}", with_deadline.join(", "))?;
    writeln!(out, "outage_threshold: {}", config.outage_threshold)?;
    if problems.is_empty() {
        writeln!(out, "ok: every incident kind reaches an owner and every runbook exists")?;
    }
    Ok(problems)
}
