//! Notification settings (`[[channels]]`, `[[teams]]`): `check` shows where
//! each team's incidents go, names the key of every mistake, and no command
//! ever prints a secret.

use std::process::Command;

use crate::common::TempDir;

const CONFIG: &str = r#"
[[channels]]
name = "platform-pager"
kind = "pagerduty"
routing_key_env = "LW_TEST_ROUTING_KEY"

[[channels]]
name = "platform-chat"
kind = "slack"
url = "https://hooks.slack.example/T0/B0/MARKER-slack-url"

[[channels]]
name = "audit"
kind = "webhook"
url_env = "LW_TEST_WEBHOOK_URL"
secret = "MARKER-webhook-secret"

[[teams]]
name = "platform-oncall"
routes = [
  { channel = "platform-pager", severities = ["critical", "error"] },
  { channel = "platform-chat" },
  { channel = "audit", transitions = ["opened", "resolved"] },
]
escalation = [{ after = "10m", notify = ["platform-pager"] }]
"#;

/// `lifewatch ARGS` with the secrets' variables set to marker values.
fn run(dir: &TempDir, config: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let path = dir.path().join("lifewatch.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .current_dir(crate::common::repo_root())
        .env("LW_TEST_ROUTING_KEY", "MARKER-routing-key")
        .env("LW_TEST_WEBHOOK_URL", "https://receiver.example/hook?token=MARKER-webhook-url")
        .output()
        .expect("run lifewatch");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_shows_the_routes_and_no_secret() {
    let dir = TempDir::new("notify-check");
    let (code, stdout, stderr) = run(&dir, CONFIG, &["check", "--root", "."]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("platform-oncall    platform-pager       pagerduty  critical,error"), "{stdout}");
    assert!(
        stdout.contains(
            "audit                webhook    any              any                  opened,resolved"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("escalation after 600s: platform-pager"), "{stdout}");
    let (code, shown, stderr) = run(&dir, CONFIG, &["config", "show"]);
    assert_eq!(code, Some(0), "{stderr}");
    for output in [&stdout, &stderr, &shown] {
        assert!(!output.contains("MARKER"), "a secret was printed:\n{output}");
    }
}

#[test]
fn each_mistake_names_its_key_and_exits_2() {
    let dir = TempDir::new("notify-mistakes");
    for (config, key) in [
        (
            CONFIG.replace("channel = \"platform-chat\"", "channel = \"platform-chta\""),
            "teams[0].routes[1].channel",
        ),
        (
            CONFIG
                .replace("routing_key_env = \"LW_TEST_ROUTING_KEY\"", "routing_key_env = \"LW_TEST_UNSET\""),
            "channels[0].routing_key_env",
        ),
        (CONFIG.replace("kind = \"slack\"", "kind = \"pigeon\""), "channels[1].kind"),
        (CONFIG.replace("after = \"10m\"", "after = \"later\""), "teams[0].escalation[0].after"),
    ] {
        let (code, stdout, stderr) = run(&dir, &config, &["check", "--root", "."]);
        assert_eq!(code, Some(2), "{key}: {stdout}{stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains("MARKER") && !stdout.contains("MARKER"), "{stderr}");
    }
    // A team that owns nothing is a typing mistake: check fails naming it.
    let (code, _, stderr) = run(
        &dir,
        &CONFIG.replace("name = \"platform-oncall\"", "name = \"platfrom-oncall\""),
        &["check", "--root", "."],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"platfrom-oncall\" owns no incident kind"), "{stderr}");
}

/// Every PagerDuty event lifewatch would send — a trigger, an
/// acknowledgement and a resolution for each incident of a fixture, hostile
/// strings included — is valid against PagerDuty's published request schema
/// (`schemas/external/pagerduty-events-v2.openapi.json`).
#[test]
fn pagerduty_events_are_valid_against_the_published_schema() {
    let document: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::common::repo_root().join("schemas/external/pagerduty-events-v2.openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let schema = serde_json::json!({
        "$ref": "#/paths/~1enqueue/post/requestBody/content/application~1json/schema",
        "paths": document["paths"],
        "components": document["components"],
    });
    let validator = jsonschema::validator_for(&schema).expect("the request schema compiles");
    let records =
        crate::common::lifewatch(&["replay", "fixtures/launch-day.jsonl", "fixtures/hostile.jsonl"], None)
            .records();
    assert!(records.len() > 100);
    let links = lifewatch_notify::payload::Links {
        incident: Some("http://127.0.0.1:9464/incidents/inc_1".into()),
        runbook: Some("ops/runbooks/stuck.md".into()),
    };
    for record in &records {
        for transition in ["opened", "updated", "acknowledged", "resolved", "retracted"] {
            let event = lifewatch_notify::payload::pagerduty_event("R0UT1NGKEY", transition, record, &links);
            let errors: Vec<String> = validator.iter_errors(&event).map(|error| error.to_string()).collect();
            assert!(errors.is_empty(), "{transition}: {errors:?}\n{event}");
        }
    }
    // The schema is enforced: a made-up action is refused.
    let mut wrong = lifewatch_notify::payload::pagerduty_event("R0UT1NGKEY", "opened", &records[0], &links);
    wrong["event_action"] = serde_json::json!("escalate");
    assert!(!validator.is_valid(&wrong));
}
