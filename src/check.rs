//! `lifewatch check`: the configuration and the operations package agree.

use std::io::{self, Write};
use std::path::Path;

use lifewatch_core::{Config, IncidentKind, State, SubjectType};

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
