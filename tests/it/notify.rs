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
