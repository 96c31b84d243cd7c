//! The launch risk register, `ops/risks.toml`: each launch-day risk with its
//! likelihood and impact, the detection that covers it (incident kinds of
//! the engine, or alerts of `ops/prometheus/alerts.yml` on the monitor's own
//! metrics), the owning team, the runbook, the drill that rehearses it and
//! the communication template; or, instead, `accepted` with an owner and a
//! reason.
//!
//! [`load`] reads the register of an operations package and refuses what is
//! wrong in it, naming the risk and the key ([`RiskError`]): an unknown key,
//! a name that is not an incident kind, an alert or a team, a runbook that
//! does not exist. What is merely missing, so that a risk is not yet
//! covered (no detection, no drill file yet, no comms), is a [`Gap`], listed
//! by [`Register::gaps`] for `lifewatch risks` and the readiness gate.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use lifewatch_core::IncidentKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;

/// The register, relative to the package's root.
pub const REGISTER: &str = "ops/risks.toml";
/// The alerting rules whose alert names a detection may give.
pub const ALERTS: &str = "ops/prometheus/alerts.yml";
/// The configuration whose owners (and teams) are the known teams.
pub const CONFIG: &str = "ops/lifewatch.toml";
/// Where runbooks live.
const RUNBOOK_DIR: &str = "ops/runbooks/";

/// The keys a risk may have.
const KEYS: [&str; 10] =
    ["id", "title", "likelihood", "impact", "detection", "owner", "runbook", "drill", "comms", "accepted"];

/// How likely a risk is on launch day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    Low,
    Medium,
    High,
}

/// How bad it is when it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    Low,
    Medium,
    High,
    Critical,
}

impl Likelihood {
    pub fn as_str(self) -> &'static str {
        match self {
            Likelihood::Low => "low",
            Likelihood::Medium => "medium",
            Likelihood::High => "high",
        }
    }
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Low => "low",
            Impact::Medium => "medium",
            Impact::High => "high",
            Impact::Critical => "critical",
        }
    }
}

/// What detects a risk: incidents of these kinds, or these alerts firing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub kinds: Vec<IncidentKind>,
    pub alerts: Vec<String>,
}

impl Detection {
    /// Whether nothing detects the risk.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.alerts.is_empty()
    }
}

/// `detection` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetection {
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    alerts: Vec<String>,
}

/// A risk left without detection on purpose, and who decided it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub owner: String,
    pub reason: String,
}

/// One risk of the register, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Risk {
    pub id: String,
    pub title: String,
    pub likelihood: Likelihood,
    pub impact: Impact,
    pub detection: Detection,
    pub owner: Option<String>,
    pub runbook: Option<String>,
    pub drill: Option<String>,
    pub comms: Option<String>,
    pub accepted: Option<Accepted>,
}

/// Something a risk that is not accepted still lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "gap", rename_all = "snake_case")]
pub enum Gap {
    /// Neither an incident kind nor an alert detects it.
    NoDetection,
    /// No team owns it.
    NoOwner,
    /// No runbook says what to do.
    NoRunbook,
    /// No drill rehearses it.
    NoDrill,
    /// The drill is named but its file does not exist (yet).
    DrillMissing { path: String },
    /// Nothing says what users and support are told.
    NoComms,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::NoDetection => write!(f, "no detection (detection.kinds or detection.alerts)"),
            Gap::NoOwner => write!(f, "no owner"),
            Gap::NoRunbook => write!(f, "no runbook"),
            Gap::NoDrill => write!(f, "no drill"),
            Gap::DrillMissing { .. } => write!(f, "drill file missing"),
            Gap::NoComms => write!(f, "no comms template"),
        }
    }
}

/// A gap of one risk, for the readiness gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RiskGap {
    pub risk: String,
    #[serde(flatten)]
    pub gap: Gap,
}

impl fmt::Display for RiskGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.gap {
            Gap::DrillMissing { path } => write!(f, "risk {}: drill {path} missing", self.risk),
            gap => write!(f, "risk {}: {gap}", self.risk),
        }
    }
}

/// Where a risk stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Detected, owned, with a runbook, a drill and comms.
    Covered,
    /// Left uncovered on purpose, by its owner.
    Accepted,
    /// What it still lacks.
    Gaps(Vec<Gap>),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Covered => write!(f, "covered"),
            Status::Accepted => write!(f, "accepted"),
            Status::Gaps(gaps) => {
                write!(f, "gap: ")?;
                for (index, gap) in gaps.iter().enumerate() {
                    if index > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{gap}")?;
                }
                Ok(())
            }
        }
    }
}

/// What is wrong with a register, naming the file, and the risk and key.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// A file of the package could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The register is not TOML.
    #[error("{path} is not valid TOML")]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// The alerting rules are not a Prometheus rule file.
    #[error("{path} is not a Prometheus rule file")]
    Alerts {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    /// The package's configuration is invalid (its teams are the known ones).
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A key of the register is wrong.
    #[error("{REGISTER}: {key}: {message}")]
    Top { key: String, message: String },
    /// A key of one risk is wrong.
    #[error("{REGISTER}: risk {risk}: `{key}`: {message}")]
    Invalid { risk: String, key: String, message: String },
}

/// The register of one operations package.
#[derive(Clone, Debug)]
pub struct Register {
    /// The package's root, which every path is relative to.
    pub root: PathBuf,
    /// The risks, in the order written.
    pub risks: Vec<Risk>,
}

impl Register {
    /// Where `risk` stands.
    pub fn status(&self, risk: &Risk) -> Status {
        if risk.accepted.is_some() {
            return Status::Accepted;
        }
        let mut gaps = Vec::new();
        if risk.detection.is_empty() {
            gaps.push(Gap::NoDetection);
        }
        if risk.owner.is_none() {
            gaps.push(Gap::NoOwner);
        }
        if risk.runbook.is_none() {
            gaps.push(Gap::NoRunbook);
        }
        match &risk.drill {
            None => gaps.push(Gap::NoDrill),
            Some(path) if !self.root.join(path).is_file() => {
                gaps.push(Gap::DrillMissing { path: path.clone() });
            }
            Some(_) => {}
        }
        if risk.comms.is_none() {
            gaps.push(Gap::NoComms);
        }
        if gaps.is_empty() { Status::Covered } else { Status::Gaps(gaps) }
    }

    /// Every gap of every risk that is not accepted, in register order.
    pub fn gaps(&self) -> Vec<RiskGap> {
        self.risks
            .iter()
            .flat_map(|risk| match self.status(risk) {
                Status::Gaps(gaps) => {
                    gaps.into_iter().map(|gap| RiskGap { risk: risk.id.clone(), gap }).collect()
                }
                Status::Covered | Status::Accepted => Vec::new(),
            })
            .collect()
    }
}

/// Reads and validates `ops/risks.toml` of the package at `root`, against
/// its `ops/lifewatch.toml` (the built-in configuration when it has none)
/// and `ops/prometheus/alerts.yml`.
pub fn load(root: &Path) -> Result<Register, RiskError> {
    let path = root.join(REGISTER);
    let text = read(&path)?;
    let teams = teams(root)?;
    let alerts = alert_names(root)?;
    let risks = parse(&text, &path, &Known { root, teams: &teams, alerts: &alerts })?;
    Ok(Register { root: root.to_path_buf(), risks })
}

/// The teams of the package: the owners of `[[owners]]` and the `[[teams]]`.
pub fn teams(root: &Path) -> Result<BTreeSet<String>, RiskError> {
    let path = root.join(CONFIG);
    let config = AppConfig::load(path.is_file().then_some(path.as_path()))
        .map_err(|error| RiskError::Config { path: path.clone(), message: error.to_string() })?;
    let mut teams: BTreeSet<String> =
        config.engine.owner_rules().iter().map(|rule| rule.owner.clone()).collect();
    teams.extend(config.notifications.teams.keys().cloned());
    Ok(teams)
}

/// The names of the alerts of `ops/prometheus/alerts.yml` (none when the
/// file does not exist).
pub fn alert_names(root: &Path) -> Result<BTreeSet<String>, RiskError> {
    #[derive(Deserialize)]
    struct RuleFile {
        groups: Vec<Group>,
    }
    #[derive(Deserialize)]
    struct Group {
        #[serde(default)]
        rules: Vec<Rule>,
    }
    #[derive(Deserialize)]
    struct Rule {
        alert: Option<String>,
    }
    let path = root.join(ALERTS);
    if !path.exists() {
        return Ok(BTreeSet::new());
    }
    let text = read(&path)?;
    let file: RuleFile =
        serde_norway::from_str(&text).map_err(|source| RiskError::Alerts { path: path.clone(), source })?;
    Ok(file.groups.into_iter().flat_map(|group| group.rules).filter_map(|rule| rule.alert).collect())
}

fn read(path: &Path) -> Result<String, RiskError> {
    std::fs::read_to_string(path).map_err(|source| RiskError::Read { path: path.to_path_buf(), source })
}

/// What names may refer to.
struct Known<'a> {
    root: &'a Path,
    teams: &'a BTreeSet<String>,
    alerts: &'a BTreeSet<String>,
}

/// The risks of a register's text.
fn parse(text: &str, path: &Path, known: &Known<'_>) -> Result<Vec<Risk>, RiskError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|source| RiskError::Syntax { path: path.to_path_buf(), source })?;
    let top =
        |key: &str, message: &str| RiskError::Top { key: key.to_string(), message: message.to_string() };
    if let Some(key) = table.keys().find(|key| *key != "risks") {
        return Err(top(key, "unknown key (the register holds only [[risks]])"));
    }
    let Some(toml::Value::Array(entries)) = table.get("risks") else {
        return Err(top("risks", "missing: write each risk as a [[risks]] table"));
    };
    let mut seen = HashSet::new();
    let mut risks = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let toml::Value::Table(entry) = entry else {
            return Err(top(&format!("risks[{index}]"), "not a table"));
        };
        let risk = parse_risk(entry, index, known)?;
        if !seen.insert(risk.id.clone()) {
            return Err(invalid(&risk.id, "id", "a second risk has this id"));
        }
        risks.push(risk);
    }
    Ok(risks)
}

fn invalid(risk: &str, key: &str, message: impl Into<String>) -> RiskError {
    RiskError::Invalid { risk: risk.to_string(), key: key.to_string(), message: message.into() }
}

/// The value of `key` as a `T`, when present.
fn field<T: DeserializeOwned>(table: &toml::Table, risk: &str, key: &str) -> Result<Option<T>, RiskError> {
    table
        .get(key)
        .map(|value| value.clone().try_into::<T>().map_err(|error| invalid(risk, key, error.to_string())))
        .transpose()
}

fn required<T: DeserializeOwned>(table: &toml::Table, risk: &str, key: &str) -> Result<T, RiskError> {
    field(table, risk, key)?.ok_or_else(|| invalid(risk, key, "missing"))
}

/// A string that must not be blank, when present.
fn text(table: &toml::Table, risk: &str, key: &str) -> Result<Option<String>, RiskError> {
    match field::<String>(table, risk, key)? {
        Some(value) if value.trim().is_empty() => Err(invalid(risk, key, "empty")),
        value => Ok(value),
    }
}

fn parse_risk(table: &toml::Table, index: usize, known: &Known<'_>) -> Result<Risk, RiskError> {
    // Until the id is known, the risk is named by its place.
    let place = format!("#{}", index + 1);
    let id: String = required(table, &place, "id")?;
    if !is_snake_case(&id) {
        return Err(invalid(&place, "id", format!("{id:?} is not snake_case (a-z, 0-9 and _)")));
    }
    let id = id.as_str();
    if let Some(key) = table.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(invalid(id, key, format!("unknown key (known: {})", KEYS.join(", "))));
    }
    let title = text(table, id, "title")?.ok_or_else(|| invalid(id, "title", "missing"))?;
    let likelihood = required(table, id, "likelihood")?;
    let impact = required(table, id, "impact")?;

    let detection = match field::<RawDetection>(table, id, "detection")? {
        None => Detection::default(),
        Some(raw) => {
            let kinds = raw
                .kinds
                .iter()
                .map(|name| {
                    IncidentKind::parse(name).ok_or_else(|| {
                        let names: Vec<&str> = IncidentKind::ALL.iter().map(|kind| kind.as_str()).collect();
                        invalid(
                            id,
                            "detection.kinds",
                            format!("{name:?} is not an incident kind ({})", names.join(", ")),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for alert in &raw.alerts {
                if !known.alerts.contains(alert) {
                    return Err(invalid(
                        id,
                        "detection.alerts",
                        format!("{alert:?} is not an alert of {ALERTS}"),
                    ));
                }
            }
            Detection { kinds, alerts: raw.alerts }
        }
    };

    let team = |key: &str, name: &str| {
        if known.teams.contains(name) {
            Ok(())
        } else {
            Err(invalid(
                id,
                key,
                format!(
                    "{name:?} is not a team of {CONFIG} (teams: {})",
                    known.teams.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    let owner = text(table, id, "owner")?;
    if let Some(owner) = &owner {
        team("owner", owner)?;
    }

    let runbook = text(table, id, "runbook")?;
    if let Some(problem) = runbook.as_deref().and_then(|runbook| runbook_problem(known.root, runbook)) {
        return Err(invalid(id, "runbook", problem));
    }

    let drill = text(table, id, "drill")?;
    if let Some(drill) = &drill {
        let expected = format!("ops/drills/{id}.toml");
        if *drill != expected {
            return Err(invalid(id, "drill", format!("{drill:?} should be {expected:?}")));
        }
    }

    let comms = text(table, id, "comms")?;
    let accepted: Option<Accepted> = field(table, id, "accepted")?;
    if let Some(accepted) = &accepted {
        team("accepted.owner", &accepted.owner)?;
        if accepted.reason.trim().is_empty() {
            return Err(invalid(id, "accepted.reason", "empty: say why the risk is accepted"));
        }
    }

    Ok(Risk {
        id: id.to_string(),
        title,
        likelihood,
        impact,
        detection,
        owner,
        runbook,
        drill,
        comms,
        accepted,
    })
}

fn is_snake_case(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What is wrong with a runbook path, if anything: it must be a Markdown
/// file under ops/runbooks/ of the package, and exist.
fn runbook_problem(root: &Path, runbook: &str) -> Option<String> {
    let relative = Path::new(runbook);
    if !runbook.starts_with(RUNBOOK_DIR)
        || !runbook.ends_with(".md")
        || relative.components().any(|component| !matches!(component, Component::Normal(_)))
    {
        return Some(format!("{runbook:?} is not a Markdown file under {RUNBOOK_DIR}"));
    }
    match std::fs::metadata(root.join(relative)) {
        Ok(metadata) if metadata.is_file() && metadata.len() > 0 => None,
        Ok(_) => Some(format!("{runbook} is empty or not a file")),
        Err(error) => Some(format!("{runbook} does not exist in {}: {error}", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_teams() -> BTreeSet<String> {
        ["platform-oncall", "launch-ops"].into_iter().map(String::from).collect()
    }

    fn alerts() -> BTreeSet<String> {
        ["LifewatchDown"].into_iter().map(String::from).collect()
    }

    const GOOD: &str = r#"
[[risks]]
id = "monitor_down"
title = "the monitor dies"
likelihood = "low"
impact = "critical"
detection = { alerts = ["LifewatchDown"] }
owner = "launch-ops"
runbook = "ops/runbooks/stuck.md"
drill = "ops/drills/monitor_down.toml"
comms = "internal-update"

[[risks]]
id = "quota_wrongly_blocks"
title = "quota blocks wrongly"
likelihood = "low"
impact = "medium"
accepted = { owner = "launch-ops", reason = "no event shows it" }
"#;

    fn parse_text(text: &str) -> Result<Vec<Risk>, RiskError> {
        let (teams, alerts) = (known_teams(), alerts());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        parse(text, Path::new(REGISTER), &Known { root, teams: &teams, alerts: &alerts })
    }

    #[test]
    fn a_good_register_parses_and_reports_the_missing_drill_as_a_gap() {
        let risks = parse_text(GOOD).unwrap();
        assert_eq!(risks.len(), 2);
        assert_eq!(risks[0].detection.alerts, vec!["LifewatchDown".to_string()]);
        // A package without drills: the repository's ships them.
        let register = Register { root: PathBuf::from("/nonexistent/lifewatch-package"), risks };
        assert_eq!(register.status(&register.risks[1]), Status::Accepted);
        let gaps = register.gaps();
        assert_eq!(
            gaps,
            vec![RiskGap {
                risk: "monitor_down".into(),
                gap: Gap::DrillMissing { path: "ops/drills/monitor_down.toml".into() }
            }]
        );
        assert_eq!(gaps[0].to_string(), "risk monitor_down: drill ops/drills/monitor_down.toml missing");
    }

    #[test]
    fn each_mistake_names_the_risk_and_the_key() {
        let cases = [
            (GOOD.replace("comms = ", "coms = "), "risk monitor_down: `coms`: unknown key"),
            (
                GOOD.replace("\"low\"\nimpact = \"critical\"", "\"often\"\nimpact = \"critical\""),
                "`likelihood`",
            ),
            (GOOD.replace("impact = \"critical\"", "impact = \"huge\""), "`impact`"),
            (
                GOOD.replace("alerts = [\"LifewatchDown\"]", "alerts = [\"LifewatchGone\"]"),
                "`detection.alerts`",
            ),
            (GOOD.replace("alerts = [\"LifewatchDown\"]", "kinds = [\"stuk\"]"), "`detection.kinds`"),
            (
                GOOD.replace("alerts = [\"LifewatchDown\"]", "kind = [\"stuck\"]"),
                "`detection`: unknown field",
            ),
            (GOOD.replace("owner = \"launch-ops\"\nrunbook", "owner = \"ops\"\nrunbook"), "`owner`"),
            (GOOD.replace("stuck.md", "nope.md"), "`runbook`: ops/runbooks/nope.md does not exist"),
            (GOOD.replace("ops/runbooks/stuck.md", "/etc/passwd"), "`runbook`"),
            (GOOD.replace("ops/runbooks/stuck.md", "ops/runbooks/../README.md"), "`runbook`"),
            (GOOD.replace("drills/monitor_down", "drills/other"), "`drill`"),
            (GOOD.replace("\"monitor_down\"", "\"Monitor-Down\""), "risk #1: `id`"),
            (GOOD.replace("quota_wrongly_blocks", "monitor_down"), "a second risk has this id"),
            (GOOD.replace("reason = \"no event shows it\"", "reason = \" \""), "`accepted.reason`"),
            (
                GOOD.replace("owner = \"launch-ops\", reason", "owner = \"nobody\", reason"),
                "`accepted.owner`",
            ),
            (GOOD.replace("title = \"the monitor dies\"\n", ""), "`title`: missing"),
            (format!("version = 1\n{GOOD}"), "version: unknown key"),
        ];
        for (text, expected) in cases {
            match parse_text(&text) {
                Err(error) => assert!(error.to_string().contains(expected), "{error} lacks {expected}"),
                Ok(_) => panic!("accepted, expected {expected}:\n{text}"),
            }
        }
    }

    #[test]
    fn what_is_left_out_is_a_gap() {
        let text = GOOD
            .replace("detection = { alerts = [\"LifewatchDown\"] }\n", "")
            .replace("comms = \"internal-update\"\n", "");
        let risks = parse_text(&text).unwrap();
        let register = Register { root: PathBuf::from("/nonexistent/lifewatch-package"), risks };
        let status = register.status(&register.risks[0]);
        assert_eq!(
            status.to_string(),
            "gap: no detection (detection.kinds or detection.alerts); drill file missing; no comms template"
        );
    }

    #[test]
    fn the_shipped_register_loads() {
        let register = load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(register.risks.len() >= 12);
        assert!(register.risks.iter().any(|risk| risk.accepted.is_some()));
        assert_eq!(register.gaps(), Vec::new(), "the shipped register has a gap");
    }
}
