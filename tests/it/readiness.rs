//! `lifewatch check` as the launch-readiness gate, and `lifewatch drill`:
//! the shipped package passes; a copy of it with any one piece removed or
//! broken fails, naming the gap; every shipped drill passes and a drill that
//! expects the wrong thing is reported missed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{TempDir, lifewatch, lifewatch_in, repo_root};

/// A copy of the repository's operations package (`ops/`) under a fresh
/// directory, and its configuration's path.
fn package(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    copy_dir(&repo_root().join("ops"), &dir.join("ops"));
    let config = dir.join("ops/lifewatch.toml");
    (dir, config)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(old), "{} has no {old:?}", path.display());
    std::fs::write(path, text.replacen(old, new, 1)).unwrap();
}

/// `check --config CONFIG --format json` in `dir`: the exit code and the document.
fn gate(dir: &Path, config: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["check", "--config", config.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let run = lifewatch_in(dir, &args, None);
    let document = serde_json::from_slice(&run.stdout).unwrap_or_else(|error| {
        panic!("check --format json printed no JSON ({error}): {}\n{}", run.stdout_text(), run.stderr)
    });
    (run.code, document, run.stderr)
}

/// The gaps of a document as `(item, gap)` pairs.
fn gaps(document: &Value) -> Vec<(String, String, String)> {
    document["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|gap| {
            (
                gap["item"].as_str().unwrap().to_string(),
                gap["gap"].as_str().unwrap().to_string(),
                gap["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_shipped_package_is_ready() {
    let run = lifewatch(&["check"], None);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout_text(), run.stderr);
    let table = run.stdout_text();
    assert!(table.starts_with("ITEM"), "{table}");
    for row in ["kind stuck", "kind regional_outage", "risk events_stop", "risk quota_wrongly_blocks"] {
        assert!(table.lines().any(|line| line.starts_with(row)), "no row {row}:\n{table}");
    }
    assert!(
        table.lines().any(|line| line.starts_with("risk quota_wrongly_blocks") && line.ends_with("accepted"))
    );
    assert!(table.contains("ready: every kind and risk"), "{table}");
    // The secrets are not set here: warned, not a gap, unless --secrets.
    assert!(
        run.stderr.contains("warning: channel platform-pager: `routing_key_env` names LIFEWATCH_PD_PLATFORM")
    );
    let strict = lifewatch(&["check", "--secrets", "--no-drills"], None);
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(strict.stderr.contains("gap: channel platform-pager"), "{}", strict.stderr);

    let (dir, config) = package("ready");
    let (code, document, stderr) = gate(&dir, &config, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(document["ready"], true);
    assert!(document["gaps"].as_array().unwrap().is_empty());
    let drills = document["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 17, "every shipped drill ran");
    assert!(drills.iter().all(|drill| drill["passed"] == true));
    assert_eq!(document["rows"].as_array().unwrap().len(), 8 + 18, "a row per kind and per risk");
}

/// Each kind of gap, made in a fresh copy of the package: check exits 1 and
/// names it (item, kind of gap, and what).
#[test]
fn check_names_each_kind_of_gap() {
    type Break = fn(&Path);
    let cases: [(&str, Break, &str, &str, &str); 11] = [
        (
            "runbook section",
            |root| edit(&root.join("ops/runbooks/quota_breach.md"), "## Rollback", "## Undo"),
            "kind quota_breach",
            "runbook",
            "no section Rollback",
        ),
        (
            "runbook",
            |root| std::fs::remove_file(root.join("ops/runbooks/stuck.md")).unwrap(),
            "kind stuck",
            "runbook",
            "ops/runbooks/stuck.md",
        ),
        (
            "comms template",
            |root| std::fs::remove_file(root.join("ops/comms/billing_dispute.md")).unwrap(),
            "kind billing_dispute",
            "comms",
            "billing_dispute",
        ),
        (
            "comms placeholder",
            |root| edit(&root.join("ops/comms/stuck.md"), "{{incident.state}}", "{{incident.stage}}"),
            "kind stuck",
            "comms",
            "unknown placeholder {{incident.stage}}",
        ),
        (
            "drill",
            |root| std::fs::remove_file(root.join("ops/drills/project_on_inactive_account.toml")).unwrap(),
            "kind invariant_violation",
            "drill",
            "expects a invariant_violation incident",
        ),
        (
            "failing drill",
            |root| {
                edit(
                    &root.join("ops/drills/quota_not_enforced.toml"),
                    "owner = \"customer-support\"",
                    "owner = \"billing-support\"",
                )
            },
            "drill quota_not_enforced",
            "drill_failed",
            "owned by customer-support, not billing-support",
        ),
        (
            "risk owner",
            |root| {
                edit(
                    &root.join("ops/risks.toml"),
                    "detection = { kinds = [\"onboarding_failed\", \"stuck\"] }\nowner = \"accounts-oncall\"\n",
                    "detection = { kinds = [\"onboarding_failed\", \"stuck\"] }\n",
                )
            },
            "risk onboarding_fails_for_cohort",
            "risk",
            "no owner",
        ),
        (
            "team",
            |root| {
                edit(
                    &root.join("ops/lifewatch.toml"),
                    "[[teams]]\nname = \"customer-support\"",
                    "[[teams]]\nname = \"customer-supp0rt\"",
                )
            },
            "kind quota_breach",
            "channel",
            "team customer-support has no [[teams]] entry",
        ),
        (
            "escalation to a person",
            |root| {
                edit(
                    &root.join("ops/lifewatch.toml"),
                    "{ after = \"2h\", notify = [\"launch-ops\"], repeat = true }",
                    "{ after = \"2h\", notify = [\"support-chat\"], repeat = true }",
                )
            },
            "kind quota_breach",
            "channel",
            "escalation chain ends with no person",
        ),
        (
            "escalation chain",
            |root| {
                edit(
                    &root.join("ops/lifewatch.toml"),
                    "escalation = [\n  { after = \"4h\", notify = [\"billing-pager\"] },\n  { after = \"24h\", notify = [\"launch-ops\"], repeat = true },\n]\n",
                    "",
                )
            },
            "kind billing_dispute",
            "channel",
            "team billing-support has no escalation chain",
        ),
        (
            "risk register",
            |root| std::fs::remove_file(root.join("ops/risks.toml")).unwrap(),
            "risks",
            "risk",
            "risks.toml",
        ),
    ];
    for (what, broken, item, kind, message) in cases {
        let (dir, config) = package("gap");
        broken(&dir);
        let (code, document, stderr) = gate(&dir, &config, &[]);
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert_eq!(document["ready"], false, "{what}");
        let found = gaps(&document);
        assert!(
            found.iter().any(|(i, k, m)| i == item && k == kind && m.contains(message)),
            "{what}: no gap ({item}, {kind}, …{message}…) in {found:#?}"
        );
        assert!(
            stderr.lines().any(|line| line.starts_with(&format!("lifewatch check: gap: {item}: "))),
            "{what}: the gap is not named on standard error:\n{stderr}"
        );
    }
}

#[test]
fn every_shipped_drill_passes_and_writes_its_report() {
    let dir = TempDir::new("drill-report");
    let report = dir.join("launch");
    let run = lifewatch(&["drill", "--report", report.to_str().unwrap()], None);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout_text(), run.stderr);
    let table = run.stdout_text();
    assert!(table.contains("17 of 17 drills passed"), "{table}");
    // Measured times: the stuck project is detected at its 5-minute deadline,
    // the dead monitor 2 minutes after the last scrape.
    let row =
        |drill: &str| table.lines().find(|line| line.starts_with(drill)).unwrap_or_else(|| panic!("{table}"));
    assert!(row("project_stuck ").split_whitespace().any(|cell| cell == "5m"), "{}", row("project_stuck "));
    assert!(row("monitor_down ").split_whitespace().any(|cell| cell == "2m"), "{}", row("monitor_down "));
    let markdown = std::fs::read_to_string(report.with_extension("md")).unwrap();
    assert!(
        markdown.starts_with("# Drill report") && markdown.contains("17 of 17 drills passed"),
        "{markdown}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(report.with_extension("json")).unwrap()).unwrap();
    let outcomes = json.as_array().unwrap();
    assert_eq!(outcomes.len(), 17);
    let stall = outcomes.iter().find(|outcome| outcome["risk"] == "regional_provisioning_stall").unwrap();
    assert_eq!(stall["checks"][0]["time_to_detect"], "15m", "{stall}");
    assert!(stall["checks"][0]["notified"].as_array().unwrap().contains(&Value::from("platform-pager")));
}

#[test]
fn a_drill_that_is_not_met_or_not_valid_is_named() {
    let (dir, _) = package("drill-miss");
    let drill = dir.join("ops/drills/project_stuck.toml");
    edit(&drill, "detected_within = \"5m\"", "detected_within = \"4m\"");
    edit(&drill, "notify = [\"platform-pager\", \"platform-chat\"]", "notify = [\"billing-pager\"]");
    let run = lifewatch(&["drill", "--no-report", drill.to_str().unwrap()], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stdout_text().contains("MISSED"), "{}", run.stdout_text());
    for missed in ["detected 5m after the fault, more than 4m", "no notification on billing-pager"] {
        assert!(run.stderr.contains(missed), "{missed}: {}", run.stderr);
    }
    // An alert drill whose alert never fires in time.
    let alert = dir.join("ops/drills/monitor_down.toml");
    edit(&alert, "within = \"5m\"", "within = \"1m\"");
    let run =
        lifewatch(&["drill", "--no-report", "--root", dir.to_str().unwrap(), alert.to_str().unwrap()], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("LifewatchDown did not fire within 1m"), "{}", run.stderr);
    // An invalid drill: exit 2, naming the file and the key.
    edit(&drill, "kind = \"stuck\"", "kind = \"stuk\"");
    let run = lifewatch(&["drill", "--no-report", drill.to_str().unwrap()], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("project_stuck.toml") && run.stderr.contains("expect[0].kind"),
        "{}",
        run.stderr
    );
}

/// `drill --nats`: the drill runs through a live monitor it starts on the
/// rehearsal server, the shipped channels pointed at its own receivers; a
/// notification counts once delivered, timed on the wall clock. The
/// escalation to launch-ops' pager (30 minutes in event time) happens
/// within seconds, because the scenario is moved to end now. A server that
/// already has the monitor's streams is refused, and the drill leaves none.
#[test]
fn a_live_drill_goes_through_the_monitor_and_the_channels() {
    let server = crate::nats_support::NatsServer::start(&[]);
    let dir = TempDir::new("live-drill");
    let drill = dir.join("stuck.toml");
    let text = std::fs::read_to_string(repo_root().join("ops/drills/project_stuck.toml"))
        .unwrap()
        .replace("comms = \"stuck\"\n", "");
    std::fs::write(&drill, text).unwrap();
    let run = lifewatch(
        &[
            "drill",
            "--no-report",
            "--format",
            "json",
            "--nats",
            &server.url(),
            "--timeout",
            "40s",
            drill.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout_text(), run.stderr);
    let outcomes: Value = serde_json::from_slice(&run.stdout).unwrap();
    let check = &outcomes[0]["checks"][0];
    assert_eq!(check["met"], true, "{check}");
    assert_eq!(check["time_to_detect"], "5m", "event time: the deadline");
    let notify = check["time_to_notify"].as_str().expect("measured");
    assert!(notify.ends_with("ms") || notify.ends_with('s'), "{notify}");
    for channel in ["platform-pager", "platform-chat", "launch-pager"] {
        assert!(check["notified"].as_array().unwrap().contains(&Value::from(channel)), "{check}");
    }
    // The drill deleted the streams it made, so it can run again.
    let again = lifewatch(&["drill", "--no-report", "--nats", &server.url(), drill.to_str().unwrap()], None);
    assert_eq!(again.code, Some(0), "{}", again.stderr);

    // A server with the monitor's streams is not a rehearsal server.
    let db = dir.join("real.db");
    let config = repo_root().join("ops/lifewatch.toml");
    let monitor = crate::nats_support::Monitor::start(&server.url(), &db, &config, &[]);
    let url = server.url();
    crate::nats_support::wait_for("the monitor's streams", std::time::Duration::from_secs(20), || {
        crate::nats_support::block_on(async {
            let client = async_nats::connect(url.as_str()).await.ok()?;
            async_nats::jetstream::new(client).get_stream("LIFECYCLE").await.ok().map(|_| ())
        })
    });
    let run = lifewatch(&["drill", "--no-report", "--nats", &url, drill.to_str().unwrap()], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("already has the stream LIFECYCLE"), "{}", run.stderr);
    drop(monitor);
}
