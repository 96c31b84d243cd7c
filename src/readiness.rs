//! The launch-readiness gate of `lifewatch check`: every incident kind has
//! an owner, a runbook with every section, a comms template and a drill;
//! every risk is covered or accepted; every team has a channel and an
//! escalation chain that ends with a person; every deadline is set; every
//! drill passes. [`assess`] gathers it all into rows (one per kind and per
//! risk) and named gaps; `src/commands/check.rs` prints them.

use std::collections::BTreeSet;
use std::path::Path;

use lifewatch_core::{IncidentKind, State};
use lifewatch_notify::Notifications;
use serde::Serialize;

use crate::config::AppConfig;
use crate::drill::{self, Outcome, Scenario};

/// The sections every runbook has, in this order.
pub const RUNBOOK_SECTIONS: [&str; 7] =
    ["Detect", "Impact", "Triage", "Mitigate", "Rollback", "Escalate", "Communicate"];

/// The states that have a deadline in the shipped configuration: each must
/// keep one, or an entity could wait there forever unseen.
pub const DEADLINE_STATES: [&str; 7] = [
    "account pending",
    "account failed",
    "project requested",
    "project provisioning",
    "project failed",
    "project deleting",
    "dispute open",
];

/// Where comms templates are, relative to the package root.
pub const COMMS_DIR: &str = "ops/comms";

/// What kind of gap: what was removed or never written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// An incident kind reaches no owner.
    Owner,
    /// A runbook is missing, outside the package, or lacks a section.
    Runbook,
    /// A comms template is missing or uses a placeholder that does not exist.
    Comms,
    /// An incident kind or risk has no drill.
    Drill,
    /// A drill did not pass.
    DrillFailed,
    /// A team has no channel, or its escalation chain ends with nobody.
    Channel,
    /// A state that must have a deadline has none.
    Deadline,
    /// A risk is neither covered nor accepted, or the register is wrong.
    Risk,
    /// A channel's secret is not set (only with `--secrets`).
    Secret,
}

/// One gap, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// What it is about: `kind stuck`, `risk events_stop`, `team launch-ops`…
    pub item: String,
    /// Its kind.
    pub gap: GapKind,
    /// What exactly is missing.
    pub message: String,
}

/// One row of the readiness table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// `kind <name>` or `risk <id>`.
    pub item: String,
    /// The owning team(s).
    pub owner: String,
    /// `ok` or what is wrong.
    pub runbook: String,
    /// The comms template, or what is wrong.
    pub comms: String,
    /// The drills that rehearse it and how they went.
    pub drill: String,
    /// The first channel of each owner, or what is wrong.
    pub channel: String,
    /// `ready`, `accepted` or `gap`.
    pub status: String,
}

/// The whole assessment.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// Whether there is no gap.
    pub ready: bool,
    /// Kinds, then risks.
    pub rows: Vec<Row>,
    /// Every gap, named.
    pub gaps: Vec<Gap>,
    /// What is not a gap but should be known (a secret not set here).
    pub warnings: Vec<String>,
    /// The drills' outcomes (empty with `--no-drills`).
    pub drills: Vec<Outcome>,
}

/// What to assess beyond the files.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Run every drill (the gate's default).
    pub run_drills: bool,
    /// Treat a channel secret that is not set as a gap.
    pub secrets: bool,
}

/// The sections of a Markdown text (`## Title`), with their bodies;
/// headings inside fenced code are not sections.
pub fn sections(text: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        match line.strip_prefix("## ") {
            Some(title) if !fenced => sections.push((title.trim().to_string(), String::new())),
            _ => {
                if let Some((_, body)) = sections.last_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    sections
}

/// What is wrong with a runbook's sections: each of [`RUNBOOK_SECTIONS`],
/// in order, none empty.
pub fn section_problems(text: &str) -> Vec<String> {
    let found = sections(text);
    let titles: Vec<&str> = found.iter().map(|(title, _)| title.as_str()).collect();
    let mut problems = Vec::new();
    let missing: Vec<&str> =
        RUNBOOK_SECTIONS.iter().copied().filter(|title| !titles.contains(title)).collect();
    if !missing.is_empty() {
        problems.push(format!("no section {}", missing.join(", ")));
    } else if titles != RUNBOOK_SECTIONS {
        problems.push(format!(
            "sections {} are not in the order {}",
            titles.join(", "),
            RUNBOOK_SECTIONS.join(", ")
        ));
    }
    for (title, body) in &found {
        if body.trim().is_empty() {
            problems.push(format!("section {title} is empty"));
        }
    }
    problems
}

/// What is wrong with the comms file `name` of the package at `root`: it
/// is missing, lacks a template its kind needs (every status-page phase,
/// the support macro and the follow-up email), has an empty one, or names a
/// placeholder that does not exist.
pub fn comms_problems(root: &Path, name: &str) -> Vec<String> {
    let relative = format!("{COMMS_DIR}/{name}.md");
    let text = match std::fs::read_to_string(root.join(&relative)) {
        Ok(text) => text,
        Err(error) => return vec![format!("{relative} missing: {error}")],
    };
    let (templates, problems) = lifewatch_core::comms::parse(&text, lifewatch_core::comms::required(name));
    let mut problems: Vec<String> = problems.iter().map(|problem| format!("{relative}: {problem}")).collect();
    if templates.is_empty() {
        problems.push(format!("{relative}: no template (a `## NAME` section)"));
    }
    problems
}

/// What is wrong with `team`'s notifications for incidents of `kind` at
/// these severities: no team, no route, or an escalation chain whose last
/// step reaches no person (a page or an email).
fn team_problem(
    notifications: &Notifications,
    team: &str,
    incidents: &[(IncidentKind, &str)],
) -> Option<String> {
    let Some(configured) = notifications.teams.get(team) else {
        return Some(format!("team {team} has no [[teams]] entry: its incidents reach no channel"));
    };
    if configured.routes.is_empty() {
        return Some(format!("team {team} routes nothing to a channel"));
    }
    if configured.escalation.is_empty() {
        return Some(format!("team {team} has no escalation chain"));
    }
    let last = u32::try_from(configured.escalation.len() - 1).unwrap_or(u32::MAX);
    for &(kind, severity) in incidents {
        let targets = notifications.escalation_targets(team, last, severity, kind.as_str());
        let person = targets.iter().any(|name| {
            notifications.channels.get(*name).is_some_and(lifewatch_notify::Channel::reaches_a_person)
        });
        if !person {
            return Some(format!(
                "team {team}'s escalation chain ends with no person for a {severity} {kind}: its last step reaches {} (a page or an email is needed)",
                if targets.is_empty() { "nothing".to_string() } else { targets.join(", ") }
            ));
        }
    }
    None
}

/// The channels of a team's routes that reach a person (else all of
/// them), for the table.
fn channels_of(notifications: &Notifications, team: &str) -> String {
    let Some(team) = notifications.teams.get(team) else { return "none".to_string() };
    let mut seen = BTreeSet::new();
    let all: Vec<&str> = team
        .routes
        .iter()
        .map(|route| route.channel.as_str())
        .filter(|channel| seen.insert(*channel))
        .collect();
    let people: Vec<&str> = all
        .iter()
        .copied()
        .filter(|name| {
            notifications.channels.get(*name).is_some_and(lifewatch_notify::Channel::reaches_a_person)
        })
        .collect();
    if people.is_empty() { all.join(",") } else { people.join(",") }
}

/// Assesses the package at `root` under `config`.
pub fn assess(config: &AppConfig, root: &Path, options: Options) -> Readiness {
    let engine = &config.engine;
    let notifications = &config.notifications;
    let mut gaps: Vec<Gap> = Vec::new();
    let mut warnings = Vec::new();
    let gap = |gaps: &mut Vec<Gap>, item: &str, kind: GapKind, message: String| {
        gaps.push(Gap { item: item.to_string(), gap: kind, message });
    };

    // The drills, loaded once: which kinds they expect and whether they pass.
    let mut drills: Vec<drill::Drill> = Vec::new();
    match drill::shipped(root) {
        Ok(files) => {
            for file in files {
                match drill::load(&file) {
                    Ok(loaded) => drills.push(loaded),
                    Err(error) => gap(&mut gaps, "drills", GapKind::Drill, error.to_string()),
                }
            }
        }
        Err(error) => gap(&mut gaps, "drills", GapKind::Drill, error.to_string()),
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    if options.run_drills {
        for loaded in &drills {
            match drill::run(loaded, config, root) {
                Ok(outcome) => {
                    for check in outcome.checks.iter().filter(|check| !check.met) {
                        gap(
                            &mut gaps,
                            &format!("drill {}", drill_name(&loaded.path)),
                            GapKind::DrillFailed,
                            format!("{}: {}", check.expectation, check.misses.join("; ")),
                        );
                    }
                    outcomes.push(outcome);
                }
                Err(error) => gap(
                    &mut gaps,
                    &format!("drill {}", drill_name(&loaded.path)),
                    GapKind::DrillFailed,
                    format!("could not run: {error:#}"),
                ),
            }
        }
    }
    let drill_cell = |names: &[String]| -> String {
        if names.is_empty() {
            return "none".to_string();
        }
        names
            .iter()
            .map(|name| {
                match outcomes.iter().find(|outcome| drill_name(Path::new(&outcome.drill)) == *name) {
                    Some(outcome) if outcome.passed => name.clone(),
                    Some(_) => format!("{name} FAILED"),
                    None => name.clone(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let drill_failed = |names: &[String]| {
        names.iter().any(|name| {
            outcomes.iter().any(|outcome| drill_name(Path::new(&outcome.drill)) == *name && !outcome.passed)
        })
    };

    let mut rows = Vec::new();
    for kind in IncidentKind::ALL {
        let item = format!("kind {kind}");
        let before = gaps.len();
        let subjects = crate::commands::check::subjects_of(kind);
        let mut owners: Vec<&str> = Vec::new();
        let mut incidents_of: Vec<(&str, &str)> = Vec::new();
        for &subject in subjects {
            let owner = engine.owner(kind, subject);
            if owner.trim().is_empty() {
                gap(&mut gaps, &item, GapKind::Owner, format!("{kind} on {subject} reaches no owner"));
                continue;
            }
            if !owners.contains(&owner) {
                owners.push(owner);
            }
            incidents_of.push((owner, engine.severity(kind, subject, None).as_str()));
        }
        // Runbook: inside the package, every section.
        let runbook = engine.runbook(kind);
        let runbook_cell = match crate::commands::check::runbook_problem(root, runbook) {
            Some(problem) => {
                gap(&mut gaps, &item, GapKind::Runbook, format!("runbook of {kind} {problem}"));
                "missing".to_string()
            }
            None => {
                let text = std::fs::read_to_string(root.join(runbook)).unwrap_or_default();
                let problems = section_problems(&text);
                for problem in &problems {
                    gap(&mut gaps, &item, GapKind::Runbook, format!("runbook {runbook}: {problem}"));
                }
                if problems.is_empty() { "ok".to_string() } else { "sections".to_string() }
            }
        };
        let comms = comms_problems(root, kind.as_str());
        for problem in &comms {
            gap(&mut gaps, &item, GapKind::Comms, problem.clone());
        }
        let rehearsing: Vec<String> = drills
            .iter()
            .filter(|loaded| loaded.expectations.iter().any(|expect| expect.kind == kind.as_str()))
            .map(|loaded| drill_name(&loaded.path))
            .collect();
        if rehearsing.is_empty() {
            gap(
                &mut gaps,
                &item,
                GapKind::Drill,
                format!("no drill of {} expects a {kind} incident", drill::DRILLS_DIR),
            );
        }
        let mut channel_problems = Vec::new();
        for owner in &owners {
            let incidents: Vec<(IncidentKind, &str)> = incidents_of
                .iter()
                .filter(|(team, _)| team == owner)
                .map(|(_, severity)| (kind, *severity))
                .collect();
            if let Some(problem) = team_problem(notifications, owner, &incidents) {
                channel_problems.push(problem.clone());
                gap(&mut gaps, &item, GapKind::Channel, problem);
            }
        }
        rows.push(Row {
            item,
            owner: if owners.is_empty() { "none".to_string() } else { owners.join(",") },
            runbook: runbook_cell,
            comms: if comms.is_empty() { kind.as_str().to_string() } else { "missing".to_string() },
            drill: drill_cell(&rehearsing),
            channel: if channel_problems.is_empty() {
                owners.iter().map(|owner| channels_of(notifications, owner)).collect::<Vec<_>>().join(" / ")
            } else {
                "gap".to_string()
            },
            status: status(gaps.len() > before || drill_failed(&rehearsing)),
        });
    }

    // Risks: the register's own gaps, and the same checks on what it names.
    let register = crate::risks::load(root);
    match &register {
        Err(error) => gap(&mut gaps, "risks", GapKind::Risk, format!("{error:#}")),
        Ok(register) => {
            for risk in &register.risks {
                let item = format!("risk {}", risk.id);
                let before = gaps.len();
                let accepted = risk.accepted.is_some();
                if let crate::risks::Status::Gaps(missing) = register.status(risk) {
                    for missing in missing {
                        gap(&mut gaps, &item, GapKind::Risk, missing.to_string());
                    }
                }
                let mut row = Row { item: item.clone(), ..Row::default() };
                row.owner = risk
                    .owner
                    .clone()
                    .or_else(|| risk.accepted.as_ref().map(|accepted| accepted.owner.clone()))
                    .unwrap_or_else(|| "none".to_string());
                row.runbook = match &risk.runbook {
                    None => "-".to_string(),
                    Some(runbook) => {
                        let text = std::fs::read_to_string(root.join(runbook)).unwrap_or_default();
                        let problems = section_problems(&text);
                        for problem in &problems {
                            gap(&mut gaps, &item, GapKind::Runbook, format!("runbook {runbook}: {problem}"));
                        }
                        if problems.is_empty() { "ok".to_string() } else { "sections".to_string() }
                    }
                };
                row.comms = match &risk.comms {
                    None => "-".to_string(),
                    Some(comms) => {
                        let problems = comms_problems(root, comms);
                        for problem in &problems {
                            gap(&mut gaps, &item, GapKind::Comms, problem.clone());
                        }
                        if problems.is_empty() { comms.clone() } else { "missing".to_string() }
                    }
                };
                let rehearsing: Vec<String> = match &risk.drill {
                    None => Vec::new(),
                    Some(path) => {
                        let name = drill_name(Path::new(path));
                        match drills.iter().find(|loaded| drill_name(&loaded.path) == name) {
                            Some(loaded) if loaded.risk != risk.id => {
                                gap(
                                    &mut gaps,
                                    &item,
                                    GapKind::Drill,
                                    format!("drill {path} rehearses risk {}, not {}", loaded.risk, risk.id),
                                );
                            }
                            Some(loaded) => {
                                if let (Scenario::Alert(alert), Some(owner)) = (&loaded.scenario, &risk.owner)
                                    && alert.team.as_ref().is_some_and(|team| team != owner)
                                {
                                    gap(
                                        &mut gaps,
                                        &item,
                                        GapKind::Drill,
                                        format!(
                                            "drill {path} expects team {:?}, the risk's owner is {owner}",
                                            alert.team
                                        ),
                                    );
                                }
                            }
                            None => {}
                        }
                        vec![name]
                    }
                };
                row.drill = if accepted { "-".to_string() } else { drill_cell(&rehearsing) };
                row.channel = match (&risk.owner, accepted) {
                    (Some(owner), false) => match notifications.teams.get(owner) {
                        None => {
                            gap(
                                &mut gaps,
                                &item,
                                GapKind::Channel,
                                format!(
                                    "team {owner} has no [[teams]] entry: its incidents reach no channel"
                                ),
                            );
                            "gap".to_string()
                        }
                        Some(_) => channels_of(notifications, owner),
                    },
                    _ => "-".to_string(),
                };
                row.status = if accepted && gaps.len() == before {
                    "accepted".to_string()
                } else {
                    status(gaps.len() > before || drill_failed(&rehearsing))
                };
                rows.push(row);
            }
        }
    }

    // Teams: every team of [[teams]] and every owner has a channel and a chain.
    let mut owners: BTreeSet<&str> = BTreeSet::new();
    for kind in IncidentKind::ALL {
        for &subject in crate::commands::check::subjects_of(kind) {
            owners.insert(engine.owner(kind, subject));
        }
    }
    // A team owns something when an owner rule names it (the catch-all
    // too) or a risk does.
    let mut owning: BTreeSet<String> = engine.owner_rules().iter().map(|rule| rule.owner.clone()).collect();
    if let Ok(register) = &register {
        owning.extend(register.risks.iter().filter_map(|risk| risk.owner.clone()));
    }
    for team in notifications.teams.keys() {
        if !owning.contains(team) {
            gap(
                &mut gaps,
                &format!("team {team}"),
                GapKind::Channel,
                format!(
                    "team {team} owns no incident kind and no risk: its routes are never used (a typing mistake?)"
                ),
            );
        }
    }
    for team in owners {
        if team.trim().is_empty() {
            continue;
        }
        let already = gaps
            .iter()
            .any(|gap| gap.gap == GapKind::Channel && gap.message.contains(&format!("team {team} ")));
        if !already && let Some(problem) = team_problem(notifications, team, &[]) {
            gap(&mut gaps, &format!("team {team}"), GapKind::Channel, problem);
        }
    }
    for channel in notifications.channels.values() {
        for (key, variable) in channel.unset_secrets() {
            let message =
                format!("channel {}: `{key}` names {variable}, which is not set here", channel.name);
            if options.secrets {
                gap(&mut gaps, &format!("channel {}", channel.name), GapKind::Secret, message);
            } else {
                warnings.push(message);
            }
        }
    }
    for state in missing_deadlines(engine) {
        gap(
            &mut gaps,
            &format!("deadline {state}"),
            GapKind::Deadline,
            format!("{state} has no deadline: an entity can wait there unseen"),
        );
    }
    Readiness { ready: gaps.is_empty(), rows, gaps, warnings, drills: outcomes }
}

/// The states of [`DEADLINE_STATES`] that `engine` gives no deadline.
pub fn missing_deadlines(engine: &lifewatch_core::Config) -> Vec<&'static str> {
    let set: BTreeSet<String> = State::all()
        .filter(|state| engine.deadline(*state).is_some())
        .map(|state| format!("{} {state}", state.entity_type()))
        .collect();
    DEADLINE_STATES.into_iter().filter(|state| !set.contains(*state)).collect()
}

/// A row's status when it is not an accepted risk.
fn status(gap: bool) -> String {
    if gap { "GAP" } else { "ready" }.to_string()
}

/// A drill's name: its file's stem.
pub fn drill_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |stem| stem.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_without_its_deadline_is_named() {
        assert!(missing_deadlines(&lifewatch_core::Config::shipped()).is_empty());
        let text = lifewatch_core::DEFAULT_CONFIG_TOML.replacen("provisioning = \"15m\"\n", "", 1);
        let config = AppConfig::from_toml(&text).unwrap();
        assert_eq!(missing_deadlines(&config.engine), vec!["project provisioning"]);
    }

    #[test]
    fn runbook_sections_are_checked_in_order_and_not_empty() {
        let good = RUNBOOK_SECTIONS.iter().map(|title| format!("## {title}\n\ntext\n\n")).collect::<String>();
        assert!(section_problems(&good).is_empty());
        let swapped = good
            .replace("## Rollback", "## Tmp")
            .replace("## Mitigate", "## Rollback")
            .replace("## Tmp", "## Mitigate");
        assert!(
            section_problems(&swapped)[0].contains("not in the order"),
            "{:?}",
            section_problems(&swapped)
        );
        let missing = good.replace("## Rollback\n\ntext\n\n", "");
        assert_eq!(section_problems(&missing), vec!["no section Rollback".to_string()]);
        let empty = good.replace("## Impact\n\ntext", "## Impact\n\n");
        assert_eq!(section_problems(&empty), vec!["section Impact is empty".to_string()]);
        assert!(section_problems(&format!("{good}```sh\n## Extra\n```\n")).is_empty());
    }
}
