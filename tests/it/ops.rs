//! The operations package (`ops/`) held to itself and to the binary: every
//! runbook has the same sections and names only real commands, metrics the
//! monitor exports and dashboard pages; `ops/SUPPORT.md`'s teams are the
//! configuration's owners; the alerting rules pass `promtool check rules`
//! and their unit tests, and every metric a rule or a Grafana panel names is
//! one lifewatch exports (read from a live `/metrics`); `lifewatch risks`
//! prints the register.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{lifewatch, repo_root, temp_db};
use crate::web::Served;

/// The sections of every runbook, in this order.
const SECTIONS: [&str; 7] = ["Detect", "Impact", "Triage", "Mitigate", "Rollback", "Escalate", "Communicate"];

/// Commands the runbooks may name before they exist. Remove a name once
/// the command exists.
const PLANNED: [&str; 0] = [];

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The `Commands:` of a help text (without `help`).
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The binary's subcommands, each with its own subcommands (`report stuck`).
fn command_tree() -> Vec<(String, BTreeSet<String>)> {
    let top = lifewatch(&["--help"], None);
    top.assert_success();
    subcommands(&top.stdout_text())
        .into_iter()
        .map(|name| {
            let help = lifewatch(&[&name, "--help"], None);
            help.assert_success();
            let nested = subcommands(&help.stdout_text());
            (name, nested)
        })
        .collect()
}

/// The `## ` sections of a Markdown text, each with its body.
fn sections(text: &str) -> Vec<(String, String)> {
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

/// Everything written as code in a Markdown text: fenced blocks and inline
/// code spans.
fn code(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match block.take() {
                Some(body) => pieces.push(body),
                None => block = Some(String::new()),
            }
            continue;
        }
        if let Some(body) = block.as_mut() {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            pieces.push(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    pieces
}

/// Each `lifewatch WORD [WORD]` in `code`: the subcommand and the word after
/// it when that is not an option.
fn invocations(code: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let words: Vec<&str> = code.split(|c: char| c.is_whitespace() || "();|&".contains(c)).collect();
    for (index, word) in words.iter().enumerate() {
        if *word != "lifewatch" {
            continue;
        }
        let Some(sub) = words.get(index + 1).filter(|sub| !sub.is_empty() && !sub.starts_with('-')) else {
            continue;
        };
        let next = words
            .get(index + 2)
            .filter(|next| next.chars().all(|c| c.is_ascii_lowercase()) && !next.is_empty())
            .map(|next| next.to_string());
        found.push((sub.to_string(), next));
    }
    found
}

/// The metric names (`lifewatch_…`) in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("lifewatch_") {
        let boundary = start == 0 || {
            let before = rest.as_bytes()[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'_')
        };
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if boundary {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric names lifewatch exports: the families of a live `/metrics`
/// (`lifewatch serve` on a replayed fixture), with the series names of its
/// histograms, and the table of docs/metrics.md, for the live loop's
/// counters that `serve` declares only once they have a sample. The table
/// must hold every family the server declares.
fn exported_metrics() -> BTreeSet<String> {
    let (_dir, db) = temp_db("ops-metrics");
    let db_text = db.to_str().expect("a UTF-8 path");
    lifewatch(&["replay", "fixtures/launch-day.jsonl", "--db", db_text], None).assert_success();
    let served = Served::start(&db, &[]);
    let (status, metrics) = served.text("/metrics");
    assert_eq!(status, 200, "{metrics}");
    let mut live = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        live.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                live.insert(format!("{name}{suffix}"));
            }
        }
    }
    assert!(live.len() >= 10, "too few families on /metrics:\n{metrics}");
    let documented: BTreeSet<String> = read("docs/metrics.md")
        .lines()
        .filter(|line| line.starts_with("| `lifewatch_"))
        .flat_map(|line| metric_names(line.split('|').nth(1).unwrap_or_default()))
        .collect();
    let undocumented: Vec<&String> = live
        .iter()
        .filter(|name| !name.ends_with("_bucket") && !name.ends_with("_sum") && !name.ends_with("_count"))
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(undocumented.is_empty(), "families on /metrics missing from docs/metrics.md: {undocumented:?}");
    live.extend(documented);
    live
}

fn runbooks() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("ops/runbooks"))
        .expect("ops/runbooks")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    names.sort();
    names.into_iter().map(|name| (name.clone(), read(&format!("ops/runbooks/{name}")))).collect()
}

/// What is wrong with one runbook's sections, if anything.
fn section_problems(name: &str, text: &str) -> Vec<String> {
    let found = sections(text);
    let titles: Vec<&str> = found.iter().map(|(title, _)| title.as_str()).collect();
    let mut problems = Vec::new();
    if titles != SECTIONS {
        problems.push(format!("{name}: sections {titles:?}, expected {SECTIONS:?}"));
    }
    for (title, body) in &found {
        if body.trim().is_empty() {
            problems.push(format!("{name}: section {title} is empty"));
        }
    }
    problems
}

#[test]
fn every_runbook_has_the_sections_in_order_and_names_real_commands() {
    let tree = command_tree();
    assert!(tree.len() >= 12 && tree.iter().any(|(name, _)| name == "risks"), "{tree:?}");
    let mut problems = Vec::new();
    let runbooks = runbooks();
    for kind in lifewatch_core::IncidentKind::ALL {
        if !runbooks.iter().any(|(name, _)| *name == format!("{}.md", kind.as_str())) {
            problems.push(format!("no runbook for the incident kind {kind}"));
        }
    }
    for extra in ["events_stopped", "monitor_down", "nats_unavailable", "database", "backlog", "bad_deploy"] {
        if !runbooks.iter().any(|(name, _)| *name == format!("{extra}.md")) {
            problems.push(format!("no runbook {extra}.md"));
        }
    }
    let mut named = 0;
    for (name, text) in &runbooks {
        problems.extend(section_problems(name, text));
        for piece in code(text) {
            for (sub, next) in invocations(&piece) {
                named += 1;
                if PLANNED.contains(&sub.as_str()) {
                    continue;
                }
                match tree.iter().find(|(command, _)| *command == sub) {
                    None => {
                        problems.push(format!("{name}: `lifewatch {sub}` is not a command (in `{piece}`)"))
                    }
                    Some((_, nested)) if !nested.is_empty() => match next {
                        Some(next) if nested.contains(&next) => {}
                        // `deliveries --db …` has subcommands and works without one.
                        _ if sub == "deliveries" => {}
                        _ => problems.push(format!(
                            "{name}: `lifewatch {sub}` needs one of {nested:?} (in `{piece}`)"
                        )),
                    },
                    Some(_) => {}
                }
            }
        }
        if !["`/`", "`/incidents/{id}`", "`/entities/{id}`"].iter().any(|page| text.contains(page)) {
            problems.push(format!("{name}: names no dashboard page"));
        }
        if metric_names(text).is_empty() {
            problems.push(format!("{name}: names no metric"));
        }
    }
    assert!(named >= 50, "only {named} lifewatch invocations found: is the extraction broken?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_runbook_checks_catch_what_they_are_for() {
    let good = SECTIONS.iter().map(|title| format!("## {title}\n\ntext\n\n")).collect::<String>();
    assert!(section_problems("x.md", &good).is_empty());
    let swapped = good
        .replace("## Rollback", "## Tmp")
        .replace("## Mitigate", "## Rollback")
        .replace("## Tmp", "## Mitigate");
    assert!(!section_problems("x.md", &swapped).is_empty());
    let empty = good.replace("## Impact\n\ntext", "## Impact\n\n");
    assert_eq!(section_problems("x.md", &empty), vec!["x.md: section Impact is empty".to_string()]);
    // A heading inside a code block is not a section.
    assert!(section_problems("x.md", &format!("{good}```sh\n## Extra\n```\n")).is_empty());
    let found =
        invocations("for k in a; do\n  lifewatch incidents --db \"$DB\"; done | lifewatch report stuck");
    assert_eq!(
        found,
        vec![("incidents".to_string(), None), ("report".to_string(), Some("stuck".to_string()))]
    );
    assert_eq!(
        code("see `lifewatch show --db X` and\n```sh\nlifewatch verify\n```\n"),
        vec!["lifewatch show --db X".to_string(), "lifewatch verify\n".to_string()]
    );
    assert_eq!(
        metric_names("a `lifewatch_open_incidents{kind=\"x\"}` b job=\"lifewatch\" xlifewatch_no"),
        BTreeSet::from(["lifewatch_open_incidents".to_string()])
    );
}

/// The team names of the Markdown table under `## Teams`, each with its
/// escalation cell.
fn support_teams(text: &str) -> Vec<(String, String)> {
    let body = sections(text)
        .into_iter()
        .find(|(title, _)| title == "Teams")
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no ## Teams section"));
    let mut rows = body.lines().filter(|line| line.trim_start().starts_with('|'));
    let header: Vec<String> = rows
        .next()
        .unwrap_or_else(|| panic!("no table under ## Teams"))
        .split('|')
        .map(|cell| cell.trim().to_string())
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(header, ["team", "owns", "does not own", "reach", "escalation"], "the Teams table's columns");
    rows.skip(1) // the |---| line
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 7, "a row of five cells: {line}");
            assert!(cells[1..6].iter().all(|cell| !cell.is_empty()), "an empty cell: {line}");
            (cells[1].to_string(), cells[5].to_string())
        })
        .collect()
}

#[test]
fn the_support_model_names_exactly_the_configured_teams() {
    let rows = support_teams(&read("ops/SUPPORT.md"));
    let teams: Vec<String> = rows.iter().map(|(team, _)| team.clone()).collect();
    let unique: BTreeSet<String> = teams.iter().cloned().collect();
    assert_eq!(unique.len(), teams.len(), "a team listed twice: {teams:?}");
    let config: toml::Table =
        toml::from_str(&read("ops/lifewatch.toml")).expect("ops/lifewatch.toml is TOML");
    let names = |key: &str, field: &str| -> Option<BTreeSet<String>> {
        let entries = config.get(key)?.as_array()?;
        Some(entries.iter().filter_map(|entry| entry.get(field)?.as_str().map(str::to_string)).collect())
    };
    let owners = names("owners", "owner").expect("ops/lifewatch.toml has [[owners]]");
    assert_eq!(unique, owners, "ops/SUPPORT.md's teams against the owners of ops/lifewatch.toml");
    let configured = names("teams", "name").expect("ops/lifewatch.toml has [[teams]]");
    assert_eq!(unique, configured, "ops/SUPPORT.md's teams against the [[teams]] of ops/lifewatch.toml");
    // Each team's escalation cell states its configured chain.
    for team in config["teams"].as_array().expect("[[teams]]") {
        let name = team["name"].as_str().expect("a team's name");
        let steps = team["escalation"].as_array().unwrap_or_else(|| panic!("team {name} has no escalation"));
        let mut chain = steps
            .iter()
            .map(|step| {
                let targets: Vec<&str> = step["notify"]
                    .as_array()
                    .expect("notify")
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .collect();
                format!("{} {}", step["after"].as_str().expect("after"), targets.join(", "))
            })
            .collect::<Vec<_>>()
            .join(" → ");
        if steps.last().and_then(|step| step.get("repeat")).and_then(toml::Value::as_bool) == Some(true) {
            chain.push_str(" (repeats)");
        }
        let cell = &rows.iter().find(|(team, _)| team == name).expect("the team's row").1;
        assert!(
            cell.contains(&format!("`{chain}`")),
            "ops/SUPPORT.md's escalation of {name} does not state `{chain}`: {cell}"
        );
    }
    // Every owner a risk names is one of them.
    let risks = lifewatch(&["risks", "--format", "jsonl"], None);
    risks.assert_success();
    for risk in risks.records() {
        let owner = risk["owner"].as_str().unwrap_or_default();
        assert!(
            unique.contains(owner),
            "risk {} is owned by {owner:?}, not a team of ops/SUPPORT.md",
            risk["id"]
        );
    }
}

/// `promtool ARGS` in the repository root: `None` when promtool is not
/// installed (and CI is not set: under CI a missing promtool fails).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool").args(args).current_dir(repo_root()).output() {
        Ok(output) => Some(output),
        Err(error) => {
            assert!(
                std::env::var("CI").is_err(),
                "promtool is not installed ({error}): scripts/test.sh installs Debian's prometheus"
            );
            eprintln!("skipping the promtool check: promtool is not installed ({error})");
            None
        }
    }
}

fn assert_promtool(args: &[&str]) {
    if let Some(output) = promtool(args) {
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The alerting rules as JSON.
fn rules() -> Vec<Value> {
    let file: Value = serde_norway::from_str(&read("ops/prometheus/alerts.yml")).expect("alerts.yml is YAML");
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    assert_promtool(&["check", "rules", "ops/prometheus/alerts.yml"]);
    assert_promtool(&["test", "rules", "ops/prometheus/alerts_test.yml"]);

    // Each alert has a unit test where it fires and one where it does not,
    // and a runbook that exists.
    let tests: Value =
        serde_norway::from_str(&read("ops/prometheus/alerts_test.yml")).expect("alerts_test.yml is YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let rules = rules();
    assert!(rules.len() >= 9, "{rules:?}");
    for rule in &rules {
        let alert = rule["alert"].as_str().expect("only alerting rules");
        let fires = |fires: bool| {
            cases.iter().any(|case| {
                case["alertname"] == alert
                    && case["exp_alerts"].as_array().is_some_and(|expected| expected.is_empty() != fires)
            })
        };
        assert!(fires(true), "{alert}: no unit test where it fires");
        assert!(fires(false), "{alert}: no unit test where it does not fire");
        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        assert!(
            runbook.starts_with("ops/runbooks/") && repo_root().join(runbook).is_file(),
            "{alert}: runbook_url {runbook:?} is not a runbook of ops/runbooks/"
        );
    }
}

#[test]
fn rules_and_panels_name_only_metrics_lifewatch_exports() {
    let exported = exported_metrics();
    let mut expressions: Vec<(String, String)> = rules()
        .iter()
        .map(|rule| (format!("alert {}", rule["alert"]), rule["expr"].as_str().expect("an expr").to_string()))
        .collect();
    let dashboard: Value =
        serde_json::from_str(&read("ops/grafana/lifewatch.json")).expect("the dashboard is JSON");
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            panels += 1;
            let expr = target["expr"].as_str().expect("a target's expr");
            expressions.push((format!("panel {}", panel["title"]), expr.to_string()));
        }
    }
    assert!(panels >= 15, "only {panels} panel queries");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        if names.is_empty() && !expr.contains("up{") {
            problems.push(format!("{place} names no lifewatch metric: {expr}"));
        }
        for name in names {
            if !exported.contains(&name) {
                problems.push(format!("{place} names {name}, which lifewatch does not export: {expr}"));
            }
            used.insert(name);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(used.len() >= 12, "the rules and panels name only {used:?}");
    // The check itself: a name lifewatch does not export is caught.
    assert!(!exported.contains("lifewatch_events_total"));
}

#[test]
fn risks_prints_the_register_with_its_coverage() {
    let table = lifewatch(&["risks"], None);
    table.assert_success();
    let text = table.stdout_text();
    assert!(text.starts_with("ID "), "{text}");
    for expected in [
        "monitor_down",
        "LifewatchNoEvents",
        "kinds: provisioning_failed",
        "accepted: quota_wrongly_blocks by customer-support",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    let lines = lifewatch(&["risks", "--format", "jsonl"], None);
    lines.assert_success();
    let records = lines.records();
    assert!(records.len() >= 12, "{records:?}");
    for record in &records {
        let status = record["status"].as_str().unwrap_or_default();
        assert!(["covered", "accepted", "gap"].contains(&status), "{record}");
        assert_eq!(status == "gap", !record["gaps"].as_array().expect("gaps").is_empty(), "{record}");
        if status != "accepted" {
            assert!(record["runbook"].is_string() && record["owner"].is_string(), "{record}");
        }
    }
}

#[test]
fn risks_names_the_risk_and_key_of_a_mistake_and_exits_2() {
    let dir = crate::common::TempDir::new("ops-risks");
    let copied = Command::new("cp").arg("-R").arg(repo_root().join("ops")).arg(dir.join("ops")).status();
    assert!(copied.is_ok_and(|status| status.success()));
    let root = dir.to_str().expect("a UTF-8 path");
    lifewatch(&["risks", "--root", root], None).assert_success();

    let register = dir.join("ops/risks.toml");
    let shipped = std::fs::read_to_string(&register).expect("the copy");
    for (from, to, expected) in [
        (
            "owner = \"launch-ops\"\nrunbook = \"ops/runbooks/backlog.md\"",
            "owner = \"lunch-ops\"\nrunbook = \"ops/runbooks/backlog.md\"",
            "risk incidents_not_published: `owner`",
        ),
        (
            "alerts = [\"LifewatchNoEvents\"]",
            "alerts = [\"LifewatchNoEvent\"]",
            "risk events_stop: `detection.alerts`",
        ),
        ("kinds = [\"quota_breach\"]", "kinds = [\"quota\"]", "risk quota_not_enforced: `detection.kinds`"),
        (
            "comms = \"stuck\"",
            "comms = \"stuck\"\nseverity = \"high\"",
            "risk project_stuck: `severity`: unknown key",
        ),
    ] {
        assert!(shipped.contains(from), "{from}");
        std::fs::write(&register, shipped.replacen(from, to, 1)).expect("write");
        let run = lifewatch(&["risks", "--root", root], None);
        assert_eq!(run.code, Some(2), "{expected}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{expected} not in {}", run.stderr);
    }
    // A runbook removed: refused, naming it.
    std::fs::write(&register, &shipped).expect("write");
    std::fs::remove_file(dir.join("ops/runbooks/database.md")).expect("remove");
    let run = lifewatch(&["risks", "--root", root], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("risk database_full_or_corrupt: `runbook`"), "{}", run.stderr);

    // A drill written: that risk is covered; a detection removed: a gap.
    std::fs::copy(repo_root().join("ops/runbooks/database.md"), dir.join("ops/runbooks/database.md"))
        .expect("copy");
    std::fs::create_dir_all(dir.join("ops/drills")).expect("drills");
    std::fs::write(dir.join("ops/drills/monitor_down.toml"), "# a drill\n").expect("write");
    std::fs::write(
        &register,
        shipped.replacen("detection = { alerts = [\"LifewatchNatsDisconnected\"] }\n", "", 1),
    )
    .expect("write");
    let run = lifewatch(&["risks", "--root", root, "--format", "jsonl"], None);
    run.assert_success();
    let status = |id: &str| {
        run.records().into_iter().find(|record| record["id"] == id).unwrap_or_else(|| panic!("{id}"))
    };
    assert_eq!(status("monitor_down")["status"], "covered");
    let nats = status("nats_unavailable");
    assert_eq!(nats["status"], "gap");
    assert!(nats["gaps"].as_array().expect("gaps").iter().any(|gap| gap["gap"] == "no_detection"), "{nats}");
    assert!(Path::new(root).join("ops/risks.toml").is_file());
}
