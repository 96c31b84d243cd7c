//! `lifewatch check`: the configuration and the operations package agree.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use lifewatch_core::{Config, IncidentKind, State, SubjectType};

use crate::config::AppConfig;

/// The `Examples:` section of `lifewatch check --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch check
  lifewatch check --config ops/lifewatch.toml --root .";

/// `lifewatch check` arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory that runbook paths are relative to.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

/// `lifewatch check`: exit 1 when there is a problem.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = AppConfig::load(args.config.as_deref())?;
    let problems = check(&config.engine, &args.root, &mut io::stdout().lock())?;
    for problem in &problems {
        eprintln!("lifewatch check: {problem}");
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
        let path = root.join(runbook);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() && metadata.len() > 0 => {}
            Ok(_) => problems.push(format!("runbook of {kind} is empty or not a file: {}", path.display())),
            Err(error) => problems.push(format!("runbook of {kind} missing: {}: {error}", path.display())),
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
