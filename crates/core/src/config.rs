//! Configuration in two stages: [`RawConfig`] is what the TOML file says
//! (serde, unknown keys refused), [`Config`] is the validated, typed form the
//! engine runs on (durations parsed, owner rules compiled, catch-all checked).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::EntityType;
use crate::incident::{IncidentKind, Severity, SubjectType};
use crate::machine::State;
use crate::time::{Duration, Timestamp};

/// The shipped configuration, `ops/lifewatch.toml`, built into the binary so
/// that lifewatch runs the same from any directory.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../ops/lifewatch.toml");

/// A configuration that could not be used; names the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A key has a value that breaks a rule.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// Names that end up in incidents, tables and pages are refused when they
/// hold a control character: a terminal or a pager would take it (an escape
/// sequence, a newline) as a command or a new line.
fn no_control_characters(key: &str, text: &str) -> Result<(), ConfigError> {
    match text.chars().find(|character| character.is_control()) {
        Some(character) => Err(invalid(
            key,
            format!("{:?} holds a control character ({})", text, character.escape_unicode()),
        )),
        None => Ok(()),
    }
}

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How many distinct projects of one region must each have an open
    /// `stuck` or `provisioning_failed` incident for a `regional_outage`.
    pub outage_threshold: Option<u32>,
    /// Deadlines per entity type and state, as human durations (`15m`, `5d`).
    #[serde(default)]
    pub deadlines: BTreeMap<String, BTreeMap<String, String>>,
    /// Plans by name, with their project limit.
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    /// Default severity per incident kind.
    #[serde(default)]
    pub severity: BTreeMap<String, String>,
    /// Exceptions to the default severity, first match wins.
    #[serde(default)]
    pub severity_override: Vec<RawSeverityOverride>,
    /// Ordered owner rules; the last must be a catch-all (no `kinds`, no `entities`).
    #[serde(default)]
    pub owners: Vec<RawOwnerRule>,
    /// Runbook path per incident kind; kinds not listed get `ops/runbooks/<kind>.md`.
    #[serde(default)]
    pub runbooks: BTreeMap<String, String>,
}

/// One plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    /// How many live projects an account on this plan may have.
    pub max_projects: u32,
}

/// One severity exception.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeverityOverride {
    /// The incident kind it applies to.
    pub kind: String,
    /// The entity type it applies to (any when absent).
    pub entity: Option<String>,
    /// The state it applies to (any when absent).
    pub state: Option<String>,
    /// The severity to use.
    pub severity: String,
}

/// One owner rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnerRule {
    /// Incident kinds it matches (any when absent).
    pub kinds: Option<Vec<String>>,
    /// Entity types it matches: account, project, dispute, region (any when absent).
    pub entities: Option<Vec<String>>,
    /// The team that owns matching incidents.
    pub owner: String,
}

/// A compiled owner rule.
#[derive(Clone, Debug)]
pub struct OwnerRule {
    /// Kinds matched; `None` matches any.
    pub kinds: Option<Vec<IncidentKind>>,
    /// Entity types matched; `None` matches any.
    pub entities: Option<Vec<SubjectType>>,
    /// The owning team.
    pub owner: String,
}

/// A compiled severity exception.
#[derive(Clone, Debug)]
pub struct SeverityOverride {
    /// Kind matched.
    pub kind: IncidentKind,
    /// Entity type matched; `None` matches any.
    pub entity: Option<SubjectType>,
    /// State matched; `None` matches any.
    pub state: Option<State>,
    /// The severity.
    pub severity: Severity,
}

/// The validated configuration the engine runs on.
#[derive(Clone, Debug)]
pub struct Config {
    deadlines: [Option<Duration>; State::COUNT],
    plans: Vec<(String, u32)>,
    /// Regional outage threshold (at least 1).
    pub outage_threshold: u32,
    severities: [Severity; IncidentKind::ALL.len()],
    severity_overrides: Vec<SeverityOverride>,
    owner_rules: Vec<OwnerRule>,
    runbooks: [String; IncidentKind::ALL.len()],
    escalation: BTreeMap<String, EscalationTimes>,
}

/// When the steps of an owner's escalation chain fall due, as far as the
/// engine needs it (where each step sends is the notifier's business). Step
/// `i` falls due `steps[i]` after the incident opened; with `repeat_last`,
/// the last step falls due again every `steps[last]` after that, at most
/// [`MAX_ESCALATION_REPEATS`] times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationTimes {
    /// Each step's delay from the incident's opening, increasing.
    pub steps: Vec<Duration>,
    /// Whether the last step repeats while nobody acknowledges.
    pub repeat_last: bool,
}

/// How many times a repeating last step fires again at most (PagerDuty's
/// escalation policies repeat at most 9 times): an incident nobody
/// acknowledges for weeks does not page forever.
pub const MAX_ESCALATION_REPEATS: u32 = 9;

impl EscalationTimes {
    /// When step `step` (from 0; steps past the last are its repeats) of an
    /// incident opened at `opened_at` falls due; `None` past the chain's end.
    pub fn due(&self, opened_at: Timestamp, step: u32) -> Option<Timestamp> {
        let last = self.steps.len().checked_sub(1)?;
        let step = step as usize;
        if step <= last {
            return Some(opened_at.saturating_add(self.steps[step]));
        }
        let repeats = (step - last) as u32;
        if !self.repeat_last || repeats > MAX_ESCALATION_REPEATS {
            return None;
        }
        let every = self.steps[last].as_nanos();
        Some(opened_at.saturating_add(Duration::from_nanos(every.saturating_mul(i64::from(repeats) + 1))))
    }
}

/// The top-level sections of the shipped file that belong to the application
/// (the live monitor, the NATS adapter, the web server, notifications)
/// rather than to the engine.
const APPLICATION_SECTIONS: [&str; 6] = ["live", "nats", "web", "channels", "teams", "delivery"];

impl Config {
    /// Parses and validates a TOML configuration that holds only the engine's
    /// keys.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Syntax(error.to_string()))?;
        Config::from_raw(raw)
    }

    /// Validates the engine's part of a parsed configuration file: a table
    /// from which the application has taken its own sections. Unknown keys
    /// are refused.
    pub fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let raw: RawConfig = table
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Syntax(error.message().to_string()))?;
        Config::from_raw(raw)
    }

    /// The shipped defaults.
    pub fn shipped() -> Config {
        // The shipped file is the application's: it also holds sections the
        // engine does not read, which are left out here.
        let engine_part = toml::from_str::<toml::Table>(DEFAULT_CONFIG_TOML).map(|mut table| {
            for section in APPLICATION_SECTIONS {
                table.remove(section);
            }
            table
        });
        // The shipped file is checked by a test; falling back to an empty
        // configuration would only drop deadlines, so there is none.
        match engine_part.map_err(|error| ConfigError::Syntax(error.to_string())).and_then(Config::from_table)
        {
            Ok(config) => config,
            Err(error) => panic!("the built-in ops/lifewatch.toml is invalid: {error}"),
        }
    }

    /// Validates a raw configuration.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let outage_threshold = raw.outage_threshold.unwrap_or(5);
        if outage_threshold == 0 {
            return Err(invalid("outage_threshold", "must be at least 1"));
        }

        let mut deadlines = [None; State::COUNT];
        for (entity_name, states) in &raw.deadlines {
            let entity_type = EntityType::parse(entity_name).ok_or_else(|| {
                invalid(
                    format!("deadlines.{entity_name}"),
                    "unknown entity type (expected account, project or dispute)",
                )
            })?;
            for (state_name, text) in states {
                let key = format!("deadlines.{entity_name}.{state_name}");
                let state = State::parse(entity_type, state_name)
                    .ok_or_else(|| invalid(&key, format!("{entity_type} has no state {state_name:?}")))?;
                if state.is_terminal() {
                    return Err(invalid(&key, "a terminal state cannot have a deadline"));
                }
                let duration = Duration::parse_human(text).map_err(|message| invalid(&key, message))?;
                if duration <= Duration::ZERO {
                    return Err(invalid(&key, "must be longer than zero"));
                }
                deadlines[state.index()] = Some(duration);
            }
        }

        for name in raw.plans.keys() {
            no_control_characters(&format!("plans.{}", name.escape_debug()), name)?;
        }
        let plans = raw.plans.into_iter().map(|(name, plan)| (name, plan.max_projects)).collect();

        let mut severities = [
            Severity::Error,
            Severity::Error,
            Severity::Error,
            Severity::Warning,
            Severity::Warning,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ];
        for (kind_name, severity_name) in &raw.severity {
            let key = format!("severity.{kind_name}");
            let kind = parse_kind(&key, kind_name)?;
            severities[kind as usize] = parse_severity(&key, severity_name)?;
        }
        let mut severity_overrides = Vec::new();
        for (index, rule) in raw.severity_override.iter().enumerate() {
            let key = format!("severity_override[{index}]");
            let kind = parse_kind(&format!("{key}.kind"), &rule.kind)?;
            let entity = rule
                .entity
                .as_deref()
                .map(|name| parse_subject(&format!("{key}.entity"), name))
                .transpose()?;
            let state = match (&rule.state, entity) {
                (None, _) => None,
                (Some(name), Some(subject)) => {
                    let entity_type = EntityType::parse(subject.as_str())
                        .ok_or_else(|| invalid(format!("{key}.state"), "a region has no states"))?;
                    Some(State::parse(entity_type, name).ok_or_else(|| {
                        invalid(format!("{key}.state"), format!("{entity_type} has no state {name:?}"))
                    })?)
                }
                (Some(_), None) => {
                    return Err(invalid(format!("{key}.state"), "a state needs an `entity`"));
                }
            };
            let severity = parse_severity(&format!("{key}.severity"), &rule.severity)?;
            severity_overrides.push(SeverityOverride { kind, entity, state, severity });
        }

        if raw.owners.is_empty() {
            return Err(invalid("owners", "at least one rule is needed, ending in a catch-all"));
        }
        let mut owner_rules = Vec::new();
        let last = raw.owners.len() - 1;
        for (index, rule) in raw.owners.iter().enumerate() {
            let key = format!("owners[{index}]");
            if rule.owner.trim().is_empty() {
                return Err(invalid(format!("{key}.owner"), "must name a team"));
            }
            no_control_characters(&format!("{key}.owner"), &rule.owner)?;
            let kinds = rule
                .kinds
                .as_ref()
                .map(|names| names.iter().map(|name| parse_kind(&format!("{key}.kinds"), name)).collect())
                .transpose()?;
            let entities = rule
                .entities
                .as_ref()
                .map(|names| {
                    names.iter().map(|name| parse_subject(&format!("{key}.entities"), name)).collect()
                })
                .transpose()?;
            let catch_all = kinds.is_none() && entities.is_none();
            if catch_all && index != last {
                return Err(invalid(
                    key,
                    "a catch-all rule (no kinds, no entities) must be the last; rules after it are never reached",
                ));
            }
            if !catch_all && index == last {
                return Err(invalid(key, "the last owner rule must be a catch-all (no kinds, no entities)"));
            }
            owner_rules.push(OwnerRule { kinds, entities, owner: rule.owner.clone() });
        }

        let mut runbooks: [String; IncidentKind::ALL.len()] =
            IncidentKind::ALL.map(|kind| format!("ops/runbooks/{kind}.md"));
        for (kind_name, path) in &raw.runbooks {
            let key = format!("runbooks.{kind_name}");
            let kind = parse_kind(&key, kind_name)?;
            if path.trim().is_empty() {
                return Err(invalid(key, "must be a path"));
            }
            no_control_characters(&key, path)?;
            runbooks[kind as usize] = path.clone();
        }

        Ok(Config {
            deadlines,
            plans,
            outage_threshold,
            severities,
            severity_overrides,
            owner_rules,
            runbooks,
            escalation: BTreeMap::new(),
        })
    }

    /// A canonical description of everything the engine's results depend on,
    /// each field named, in a fixed order. The store hashes it to tell whether
    /// stored projections were computed under another configuration; it is
    /// written out field by field (not a Debug print) so that adding a field
    /// that does not change results does not force a recomputation, and so
    /// that nothing else (such as a secret) can slip into it.
    pub fn fingerprint_text(&self) -> String {
        use std::fmt::Write;
        let mut text = String::from("lifewatch engine configuration v1\n");
        // Writing to a String cannot fail.
        let mut line = |args: std::fmt::Arguments<'_>| {
            let _ = text.write_fmt(args);
            text.push('\n');
        };
        line(format_args!("outage_threshold={}", self.outage_threshold));
        for state in State::all() {
            if let Some(deadline) = self.deadline(state) {
                line(format_args!("deadline {}.{state}={}ns", state.entity_type(), deadline.as_nanos()));
            }
        }
        for (name, max_projects) in &self.plans {
            line(format_args!("plan {name:?} max_projects={max_projects}"));
        }
        for kind in IncidentKind::ALL {
            line(format_args!("severity {kind}={}", self.severities[kind as usize]));
        }
        for rule in &self.severity_overrides {
            line(format_args!(
                "severity_override kind={} entity={:?} state={:?} severity={}",
                rule.kind,
                rule.entity.map(SubjectType::as_str),
                rule.state.map(|state| state.to_string()),
                rule.severity
            ));
        }
        for rule in &self.owner_rules {
            let kinds =
                rule.kinds.as_ref().map(|kinds| kinds.iter().map(|kind| kind.as_str()).collect::<Vec<_>>());
            let entities = rule
                .entities
                .as_ref()
                .map(|entities| entities.iter().map(|entity| entity.as_str()).collect::<Vec<_>>());
            line(format_args!("owner kinds={kinds:?} entities={entities:?} owner={:?}", rule.owner));
        }
        for kind in IncidentKind::ALL {
            line(format_args!("runbook {kind}={:?}", self.runbooks[kind as usize]));
        }
        // Escalation times make `escalated` transitions; a configuration
        // without any keeps the fingerprint it had before they existed.
        for (owner, times) in &self.escalation {
            let steps: Vec<i64> = times.steps.iter().map(|step| step.as_nanos()).collect();
            line(format_args!("escalation {owner:?} steps={steps:?}ns repeat_last={}", times.repeat_last));
        }
        text
    }

    /// Sets the escalation chain's times of `owner` (the application reads
    /// them from its `[[teams]]`). Steps must be positive and increasing;
    /// an empty chain removes the owner's.
    pub fn set_escalation(&mut self, owner: &str, times: EscalationTimes) -> Result<(), ConfigError> {
        let mut previous = Duration::ZERO;
        for step in &times.steps {
            if *step <= previous {
                return Err(invalid(
                    format!("escalation of {owner}"),
                    "each step's `after` must be longer than the step before it (and above 0)",
                ));
            }
            previous = *step;
        }
        if times.steps.is_empty() {
            self.escalation.remove(owner);
        } else {
            self.escalation.insert(owner.to_string(), times);
        }
        Ok(())
    }

    /// The escalation chain's times of `owner`, if it has one.
    pub fn escalation(&self, owner: &str) -> Option<&EscalationTimes> {
        self.escalation.get(owner)
    }

    /// The deadline of a state, if it has one.
    pub fn deadline(&self, state: State) -> Option<Duration> {
        self.deadlines[state.index()]
    }

    /// When a visit of `state` that began at `entered_at` is past its
    /// deadline at `now`, the instant it became due: SPEC.md's rule, stuck
    /// iff `now > entered_at + deadline` (the engine's clock opens the
    /// incident at the same instant). `None` for a state without a deadline
    /// or a visit not past it yet.
    pub fn past_deadline(&self, state: State, entered_at: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let due = entered_at.saturating_add(self.deadline(state)?);
        (now > due).then_some(due)
    }

    /// The project limit of a plan; `None` for a plan not configured.
    pub fn max_projects(&self, plan: &str) -> Option<u32> {
        self.plans.iter().find(|(name, _)| name == plan).map(|(_, max)| *max)
    }

    /// The severity of an incident.
    pub fn severity(&self, kind: IncidentKind, entity: SubjectType, state: Option<State>) -> Severity {
        self.severity_overrides
            .iter()
            .find(|rule| {
                rule.kind == kind
                    && rule.entity.is_none_or(|wanted| wanted == entity)
                    && rule.state.is_none_or(|wanted| Some(wanted) == state)
            })
            .map_or(self.severities[kind as usize], |rule| rule.severity)
    }

    /// The owner of an incident: the first rule that matches.
    pub fn owner(&self, kind: IncidentKind, entity: SubjectType) -> &str {
        self.owner_rules
            .iter()
            .find(|rule| {
                rule.kinds.as_ref().is_none_or(|kinds| kinds.contains(&kind))
                    && rule.entities.as_ref().is_none_or(|entities| entities.contains(&entity))
            })
            .map_or("launch-ops", |rule| rule.owner.as_str())
    }

    /// The runbook path of a kind.
    pub fn runbook(&self, kind: IncidentKind) -> &str {
        &self.runbooks[kind as usize]
    }

    /// The owner rules in order.
    pub fn owner_rules(&self) -> &[OwnerRule] {
        &self.owner_rules
    }
}

fn parse_kind(key: &str, name: &str) -> Result<IncidentKind, ConfigError> {
    IncidentKind::parse(name).ok_or_else(|| invalid(key, format!("unknown incident kind {name:?}")))
}

fn parse_severity(key: &str, name: &str) -> Result<Severity, ConfigError> {
    Severity::parse(name)
        .ok_or_else(|| invalid(key, format!("unknown severity {name:?} (critical, error, warning or info)")))
}

fn parse_subject(key: &str, name: &str) -> Result<SubjectType, ConfigError> {
    SubjectType::parse(name).ok_or_else(|| {
        invalid(key, format!("unknown entity type {name:?} (account, project, dispute or region)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{AccountState, ProjectState};

    #[test]
    fn a_visit_is_past_its_deadline_only_after_it() {
        let config = Config::shipped();
        let requested = State::Project(ProjectState::Requested);
        let entered = Timestamp::from_unix_seconds(1_000);
        let due = Timestamp::from_unix_seconds(1_300);
        assert_eq!(config.past_deadline(requested, entered, due), None, "t == deadline is not stuck");
        let later = Timestamp::from_unix_nanos(due.unix_nanos() + 1);
        assert_eq!(config.past_deadline(requested, entered, later), Some(due));
        let active = State::Account(AccountState::Active);
        assert_eq!(config.past_deadline(active, entered, Timestamp::from_unix_seconds(1_000_000)), None);
    }

    #[test]
    fn shipped_config_has_the_spec_defaults() {
        let config = Config::shipped();
        assert_eq!(
            config.deadline(State::Project(ProjectState::Provisioning)),
            Some(Duration::from_seconds(900))
        );
        assert_eq!(config.deadline(State::Account(AccountState::Active)), None);
        assert_eq!(config.max_projects("free"), Some(3));
        assert_eq!(config.max_projects("gold"), None);
        assert_eq!(config.outage_threshold, 5);
        assert_eq!(
            config.severity(
                IncidentKind::Stuck,
                SubjectType::Project,
                Some(State::Project(ProjectState::Deleting))
            ),
            Severity::Warning
        );
        assert_eq!(config.severity(IncidentKind::Stuck, SubjectType::Account, None), Severity::Error);
        assert_eq!(config.owner(IncidentKind::Stuck, SubjectType::Dispute), "billing-support");
        assert_eq!(config.owner(IncidentKind::OnboardingFailed, SubjectType::Project), "launch-ops");
        assert_eq!(config.owner(IncidentKind::RegionalOutage, SubjectType::Region), "platform-oncall");
        assert_eq!(config.runbook(IncidentKind::QuotaBreach), "ops/runbooks/quota_breach.md");
    }

    #[test]
    fn bad_configurations_name_the_key() {
        let cases = [
            ("outage_threshold = 0\n", "outage_threshold"),
            ("[deadlines.project]\nprovisioning = \"15 minutes\"\n", "deadlines.project.provisioning"),
            ("[deadlines.project]\nopen = \"1m\"\n", "deadlines.project.open"),
            ("[deadlines.project]\ndeleted = \"1m\"\n", "deadlines.project.deleted"),
            ("[[owners]]\nkinds = [\"stuck\"]\nowner = \"x\"\n", "owners[0]"),
            ("[[owners]]\nowner = \"x\"\n[[owners]]\nowner = \"y\"\n", "owners[0]"),
            ("[[owners]]\nkinds = [\"stuk\"]\nowner = \"x\"\n[[owners]]\nowner = \"y\"\n", "owners[0].kinds"),
            ("[severity]\nstuck = \"bad\"\n[[owners]]\nowner = \"y\"\n", "severity.stuck"),
        ];
        for (text, key) in cases {
            let message = Config::from_toml(text).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
        let unknown = Config::from_toml("outage_treshold = 3\n").unwrap_err().to_string();
        assert!(unknown.contains("outage_treshold"), "{unknown}");
        // The application's sections are not the engine's: left in, they are refused.
        let mut table: toml::Table = toml::from_str("outage_threshold = 3\n").unwrap();
        table.insert("live".into(), toml::Table::new().into());
        let unknown = Config::from_table(table).unwrap_err().to_string();
        assert!(unknown.contains("unknown field `live`"), "{unknown}");
    }

    #[test]
    fn the_fingerprint_text_follows_what_the_engine_uses() {
        let shipped = Config::shipped().fingerprint_text();
        assert_eq!(shipped, Config::shipped().fingerprint_text());
        assert!(shipped.contains("deadline project.provisioning=900000000000ns"), "{shipped}");
        let edited = DEFAULT_CONFIG_TOML.replace("outage_threshold = 5", "outage_threshold = 6");
        let mut table: toml::Table = toml::from_str(&edited).unwrap();
        for section in APPLICATION_SECTIONS {
            table.remove(section);
        }
        assert_ne!(Config::from_table(table).unwrap().fingerprint_text(), shipped);
    }
}
