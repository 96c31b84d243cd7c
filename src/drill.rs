//! Drills: the launch's tabletop rehearsals as files (`ops/drills/*.toml`)
//! and their evaluation. A drill is a scenario and what must happen.
//!
//! - An **event scenario** (`[[events]]` with times relative to the drill's
//!   start, or a `[simulate]` recipe with injected faults) runs through the
//!   real engine and store: a temporary database written by the same
//!   [`Writer`] as `lifewatch run`, with the configuration's delivery
//!   routing, then read back. Each `[[expect]]` names an incident kind and
//!   what it must look like: its owner, severity, how soon after the first
//!   bad event (`fault = true`) it is detected, the channels its opening
//!   reaches, the channels its escalation reaches when nobody acknowledges,
//!   and its comms template. Times are event time, as in `replay`: time to
//!   detect is `opened_at` minus the fault's time, time to notify the time of
//!   the transition the first expected delivery carries (the wall-clock
//!   latency of sending is the delivery worker's, not the drill's).
//! - An **alert scenario** (`[alert]`) rehearses a risk the monitor's own
//!   alerting covers (the monitor down, lagging, no events…): the fault as
//!   metric series, evaluated by `promtool test rules` against
//!   `ops/prometheus/alerts.yml` at every interval up to `within`; the first
//!   evaluation at which the alert fires is its time to detect, and its
//!   `team` label is whom Alertmanager pages.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lifewatch_core::{Duration, Timestamp, parse_event};
use lifewatch_store::{Fed, Store, Writer, query};
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;

/// Where the shipped drills are, relative to the package root.
pub const DRILLS_DIR: &str = "ops/drills";

/// The start of an event scenario when the drill does not say.
const DEFAULT_START: &str = "2026-11-27T12:00:00Z";

/// What is wrong with a drill file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// It cannot be read.
    #[error("cannot read drill {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It is not a drill.
    #[error("drill {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    risk: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    start: Option<String>,
    run_for: Option<String>,
    #[serde(default)]
    events: Vec<RawEvent>,
    simulate: Option<RawSimulate>,
    alert: Option<RawAlert>,
    #[serde(default)]
    expect: Vec<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    source: Option<String>,
    #[serde(default)]
    fault: bool,
    #[serde(default)]
    data: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulate {
    seed: u64,
    accounts: u64,
    #[serde(default = "yes")]
    faults: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: String,
    #[serde(default)]
    fault: Option<String>,
    within: String,
    #[serde(default = "one_minute")]
    interval: String,
    team: Option<String>,
    series: Vec<RawSeries>,
}

fn one_minute() -> String {
    "1m".to_string()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    kind: String,
    entity: Option<String>,
    count: Option<u64>,
    at_least: Option<u64>,
    owner: Option<String>,
    severity: Option<String>,
    detected_within: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    escalate: Vec<String>,
    comms: Option<String>,
}

/// One drill, validated.
#[derive(Clone, Debug)]
pub struct Drill {
    /// Its file.
    pub path: PathBuf,
    /// The risk of `ops/risks.toml` it rehearses.
    pub risk: String,
    /// One line.
    pub title: String,
    /// What is played.
    pub scenario: Scenario,
    /// What must happen (event scenarios).
    pub expectations: Vec<Expectation>,
}

/// What a drill plays.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Events at times relative to `start`; the clock runs to `end`.
    Events { lines: Vec<String>, fault_at: Timestamp, end: Timestamp },
    /// The simulator's stream with its faults; the clock runs `run_for`
    /// past its last event.
    Simulate { seed: u64, accounts: u64, faults: bool, run_for: Duration },
    /// Metric series evaluated by the alerting rules.
    Alert(AlertScenario),
}

/// An alert rehearsal.
#[derive(Clone, Debug)]
pub struct AlertScenario {
    /// The alert that must fire.
    pub name: String,
    /// When the fault begins in the series (from their start).
    pub fault: Duration,
    /// At most this long after the fault.
    pub within: Duration,
    /// Between samples and evaluations.
    pub interval: Duration,
    /// The team its `team` label must name.
    pub team: Option<String>,
    series: Vec<RawSeries>,
}

/// What one incident kind must do in a drill.
#[derive(Clone, Debug, Serialize)]
pub struct Expectation {
    /// The incident kind.
    pub kind: String,
    /// Only incidents about this entity (or region).
    pub entity: Option<String>,
    /// Exactly this many such incidents.
    pub count: Option<u64>,
    /// At least this many (default 1).
    pub at_least: u64,
    /// Their owner.
    pub owner: Option<String>,
    /// Their severity.
    pub severity: Option<String>,
    /// Detected at most this long after the fault.
    #[serde(serialize_with = "human")]
    pub detected_within: Option<Duration>,
    /// Channels the opening reaches.
    pub notify: Vec<String>,
    /// Channels an escalation reaches while nobody acknowledges.
    pub escalate: Vec<String>,
    /// The comms template (`ops/comms/<name>.md`).
    pub comms: Option<String>,
}

impl Expectation {
    /// How the report names it.
    pub fn label(&self) -> String {
        match &self.entity {
            Some(entity) => format!("{} {entity}", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// One expectation's result.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was expected, in short.
    pub expectation: String,
    /// Whether everything expected happened.
    pub met: bool,
    /// From the fault to the incident's opening (or the alert firing).
    pub time_to_detect: Option<String>,
    /// From the fault to the first expected notification.
    pub time_to_notify: Option<String>,
    /// Who was notified: channels, or the alert's team.
    pub notified: Vec<String>,
    /// What was missed, one entry each.
    pub misses: Vec<String>,
    /// The ids and keys of the incidents it matched (for a live drill to
    /// recognise their notifications).
    #[serde(skip)]
    pub incidents: Vec<String>,
}

/// One drill's result.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The drill file.
    pub drill: String,
    /// The risk it rehearses.
    pub risk: String,
    /// Its title.
    pub title: String,
    /// Whether every expectation was met.
    pub passed: bool,
    /// One per expectation.
    pub checks: Vec<Check>,
}

/// The drill files of the package at `root`, sorted.
pub fn shipped(root: &Path) -> Result<Vec<PathBuf>, DrillError> {
    let dir = root.join(DRILLS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|source| DrillError::Read { path: dir.clone(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and validates one drill file.
pub fn load(path: &Path) -> Result<Drill, DrillError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DrillError::Read { path: path.to_path_buf(), source })?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<Drill, DrillError> {
    let invalid = |message: String| DrillError::Invalid { path: path.to_path_buf(), message };
    let raw: RawDrill = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
    let duration = |key: &str, text: &str| {
        Duration::parse_human(text).map_err(|message| invalid(format!("`{key}`: {message}")))
    };
    let scenarios = usize::from(!raw.events.is_empty())
        + usize::from(raw.simulate.is_some())
        + usize::from(raw.alert.is_some());
    if scenarios != 1 {
        return Err(invalid("give exactly one scenario: [[events]], [simulate] or [alert]".into()));
    }
    if raw.risk.trim().is_empty() || raw.title.trim().is_empty() {
        return Err(invalid("`risk` and `title` must not be empty".into()));
    }
    let _ = raw.description;
    let run_for = raw.run_for.as_deref().map(|text| duration("run_for", text)).transpose()?;
    let scenario = if let Some(alert) = raw.alert {
        if !raw.expect.is_empty() {
            return Err(invalid(
                "an [alert] drill has no [[expect]]: the alert itself is the expectation".into(),
            ));
        }
        let within = duration("alert.within", &alert.within)?;
        let interval = duration("alert.interval", &alert.interval)?;
        let fault = alert.fault.as_deref().map(|text| duration("alert.fault", text)).transpose()?;
        let fault = fault.unwrap_or(Duration::from_seconds(0));
        if interval.as_nanos() <= 0 || within.as_nanos() < interval.as_nanos() {
            return Err(invalid("`alert.interval` must be positive and at most `alert.within`".into()));
        }
        if within.as_nanos() / interval.as_nanos() > 1_000 {
            return Err(invalid("`alert.within` spans more than 1,000 intervals".into()));
        }
        if alert.series.is_empty() {
            return Err(invalid("`alert.series` is empty".into()));
        }
        Scenario::Alert(AlertScenario {
            name: alert.name,
            fault,
            within,
            interval,
            team: alert.team,
            series: alert.series,
        })
    } else if let Some(simulate) = raw.simulate {
        if simulate.accounts == 0 || simulate.accounts > 10_000 {
            return Err(invalid("`simulate.accounts` must be between 1 and 10,000".into()));
        }
        Scenario::Simulate {
            seed: simulate.seed,
            accounts: simulate.accounts,
            faults: simulate.faults,
            run_for: run_for.unwrap_or(Duration::from_seconds(0)),
        }
    } else {
        let start_text = raw.start.as_deref().unwrap_or(DEFAULT_START);
        let start = Timestamp::parse_rfc3339(start_text)
            .ok_or_else(|| invalid(format!("`start`: {start_text:?} is not an RFC 3339 time")))?;
        let mut lines = Vec::new();
        let mut fault_at = None;
        let mut last = start;
        let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or("drill");
        for (index, event) in raw.events.into_iter().enumerate() {
            let at = start.saturating_add(duration(&format!("events[{index}].at"), &event.at)?);
            if at < last {
                return Err(invalid(format!("`events[{index}].at` is earlier than the event before it")));
            }
            last = at;
            if event.fault && fault_at.is_none() {
                fault_at = Some(at);
            }
            let source = event.source.unwrap_or_else(|| default_source(&event.event_type).to_string());
            let line = serde_json::json!({
                "specversion": "1.0",
                "id": format!("drill-{stem}-{}", index + 1),
                "source": source,
                "type": event.event_type,
                "subject": event.subject,
                "time": at.to_string(),
                "data": event.data,
            })
            .to_string();
            if let Err(rejection) = parse_event(line.as_bytes()) {
                return Err(invalid(format!(
                    "`events[{index}]` is not a valid event: {}: {}",
                    rejection.reason, rejection.detail
                )));
            }
            lines.push(line);
        }
        let end = last.saturating_add(run_for.unwrap_or(Duration::from_seconds(0)));
        Scenario::Events { lines, fault_at: fault_at.unwrap_or(start), end }
    };
    let mut expectations = Vec::new();
    for (index, expect) in raw.expect.into_iter().enumerate() {
        let key = |field: &str| format!("expect[{index}].{field}");
        if lifewatch_core::IncidentKind::parse(&expect.kind).is_none() {
            return Err(invalid(format!("`{}`: {:?} is not an incident kind", key("kind"), expect.kind)));
        }
        let detected_within = expect
            .detected_within
            .as_deref()
            .map(|text| duration(&key("detected_within"), text))
            .transpose()?;
        expectations.push(Expectation {
            kind: expect.kind,
            entity: expect.entity,
            count: expect.count,
            at_least: expect.at_least.unwrap_or(1),
            owner: expect.owner,
            severity: expect.severity,
            detected_within,
            notify: expect.notify,
            escalate: expect.escalate,
            comms: expect.comms,
        });
    }
    if !matches!(scenario, Scenario::Alert(_)) && expectations.is_empty() {
        return Err(invalid("an event drill needs at least one [[expect]]".into()));
    }
    Ok(Drill { path: path.to_path_buf(), risk: raw.risk, title: raw.title, scenario, expectations })
}

/// The usual source of an event type, when a drill event names none.
fn default_source(event_type: &str) -> &'static str {
    match event_type.split('.').next() {
        Some("project") => "cloud/provisioner",
        Some("dispute") => "cloud/billing",
        _ => "cloud/accounts",
    }
}

fn human<S: serde::Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.collect_str(duration),
        None => serializer.serialize_none(),
    }
}

/// Runs `drill` under `config`, with comms templates and alerting rules
/// read from the package at `root`.
pub fn run(drill: &Drill, config: &AppConfig, root: &Path) -> anyhow::Result<Outcome> {
    let checks = match &drill.scenario {
        Scenario::Alert(alert) => vec![run_alert(alert, root)?],
        Scenario::Events { lines, fault_at, end, .. } => {
            run_events(lines.iter().map(String::as_bytes), *fault_at, Some(*end), drill, config, root)?
        }
        Scenario::Simulate { seed, accounts, faults, .. } => {
            let options = lifewatch_sim::SimulateOptions {
                seed: *seed,
                accounts: *accounts,
                faults: *faults,
                ..Default::default()
            };
            let start = Timestamp::from_unix_seconds(options.start);
            let mut stream = Vec::new();
            lifewatch_sim::generate(options, &mut stream)?;
            let lines: Vec<&[u8]> =
                stream.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()).collect();
            // run_events runs the clock `run_for` past the last event.
            run_events(lines.into_iter(), start, None, drill, config, root)?
        }
    };
    let passed = checks.iter().all(|check| check.met);
    // Shown relative to the package when it is in it.
    let shown = drill.path.strip_prefix(root).unwrap_or(&drill.path).display().to_string();
    Ok(Outcome { drill: shown, risk: drill.risk.clone(), title: drill.title.clone(), passed, checks })
}

/// Feeds `lines` through a [`Writer`] on a temporary database with the
/// configuration's routing, ticks the clock to `end` (or by the
/// simulate recipe's `run_for` past the last event), and checks the
/// expectations against what the store then holds.
fn run_events<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    fault_at: Timestamp,
    end: Option<Timestamp>,
    drill: &Drill,
    config: &AppConfig,
    root: &Path,
) -> anyhow::Result<Vec<Check>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("drill.db");
    let mut writer = Writer::open(&db, config.engine.clone())?;
    writer.set_delivery_router(crate::deliver::router(&config.notifications));
    for line in lines {
        // The simulator's malformed lines are rejected, as in production.
        if let Ok(event) = parse_event(line)
            && let Fed::Rejected(rejection) = writer.feed_event(line, &event)
        {
            tracing::debug!(reason = %rejection.reason, "drill event rejected");
        }
    }
    let end = match (end, &drill.scenario) {
        (Some(end), _) => Some(end),
        (None, Scenario::Simulate { run_for, .. }) => {
            writer.engine().latest_event_time().map(|latest| latest.saturating_add(*run_for))
        }
        (None, _) => writer.engine().latest_event_time(),
    };
    if let Some(end) = end {
        writer.tick(end);
    }
    writer.commit()?;
    drop(writer);
    let store = Store::open_read_only(&db)?;
    evaluate(&store, fault_at, drill, root, false)
}

/// Checks `drill`'s expectations against what `store` holds, the fault at
/// `fault_at` (event time). With `delivered`, an expected notification
/// counts only once its delivery succeeded (a live drill); otherwise once
/// it is routed (pending, delivered or dead: not held back).
pub fn evaluate(
    store: &Store,
    fault_at: Timestamp,
    drill: &Drill,
    root: &Path,
    delivered: bool,
) -> anyhow::Result<Vec<Check>> {
    let all = query::incidents(store, &query::IncidentQuery::default())?.incidents;
    let mut checks = Vec::new();
    for expectation in &drill.expectations {
        let matching: Vec<_> = all
            .iter()
            .filter(|record| record.kind.as_str() == expectation.kind)
            .filter(|record| {
                expectation.entity.as_ref().is_none_or(|entity| {
                    &record.entity.id == entity || record.region.as_ref() == Some(entity)
                })
            })
            .collect();
        let mut misses = Vec::new();
        let found = matching.len() as u64;
        match expectation.count {
            Some(count) if found != count => {
                misses.push(format!("{count} incidents expected, {found} opened"))
            }
            None if found < expectation.at_least => {
                misses.push(format!("at least {} incidents expected, {found} opened", expectation.at_least));
            }
            _ => {}
        }
        if let Some(owner) = &expectation.owner {
            for record in matching.iter().filter(|record| &record.owner != owner) {
                misses.push(format!("{} owned by {}, not {owner}", record.id, record.owner));
            }
        }
        if let Some(severity) = &expectation.severity {
            for record in matching.iter().filter(|record| record.severity.as_str() != severity) {
                misses.push(format!("{} is {}, not {severity}", record.id, record.severity.as_str()));
            }
        }
        let first = matching.iter().map(|record| record.opened_at).min();
        let detect = first.map(|opened| opened.since(fault_at));
        if let (Some(within), Some(detect)) = (expectation.detected_within, detect)
            && detect > within
        {
            misses.push(format!("detected {detect} after the fault, more than {within}"));
        }
        // Deliveries of the matching incidents, with the event time of the
        // transition each carries.
        let mut reached: Vec<(String, String, Timestamp)> = Vec::new();
        for record in &matching {
            for delivery in query::notifications_of(store, &record.id)? {
                if matches!(delivery.state.as_str(), "inhibited" | "suppressed")
                    || (delivered && !matches!(delivery.state.as_str(), "delivered" | "summarised"))
                {
                    continue;
                }
                let at = match delivery.transition.as_str() {
                    "opened" => record.opened_at,
                    "resolved" => record.resolved_at.unwrap_or(record.opened_at),
                    _ => record.opened_at,
                };
                reached.push((delivery.channel, delivery.transition, at));
            }
        }
        let mut notify_at: Option<Timestamp> = None;
        for channel in &expectation.notify {
            let at = reached
                .iter()
                .filter(|(name, transition, _)| name == channel && transition == "opened")
                .map(|(_, _, at)| *at)
                .min();
            match at {
                Some(at) => notify_at = Some(notify_at.map_or(at, |earlier| earlier.min(at))),
                None => misses.push(format!("no notification on {channel}")),
            }
        }
        for channel in &expectation.escalate {
            if !reached.iter().any(|(name, transition, _)| name == channel && transition == "escalated") {
                misses.push(format!("no escalation to {channel}"));
            }
        }
        if let Some(comms) = &expectation.comms {
            misses.extend(crate::readiness::comms_problems(root, comms));
        }
        let notified: BTreeSet<String> = reached.iter().map(|(name, _, _)| name.clone()).collect();
        checks.push(Check {
            expectation: expectation.label(),
            met: misses.is_empty(),
            time_to_detect: detect.map(|detect| detect.to_string()),
            time_to_notify: notify_at.map(|at| at.since(fault_at).to_string()),
            notified: notified.into_iter().collect(),
            misses,
            incidents: matching.iter().flat_map(|record| [record.id.clone(), record.key.clone()]).collect(),
        });
    }
    Ok(checks)
}

/// Evaluates the alert's rules on the scenario's series at every interval
/// from the fault to `within` after it, expecting nothing each time, and
/// reads when promtool reports the alert firing (a failed expectation) and
/// with which labels. An alert already firing at the fault is reported too:
/// the series say nothing was wrong before it.
fn run_alert(alert: &AlertScenario, root: &Path) -> anyhow::Result<Check> {
    let rules = root.join("ops/prometheus/alerts.yml");
    let rules = std::fs::canonicalize(&rules)
        .map_err(|error| anyhow::anyhow!("cannot read the alerting rules {}: {error}", rules.display()))?;
    let steps = alert.within.as_nanos() / alert.interval.as_nanos();
    let interval = alert.interval.to_string();
    let evaluations: Vec<serde_json::Value> = (0..=steps)
        .map(|step| {
            let at = Duration::from_nanos(alert.fault.as_nanos() + step * alert.interval.as_nanos());
            serde_json::json!({"eval_time": at.to_string(), "alertname": alert.name, "exp_alerts": []})
        })
        .collect();
    // JSON is YAML: promtool reads it as its unit-test file.
    let test = serde_json::json!({
        "rule_files": [rules.display().to_string()],
        "evaluation_interval": interval,
        "tests": [{"interval": interval, "input_series": alert.series, "alert_rule_test": evaluations}],
    });
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("drill_test.yml");
    std::fs::write(&file, test.to_string())?;
    let mut check = Check {
        expectation: format!("alert {}", alert.name),
        met: false,
        time_to_detect: None,
        time_to_notify: None,
        notified: Vec::new(),
        misses: Vec::new(),
        incidents: Vec::new(),
    };
    let output = match std::process::Command::new("promtool").arg("test").arg("rules").arg(&file).output() {
        Ok(output) => output,
        Err(error) => {
            check.misses.push(format!(
                "promtool could not run ({error}): install Prometheus's promtool (Debian: apt-get install prometheus)"
            ));
            return Ok(check);
        }
    };
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let (fired, team) = first_firing(&text, &alert.name);
    match fired.map(|at| Duration::from_nanos(at.as_nanos() - alert.fault.as_nanos())) {
        Some(at) => {
            // Alertmanager pages the team as the alert fires.
            check.time_to_detect = Some(at.to_string());
            check.time_to_notify = Some(at.to_string());
            if at > alert.within {
                check.misses.push(format!("fired {at} after the fault, more than {}", alert.within));
            }
            if let Some(team) = &team {
                check.notified.push(format!("team {team}"));
            }
            match (&alert.team, &team) {
                (Some(expected), Some(team)) if expected != team => {
                    check.misses.push(format!("labelled team {team}, not {expected}"));
                }
                (Some(expected), None) => check.misses.push(format!("no team label (expected {expected})")),
                _ => {}
            }
        }
        None if output.status.success() => {
            check.misses.push(format!("{} did not fire within {}", alert.name, alert.within));
        }
        None => {
            let mut message = String::from("promtool failed: ");
            let _ = write!(message, "{}", text.trim().lines().take(5).collect::<Vec<_>>().join(" | "));
            check.misses.push(message);
        }
    }
    check.met = check.misses.is_empty();
    Ok(check)
}

/// The earliest evaluation at which promtool's failures show `alert`
/// firing, and the `team` label it fired with.
fn first_firing(output: &str, alert: &str) -> (Option<Duration>, Option<String>) {
    let marker = format!("alertname: {alert}, time: ");
    let mut best: Option<(Duration, Option<String>)> = None;
    let lines: Vec<&str> = output.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix(&marker) else { continue };
        let Some(time) = rest.split(',').next().and_then(|time| Duration::parse_human(time.trim()).ok())
        else {
            continue;
        };
        let team = lines[index..]
            .iter()
            .take(8)
            .find_map(|line| line.split("team=\"").nth(1).and_then(|rest| rest.split('"').next()))
            .map(str::to_string);
        if best.as_ref().is_none_or(|(earliest, _)| time < *earliest) {
            best = Some((time, team));
        }
    }
    match best {
        Some((time, team)) => (Some(time), team),
        None => (None, None),
    }
}

/// The Markdown report of a set of outcomes, for the launch review.
pub fn markdown(outcomes: &[Outcome]) -> String {
    let mut text = String::from("# Drill report\n\n");
    let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
    let _ = writeln!(text, "{passed} of {} drills passed.\n", outcomes.len());
    text.push_str(
        "| drill | risk | expectation | met | time to detect | time to notify | notified | missed |\n",
    );
    text.push_str("|---|---|---|---|---|---|---|---|\n");
    let cell = |text: &str| text.replace('|', "\\|").replace(['\n', '\r'], " ");
    for outcome in outcomes {
        for check in &outcome.checks {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&outcome.drill),
                cell(&outcome.risk),
                cell(&check.expectation),
                if check.met { "yes" } else { "**no**" },
                check.time_to_detect.as_deref().unwrap_or("-"),
                check.time_to_notify.as_deref().unwrap_or("-"),
                cell(&check.notified.join(", ")),
                cell(&check.misses.join("; ")),
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Drill, DrillError> {
        parse(text, Path::new("ops/drills/test.toml"))
    }

    const EVENTS: &str = r#"
        risk = "project_provisioning_fails"
        title = "A project fails to provision"
        run_for = "1h"

        [[events]]
        at = "0s"
        type = "account.created"
        subject = "acc_d1"
        data = { plan = "team" }

        [[events]]
        at = "1m"
        fault = true
        type = "project.requested"
        subject = "prj_d1"
        data = { account_id = "acc_d1", region = "eu-west-1" }

        [[expect]]
        kind = "stuck"
        detected_within = "6m"
    "#;

    #[test]
    fn an_event_drill_builds_valid_events_with_the_fault_time() {
        let drill = parsed(EVENTS).unwrap();
        let Scenario::Events { lines, fault_at, end } = &drill.scenario else { panic!() };
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"source\":\"cloud/provisioner\""), "{}", lines[1]);
        let start = Timestamp::parse_rfc3339(DEFAULT_START).unwrap();
        assert_eq!(fault_at.since(start), Duration::from_seconds(60));
        assert_eq!(end.since(start), Duration::from_seconds(3_660));
        assert_eq!(drill.expectations[0].detected_within, Some(Duration::from_seconds(360)));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (EVENTS.replace("kind = \"stuck\"", "kind = \"stuk\""), "not an incident kind"),
            (EVENTS.replace("at = \"1m\"", "at = \"soon\""), "events[1].at"),
            (EVENTS.replace("type = \"project.requested\"", "type = \"project.teleported\""), "events[1]"),
            (EVENTS.replace("run_for", "run_four"), "unknown field"),
            (
                EVENTS.replace("[[expect]]\n        kind = \"stuck\"\n        detected_within = \"6m\"", ""),
                "[[expect]]",
            ),
            (format!("{EVENTS}\n[simulate]\nseed = 1\naccounts = 3\n"), "exactly one scenario"),
        ];
        for (text, named) in cases {
            let error = parsed(&text).unwrap_err().to_string();
            assert!(error.contains(named), "{error} should name {named}");
            assert!(error.contains("ops/drills/test.toml"), "{error}");
        }
    }

    #[test]
    fn promtool_failures_give_the_first_firing_and_its_team() {
        let output = "Unit Testing:  t.yml\n  FAILED:\n    alertname: LifewatchDown, time: 6m, \n        exp:[], \n        got:[\n            0:\n              Labels:{alertname=\"LifewatchDown\", team=\"launch-ops\"}\n    alertname: LifewatchDown, time: 5m, \n        exp:[], \n        got:[\n              Labels:{alertname=\"LifewatchDown\", team=\"launch-ops\"}\n";
        let (at, team) = first_firing(output, "LifewatchDown");
        assert_eq!(at, Some(Duration::from_seconds(300)));
        assert_eq!(team.as_deref(), Some("launch-ops"));
        assert_eq!(first_firing(output, "LifewatchAbsent"), (None, None));
    }
}
