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

/// How a test receiver answers one request.
pub(crate) struct Reply {
    /// Waited before answering.
    pub(crate) delay: std::time::Duration,
    /// The status line's code and reason.
    pub(crate) status: &'static str,
    /// Extra header lines, each ending in CRLF.
    pub(crate) headers: &'static str,
}

/// An immediate answer with `status`.
pub(crate) fn reply(status: &'static str) -> Reply {
    Reply { delay: std::time::Duration::ZERO, status, headers: "" }
}

/// One request a test receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// Its number, in the order connections were accepted (from 0).
    pub(crate) number: usize,
    /// The header lines, lowercased.
    pub(crate) head: String,
    /// Its `Idempotency-Key`.
    pub(crate) key: String,
    /// Its body as JSON (`Null` when it is not).
    pub(crate) body: serde_json::Value,
    /// When it was read.
    pub(crate) at: std::time::Instant,
}

/// What a test receiver got.
pub(crate) type Requests = std::sync::Arc<std::sync::Mutex<Vec<Request>>>;

/// A receiver on a free loopback port, for as long as the test process
/// runs: each connection on a thread of its own, answered as `script` says
/// for its number (the body is `received`), every request recorded as it is read.
pub(crate) fn receiver(script: impl Fn(usize) -> Reply + Send + 'static) -> (String, Requests) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let requests = Requests::default();
    let log = requests.clone();
    std::thread::spawn(move || {
        for (number, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let answer = script(number);
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut head, mut length, mut key) = (String::new(), 0, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if let Some(value) = lower.strip_prefix("idempotency-key:") {
                        key = value.trim().to_string();
                    }
                    head.push_str(&lower);
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let body = serde_json::from_slice(&body).unwrap_or_default();
                log.lock().unwrap().push(Request { number, head, key, body, at: std::time::Instant::now() });
                std::thread::sleep(answer.delay);
                let mut stream = stream;
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {}\r\n{}content-length: 8\r\nconnection: close\r\n\r\nreceived",
                        answer.status, answer.headers
                    )
                    .as_bytes(),
                );
            });
        }
    });
    (url, requests)
}

/// The shipped configuration with the live clock out of the way (events of
/// any date are taken and no deadline fires on the wall clock), `[nats]`
/// reporting every second, and `notifications` (TOML) appended.
fn config_with(dir: &std::path::Path, notifications: &str) -> std::path::PathBuf {
    let config = crate::nats_support::write_config(
        dir,
        &[
            ("allowed_lateness = \"30s\"", "allowed_lateness = \"3650d\""),
            ("max_future = \"5m\"", "max_future = \"3650d\""),
        ],
        "report_interval = \"1s\"\n",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    text.push_str(notifications);
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn check_shows_the_routes_and_no_secret() {
    let dir = TempDir::new("notify-check");
    let (code, stdout, stderr) = run(&dir, CONFIG, &["check", "--root", ".", "--config-only"]);
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
        &["check", "--root", ".", "--config-only"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"platfrom-oncall\" owns no incident kind"), "{stderr}");
    // The gate says so too.
    let (code, _, stderr) = run(
        &dir,
        &CONFIG.replace("name = \"platform-oncall\"", "name = \"platfrom-oncall\""),
        &["check", "--root", ".", "--no-drills"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("team platfrom-oncall owns no incident kind and no risk"), "{stderr}");

    // A secret whose variable is not set does not fail the configuration
    // (commands that send nothing work without the deployment's secrets):
    // check warns, naming it, and the channel refuses to send, naming it.
    let unset =
        CONFIG.replace("routing_key_env = \"LW_TEST_ROUTING_KEY\"", "routing_key_env = \"LW_TEST_UNSET\"");
    let (code, _, stderr) = run(&dir, &unset, &["check", "--root", ".", "--no-drills"]);
    assert!(
        stderr.contains(
            "warning: channel platform-pager: `routing_key_env` names LW_TEST_UNSET, which is not set"
        ),
        "{stderr}"
    );
    assert_eq!(code, Some(1), "the test configuration routes only some teams: {stderr}");
    let (code, _, stderr) = run(&dir, &unset, &["check", "--root", ".", "--no-drills", "--secrets"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(
            "gap: channel platform-pager: channel platform-pager: `routing_key_env` names LW_TEST_UNSET"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&dir, &unset, &["notify", "test", "--channel", "platform-pager"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("LW_TEST_UNSET, which is not set"), "{stdout}{stderr}");
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
        held_back: vec!["inc_a".into(), "inc_b".into()],
        escalation_step: Some(1),
        summarised: Vec::new(),
    };
    for record in &records {
        for transition in ["opened", "updated", "acknowledged", "escalated", "resolved", "retracted"] {
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

#[test]
fn notify_test_sends_a_marked_signed_message_and_reports_the_answer() {
    let dir = TempDir::new("notify-test");
    let config = |url: &str| {
        format!(
            "[[channels]]\nname = \"audit\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"MARKER-secret\"\n"
        )
    };
    let (url, seen) = receiver(|_| reply("200 OK"));
    let (code, stdout, stderr) = run(&dir, &config(&url), &["notify", "test", "--channel", "audit"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("audit (webhook) sent a test: HTTP 200") && stdout.contains("received"),
        "{stdout}"
    );
    let request = seen.lock().unwrap()[0].clone();
    let (head, body) = (&request.head, &request.body);
    assert!(
        head.contains("idempotency-key: test-") && head.contains("x-lifewatch-signature: sha256="),
        "{head}"
    );
    assert_eq!(body["transition"], "test");
    assert!(body["incident"]["summary"].as_str().unwrap().starts_with("TEST"), "{body}");
    assert!(!stdout.contains("MARKER") && !stderr.contains("MARKER"));

    // A receiver that fails: exit 1 with its answer.
    let (url, _) = receiver(|_| reply("500 Internal Server Error"));
    let (code, stdout, _) = run(&dir, &config(&url), &["notify", "test", "--channel", "audit"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("HTTP 500"), "{stdout}");
    // No receiver at all: exit 1, and the URL (a secret) is not printed.
    let (code, stdout, stderr) =
        run(&dir, &config("http://127.0.0.1:9/MARKER-path"), &["notify", "test", "--channel", "audit"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("cannot connect to the receiver") && !stderr.contains("MARKER"), "{stderr}");
    // An unknown channel: a usage error listing the channels.
    let (code, _, stderr) = run(&dir, &config(&url), &["notify", "test", "--channel", "audti"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("its channels are: audit"), "{stderr}");
}

/// The monitor delivers every transition of its teams' incidents to a
/// webhook: each once (by `Idempotency-Key`), in order per incident, a
/// failure retried; the delivery rows end delivered.
#[test]
fn run_delivers_each_transition_to_the_webhook_in_order_once() {
    use crate::nats_support::{NatsServer, started_monitor, wait_for};
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-live");
    let (url, seen) =
        receiver(|number| reply(if number < 2 { "500 Internal Server Error" } else { "200 OK" }));
    let config = config_with(
        dir.path(),
        &format!(
            "\n[delivery]\nretry_base = \"50ms\"\n\n[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n\n\
         [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"hook\" }}]\n"
        ),
    );
    let db = dir.path().join("lifewatch.db");
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let rows = || -> Vec<(i64, String, String, String)> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement = connection
            .prepare("SELECT id, incident_id, transition, state FROM deliveries ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let delivered = wait_for("every delivery delivered", std::time::Duration::from_secs(30), || {
        let rows = rows();
        (!rows.is_empty() && rows.iter().all(|row| row.3 == "delivered")).then_some(rows)
    });
    assert!(monitor.terminate().success());
    let seen = seen.lock().unwrap().clone();
    // Two failures were answered 500 and sent again: every delivery once more than not at all, none lost.
    let keys: std::collections::BTreeSet<&str> = seen.iter().map(|request| request.key.as_str()).collect();
    assert_eq!(keys.len(), delivered.len(), "{seen:?}");
    assert_eq!(seen.len(), delivered.len() + 2);
    // In order per incident: the transitions each incident's webhook calls carried, in arrival order
    // of their first success, are the transitions of its delivery rows in id order.
    let mut by_incident: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut counted = std::collections::BTreeSet::new();
    for Request { key, body, .. } in seen.iter().rev() {
        // The last copy of each key is the one that was accepted.
        if counted.insert(key.clone()) {
            let incident = body["incident"]["id"].as_str().unwrap().to_string();
            by_incident
                .entry(incident)
                .or_default()
                .insert(0, body["transition"].as_str().unwrap().to_string());
        }
    }
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (_, incident, transition, _) in &delivered {
        expected.entry(incident.clone()).or_default().push(transition.clone());
    }
    assert_eq!(by_incident, expected);
    assert!(delivered.iter().all(|(_, _, _, state)| state == "delivered"));
    assert!(expected.values().any(|transitions| transitions.first().map(String::as_str) == Some("opened")));
}

/// A receiver that refuses for good (HTTP 400): the delivery is given up at
/// once, `deliveries --state dead` lists it with the receiver's answer, and
/// `deliveries retry --all` makes it pending again.
#[test]
fn refused_deliveries_are_dead_listed_and_can_be_retried() {
    use crate::nats_support::{NatsServer, started_monitor, wait_for};
    let (url, _) = receiver(|_| reply("400 Bad Request"));
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-dead");
    let config = config_with(
        dir.path(),
        &format!(
            "[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n\n[[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"hook\" }}]\n"
        ),
    );
    let db = dir.path().join("lifewatch.db");
    let db_arg = db.to_str().unwrap();
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let dead = wait_for("dead deliveries", std::time::Duration::from_secs(30), || {
        let listed = crate::common::lifewatch(
            &["deliveries", "--db", db_arg, "--state", "pending", "-o", "jsonl"],
            None,
        );
        let pending = listed.records().len();
        let dead =
            crate::common::lifewatch(&["deliveries", "--db", db_arg, "--state", "dead", "-o", "jsonl"], None)
                .records();
        (pending == 0 && !dead.is_empty()).then_some(dead)
    });
    assert!(monitor.terminate().success());
    assert!(
        dead.iter().all(|row| row["last_error"].as_str().unwrap().starts_with("HTTP 400: received")),
        "{dead:?}"
    );
    // /metrics counts them.
    let served = crate::web::Served::start(&db, &[]);
    let (_, metrics) = served.text("/metrics");
    assert!(
        metrics.contains(&format!("lifewatch_notification_deliveries{{state=\"dead\"}} {}", dead.len())),
        "{metrics}"
    );
    // The dashboard says so on the home page and on each incident's page.
    let (_, home) = served.text("/");
    assert!(home.contains(&format!("{} notifications could not be delivered", dead.len())), "{home}");
    let incident = dead[0]["incident_id"].as_str().unwrap();
    let (_, page) = served.text(&format!("/incidents/{incident}"));
    assert!(page.contains("<h2>Notifications</h2>") && page.contains("delivery-dead"), "{page}");
    assert!(page.contains("HTTP 400: received"), "{page}");
    drop(served);
    let table = crate::common::lifewatch(&["deliveries", "--db", db_arg], None);
    assert!(table.assert_success().stdout_text().contains("dead"), "{}", table.stdout_text());
    let retried = crate::common::lifewatch(&["deliveries", "retry", "--db", db_arg, "--all"], None);
    retried.assert_success();
    assert!(retried.stderr.contains(&format!("{} dead", dead.len())), "{}", retried.stderr);
    let pending =
        crate::common::lifewatch(&["deliveries", "--db", db_arg, "--state", "pending", "-o", "jsonl"], None)
            .records();
    assert_eq!(pending.len(), dead.len());
    let missing = crate::common::lifewatch(&["deliveries", "retry", "--db", db_arg, "999999"], None);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
}

/// Three SIGKILLs of the monitor while it delivers to a slow receiver:
/// after a restart every delivery ends delivered, none lost, and the
/// receiver sees no delivery id it did not get again only as a re-send of
/// the same id (it counts by `Idempotency-Key`).
#[test]
fn deliveries_survive_sigkill_of_the_monitor() {
    use crate::nats_support::{Monitor, NatsServer, wait_for};
    let (url, seen) = receiver(|_| Reply { delay: std::time::Duration::from_millis(30), ..reply("200 OK") });
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-kill");
    let config = config_with(
        dir.path(),
        &format!(
            "\n[delivery]\nper_channel = 1\n\n[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n\n\
         [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"hook\" }}]\n"
        ),
    );
    let db = dir.path().join("lifewatch.db");
    let fixture = crate::common::repo_root().join("fixtures/launch-day.jsonl");
    let states = || -> Vec<(i64, String)> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement = connection.prepare("SELECT id, state FROM deliveries ORDER BY id").unwrap();
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    // Published first, then the monitor started without waiting for it:
    // the kills land while it stores events and delivers.
    crate::nats_support::publish(&server.url(), &[&fixture], &[]);
    let mut monitor = Monitor::start(&server.url(), &db, &config, &[]);
    for round in 0..3 {
        // Let it deliver some, then kill it mid-delivery.
        let before = seen.lock().unwrap().len();
        let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for("some deliveries", std::time::Duration::from_secs(20), || {
                (seen.lock().unwrap().len() > before + 5).then_some(())
            })
        }));
        if moved.is_err() {
            let waiting = states().iter().filter(|(_, state)| state != "delivered").count();
            panic!(
                "round {round}: no deliveries; {waiting} not delivered\nmonitor log:\n{}",
                monitor.log_text()
            );
        }
        monitor.kill();
        let left = states().iter().filter(|(_, state)| state == "pending").count();
        assert!(left > 0, "round {round}: the receiver was too fast to kill the monitor mid-delivery");
        monitor = Monitor::start(&server.url(), &db, &config, &[]);
    }
    // The fixture's outages hold some back (inhibited, or suppressed once
    // their incident ended during the outage): those are never sent.
    let rows = wait_for("every delivery delivered or held back", std::time::Duration::from_secs(60), || {
        let rows = states();
        (!rows.is_empty() && rows.iter().all(|(_, state)| state != "pending")).then_some(rows)
    });
    assert!(monitor.terminate().success());
    assert!(rows.iter().all(|(_, state)| ["delivered", "suppressed"].contains(&state.as_str())), "{rows:?}");
    let keys: std::collections::BTreeSet<String> =
        seen.lock().unwrap().iter().map(|request| request.key.clone()).collect();
    let ids: std::collections::BTreeSet<String> =
        rows.iter().filter(|(_, state)| state == "delivered").map(|(id, _)| id.to_string()).collect();
    assert_eq!(keys, ids, "every delivery reached the receiver, under its own id, and nothing else did");
}

/// One channel's receiver hangs past the timeout, the other throttles once
/// with `429` and `Retry-After: 1`: the second channel gets everything, its
/// throttled delivery not before the second it was told to wait, while the
/// first channel's deliveries stay pending (retried, not lost).
#[test]
fn a_hanging_or_throttling_receiver_holds_back_only_its_own_channel() {
    use crate::nats_support::{NatsServer, started_monitor, wait_for};
    let (hanging, _) = receiver(|_| Reply { delay: std::time::Duration::from_secs(30), ..reply("200 OK") });
    let (throttling, seen) = receiver(|number| match number {
        0 => Reply { headers: "retry-after: 1\r\n", ..reply("429 Too Many Requests") },
        _ => reply("200 OK"),
    });
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-throttle");
    let config = config_with(
        dir.path(),
        &format!(
            "\n[delivery]\ntimeout = \"1s\"\nretry_base = \"200ms\"\n\n\
         [[channels]]\nname = \"hanging\"\nkind = \"webhook\"\nurl = \"{hanging}\"\n\n\
         [[channels]]\nname = \"throttling\"\nkind = \"webhook\"\nurl = \"{throttling}\"\n\n\
         [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"hanging\" }}, {{ channel = \"throttling\" }}]\n"
        ),
    );
    let db = dir.path().join("lifewatch.db");
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let rows = || -> Vec<(String, String, i64, Option<String>)> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement = connection
            .prepare("SELECT channel, state, attempts, last_error FROM deliveries ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let rows =
        wait_for("the throttling channel's deliveries delivered", std::time::Duration::from_secs(30), || {
            let rows = rows();
            let throttled: Vec<_> = rows.iter().filter(|row| row.0 == "throttling").collect();
            (!throttled.is_empty() && throttled.iter().all(|row| row.1 == "delivered")).then_some(rows)
        });
    assert!(monitor.terminate().success());
    let hanging_rows: Vec<_> = rows.iter().filter(|row| row.0 == "hanging").collect();
    assert!(
        !hanging_rows.is_empty() && hanging_rows.iter().all(|row| row.1 == "pending"),
        "{hanging_rows:?}"
    );
    assert!(
        hanging_rows.iter().any(|row| row.3.as_deref() == Some("the receiver did not answer in time")),
        "{hanging_rows:?}"
    );
    // The throttled delivery came back no sooner than Retry-After said.
    let seen = seen.lock().unwrap().clone();
    let first = seen.iter().find(|request| request.number == 0).expect("a first request");
    let again = seen
        .iter()
        .find(|request| request.key == first.key && request.number > 0)
        .expect("the throttled delivery was sent again");
    let waited = again.at.duration_since(first.at);
    assert!(waited >= std::time::Duration::from_millis(950), "{waited:?}");
}

/// A regional outage over 30 failing projects pages once for the outage,
/// not 31 times: the 5 failures that opened before the outage went out on
/// their own, the 25 that opened while it lasts are held back and listed in
/// the outage's messages (`held_back`), never sent on their own.
#[test]
fn an_outage_holds_back_its_region_s_new_incidents() {
    use crate::nats_support::{NatsServer, started_monitor, wait_for};
    let (url, seen) = receiver(|_| reply("200 OK"));
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-inhibit");
    let config = config_with(
        dir.path(),
        &format!(
            "\n[[channels]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{url}\"\n\n[[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"pager\", transitions = [\"opened\"] }}]\n"
        ),
    );
    // 30 projects of one region fail one after the other and stay failed.
    let mut lines = vec![
        r#"{"specversion":"1.0","id":"ev-acc","source":"t","type":"account.created","subject":"acc_x","time":"2026-11-27T10:00:00Z","data":{"plan":"enterprise"}}"#.to_string(),
        r#"{"specversion":"1.0","id":"ev-act","source":"t","type":"account.activated","subject":"acc_x","time":"2026-11-27T10:00:10Z","data":{}}"#.to_string(),
    ];
    for project in 1..=30 {
        lines.push(format!(r#"{{"specversion":"1.0","id":"req-{project}","source":"t","type":"project.requested","subject":"prj_{project}","time":"2026-11-27T10:01:00Z","data":{{"account_id":"acc_x","region":"r-test"}}}}"#));
        lines.push(format!(r#"{{"specversion":"1.0","id":"start-{project}","source":"t","type":"project.provisioning_started","subject":"prj_{project}","time":"2026-11-27T10:01:30Z","data":{{}}}}"#));
    }
    for project in 1..=30 {
        // 20 s apart: all within the provisioning deadline, so no `stuck` joins in.
        let (minute, second) = (2 + project * 20 / 60, project * 20 % 60);
        lines.push(format!(r#"{{"specversion":"1.0","id":"fail-{project}","source":"t","type":"project.provisioning_failed","subject":"prj_{project}","time":"2026-11-27T10:{minute:02}:{second:02}Z","data":{{"error":"capacity","retryable":true}}}}"#));
    }
    let fixture = dir.path().join("outage.jsonl");
    std::fs::write(&fixture, lines.join("\n") + "\n").unwrap();
    let db = dir.path().join("lifewatch.db");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let states = || -> Vec<(String, String)> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement =
            connection.prepare("SELECT incident_id, state FROM deliveries ORDER BY id").unwrap();
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let rows = wait_for("nothing pending", std::time::Duration::from_secs(30), || {
        let rows = states();
        (!rows.is_empty() && rows.iter().all(|(_, state)| state != "pending")).then_some(rows)
    });
    assert!(monitor.terminate().success());
    let held: Vec<_> = rows.iter().filter(|(_, state)| state == "inhibited").collect();
    let sent: Vec<_> = rows.iter().filter(|(_, state)| state == "delivered").collect();
    assert_eq!(held.len(), 25, "{rows:?}");
    assert_eq!(sent.len(), 6, "5 failures before the outage and the outage itself: {rows:?}");
    let seen = seen.lock().unwrap().clone();
    let outage: Vec<_> =
        seen.iter().filter(|request| request.body["incident"]["kind"] == "regional_outage").collect();
    assert_eq!(outage.len(), 1, "one page for the outage");
    assert_eq!(outage[0].body["held_back"]["count"], 25, "{}", outage[0].body);
    assert_eq!(seen.len(), 6, "no held-back incident was sent on its own");
}

/// A tiny SMTP sink on a free loopback port (no TLS: channels pointed at it
/// say `tls = "none"`): it accepts every message and keeps each one's DATA.
fn smtp_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 sink ESMTP\r\n");
                let (mut data, mut in_data) = (String::new(), false);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            kept.lock().unwrap().push(std::mem::take(&mut data));
                            let _ = stream.write_all(b"250 queued\r\n");
                        } else {
                            data.push_str(&line);
                        }
                        continue;
                    }
                    let command = line.to_ascii_uppercase();
                    let answer: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if command.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if command.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = stream.write_all(answer);
                }
            });
        }
    });
    (address, mails)
}

/// An email channel and a NATS channel: `notify test` reaches the SMTP
/// sink, and the monitor delivers every transition both ways: a plain-text
/// and an HTML part per email, one message per transition on the NATS
/// channel's stream, with the delivery id as `Nats-Msg-Id`.
#[test]
fn email_and_nats_channels_deliver_every_transition() {
    use crate::nats_support::{NatsServer, block_on, started_monitor, wait_for};
    let (smtp, mails) = smtp_sink();
    let server = NatsServer::start(&[]);
    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "ALERTS".into(),
                subjects: vec!["alerts.>".into()],
                ..Default::default()
            })
            .await
            .expect("create ALERTS");
    });
    let dir = TempDir::new("notify-email-nats");
    let channels = format!(
        "\n[delivery]\nretry_base = \"50ms\"\n\n\
         [[channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"{smtp}\"\ntls = \"none\"\n\
         from = \"lifewatch <lifewatch@example.com>\"\nto = [\"platform@example.com\", \"lead@example.com\"]\n\n\
         [[channels]]\nname = \"bus\"\nkind = \"nats\"\nsubject = \"alerts.platform\"\n\n\
         [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"mail\" }}, {{ channel = \"bus\" }}]\n"
    );
    let config = config_with(dir.path(), &channels);
    let tested = crate::nats_support::lifewatch()
        .args(["notify", "test", "--channel", "mail", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{stdout}{}", String::from_utf8_lossy(&tested.stderr));
    assert!(stdout.contains("mail (email) sent a test: status 200"), "{stdout}");
    assert!(mails.lock().unwrap()[0].contains("TEST"), "{:?}", mails.lock().unwrap());
    mails.lock().unwrap().clear();

    let db = dir.path().join("lifewatch.db");
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let states = || -> Vec<(String, String)> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement = connection.prepare("SELECT channel, state FROM deliveries ORDER BY id").unwrap();
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let rows = wait_for("every delivery delivered", std::time::Duration::from_secs(30), || {
        let rows = states();
        (!rows.is_empty() && rows.iter().all(|(_, state)| state == "delivered")).then_some(rows)
    });
    assert!(monitor.terminate().success());
    let per_channel = |name: &str| rows.iter().filter(|(channel, _)| channel == name).count();
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), per_channel("mail"));
    for mail in &mails {
        assert!(mail.contains("multipart/alternative") && mail.contains("text/html"), "{mail}");
        assert!(mail.contains("Subject: [lifewatch] ERROR provisioning_failed"), "{mail}");
    }
    let published = crate::nats_support::stream_messages(&server.url(), "ALERTS");
    assert_eq!(published.len(), per_channel("bus"));
    let body: serde_json::Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(body["incident"]["owner"], "platform-oncall");
    assert!(published[0].headers["Nats-Msg-Id"].starts_with("delivery-"), "{:?}", published[0].headers);
}

/// A channel limited to 2 messages a minute: two transitions go on their
/// own, the rest in one summary once the minute has passed, which
/// lists them; their rows end `summarised`. (Takes a minute: the limit is
/// per minute.)
#[test]
fn a_rate_limited_channel_summarises_what_exceeds_its_limit() {
    use crate::nats_support::{NatsServer, started_monitor, wait_for};
    let (url, seen) = receiver(|_| reply("200 OK"));
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-rate");
    let config = config_with(
        dir.path(),
        &format!(
            "\n[[channels]]\nname = \"chat\"\nkind = \"webhook\"\nurl = \"{url}\"\nper_minute = 2\n\n\
             [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"chat\" }}]\n"
        ),
    );
    let db = dir.path().join("lifewatch.db");
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    let states = || -> Vec<String> {
        let connection =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut statement = connection.prepare("SELECT state FROM deliveries ORDER BY id").unwrap();
        statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let rows = wait_for("every delivery sent or summarised", std::time::Duration::from_secs(100), || {
        let rows = states();
        (rows.len() > 3 && rows.iter().all(|state| state != "pending")).then_some(rows)
    });
    assert!(monitor.terminate().success());
    let delivered = rows.iter().filter(|state| *state == "delivered").count();
    let summarised = rows.iter().filter(|state| *state == "summarised").count();
    assert_eq!((delivered, summarised), (2, rows.len() - 2), "{rows:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two on their own, then one summary: {seen:?}");
    let summary = &seen[2];
    assert_eq!(summary.body["transition"], "summary");
    assert_eq!(summary.body["summarised"]["count"], rows.len() - 2);
    assert!(
        summary.at.duration_since(seen[0].at) >= std::time::Duration::from_secs(59),
        "the summary waited for the window"
    );
}

/// Every secret set to a marker — webhook URL and signing secret, Slack URL,
/// PagerDuty routing key, SMTP password, the web token — and receivers that
/// fail (retried, dead, unreachable): no log line (human and JSON, at debug
/// level), no error, no `check`/`config show`/`deliveries` output and no API
/// answer or page holds a marker.
#[test]
fn no_secret_reaches_a_log_an_error_or_the_api() {
    use crate::nats_support::{NatsServer, free_port, wait_for};
    let (hook_url, _) =
        receiver(|number| reply(if number < 2 { "500 Internal Server Error" } else { "200 OK" }));
    let (slack_url, _) = receiver(|_| reply("500 Internal Server Error"));
    let (pd_url, _) = receiver(|_| reply("400 Bad Request"));
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("notify-secrets");
    let config = crate::nats_support::write_config(
        dir.path(),
        &[
            ("allowed_lateness = \"30s\"", "allowed_lateness = \"3650d\""),
            ("max_future = \"5m\"", "max_future = \"3650d\""),
            ("# token = \"…\"", "token = \"MARKER-web-token\""),
        ],
        "report_interval = \"1s\"\n",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[delivery]\nretry_base = \"50ms\"\ntimeout = \"2s\"\n\n\
         [[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_env = \"LW_SECRET_HOOK_URL\"\nsecret = \"MARKER-hmac\"\n\n\
         [[channels]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{slack_url}?MARKER-slack\"\n\n\
         [[channels]]\nname = \"pager\"\nkind = \"pagerduty\"\nrouting_key_env = \"LW_SECRET_ROUTING_KEY\"\nurl = \"{pd_url}\"\n\n\
         [[channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"127.0.0.1:9\"\ntls = \"none\"\nfrom = \"lw@example.com\"\n\
         to = [\"oncall@example.com\"]\nuser = \"lw\"\npassword_env = \"LW_SECRET_SMTP\"\n\n\
         [[teams]]\nname = \"platform-oncall\"\nroutes = [{{ channel = \"hook\" }}, {{ channel = \"chat\" }}, \
         {{ channel = \"pager\" }}, {{ channel = \"mail\" }}]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let db = dir.path().join("lifewatch.db");
    let secrets = [
        ("LW_SECRET_HOOK_URL", format!("{hook_url}?token=MARKER-hook-url")),
        ("LW_SECRET_ROUTING_KEY", "MARKER-routing-key".to_string()),
        ("LW_SECRET_SMTP", "MARKER-smtp-password".to_string()),
    ];
    let lifewatch = |args: &[&str]| {
        let mut command = crate::nats_support::lifewatch();
        command.args(args).env("RUST_LOG", "debug");
        for (name, value) in &secrets {
            command.env(name, value);
        }
        command
    };
    let mut outputs = Vec::new();
    let fixture = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    crate::nats_support::publish(&server.url(), &[&fixture], &[]);
    for format in ["human", "json"] {
        let port = free_port();
        let log = dir.path().join(format!("monitor-{format}.log"));
        let mut child = lifewatch(&["run", "--nats", &server.url(), "--log-format", format, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Deliveries fail, are retried and given up meanwhile.
        wait_for("a dead delivery", std::time::Duration::from_secs(30), || {
            let connection =
                rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .ok()?;
            let dead: i64 = connection
                .query_row("SELECT count(*) FROM deliveries WHERE state = 'dead'", [], |row| row.get(0))
                .ok()?;
            (dead > 0).then_some(())
        });
        std::thread::sleep(std::time::Duration::from_secs(1));
        let client = reqwest::blocking::Client::new();
        let get = |path: &str| {
            client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .bearer_auth("MARKER-web-token")
                .send()
                .and_then(|answer| answer.text())
                .unwrap_or_default()
        };
        let incidents = get("/api/incidents");
        let first: serde_json::Value = serde_json::from_str(&incidents).unwrap_or_default();
        let id = first["incidents"][0]["id"].as_str().unwrap_or("none").to_string();
        assert_ne!(id, "none", "{incidents}");
        for path in [
            "/".to_string(),
            "/metrics".to_string(),
            "/api/openapi.json".to_string(),
            format!("/api/incidents/{id}"),
            format!("/incidents/{id}"),
        ] {
            outputs.push((path.clone(), get(&path)));
        }
        // Unauthorised: the answer does not echo the token either.
        outputs.push((
            "401".into(),
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).unwrap().text().unwrap(),
        ));
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
        outputs.push((format!("{format} log"), std::fs::read_to_string(&log).unwrap()));
    }
    for args in [
        vec!["check", "--root", "."],
        vec!["check", "--root", ".", "--config-only"],
        vec!["config", "show"],
        vec!["notify", "test", "--channel", "pager"],
        vec!["notify", "test", "--channel", "mail", "--timeout", "1s"],
    ] {
        let output = lifewatch(&args)
            .arg("--config")
            .arg(&config)
            .current_dir(crate::common::repo_root())
            .output()
            .unwrap();
        outputs.push((args.join(" "), String::from_utf8_lossy(&output.stdout).into_owned()));
        outputs.push((args.join(" "), String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let listed = lifewatch(&["deliveries", "--db", db.to_str().unwrap(), "-o", "jsonl"]).output().unwrap();
    outputs.push(("deliveries".into(), String::from_utf8_lossy(&listed.stdout).into_owned()));
    // The logs did record failures: retries in both runs, a give-up in the first.
    let log =
        |name: &str| outputs.iter().find(|(what, _)| what == name).map(|(_, text)| text.clone()).unwrap();
    assert!(log("human log").contains("delivery given up"), "{}", log("human log"));
    assert!(log("json log").contains("retrying"), "{}", log("json log"));
    for (what, text) in &outputs {
        assert!(!text.contains("MARKER"), "a secret in {what}:\n{text}");
    }
}
