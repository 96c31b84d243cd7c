//! Setting lifewatch up as a newcomer does: the NATS URL from the
//! environment, `config show`, partial configuration files, `check` from any
//! directory, fast and clear failures, and `tail`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{TempDir, lifewatch, lifewatch_in, repo_root};
use crate::nats_support::{NatsServer, block_on, wait_for};

/// A loopback URL where nothing listens.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("the port").port();
    drop(listener);
    format!("nats://127.0.0.1:{port}")
}

/// Runs `lifewatch ARGS` in the repository root with exactly the NATS
/// variables `env` set, waiting at most `limit` for it to exit.
fn run_with_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifewatch"));
    command
        .args(args)
        .current_dir(repo_root())
        .env_remove("LIFEWATCH_NATS_URL")
        .env_remove("NATS_URL")
        .env_remove("LIFEWATCH_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start lifewatch");
    let what = format!("lifewatch {args:?} to exit");
    wait_for(&what, limit, || child.try_wait().ok().flatten());
    child.wait_with_output().expect("collect lifewatch's output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const FIXTURE: &str = "fixtures/stuck.jsonl";

#[test]
fn publish_takes_the_server_from_the_environment_and_the_flag_wins() {
    let server = NatsServer::start(&[]);
    let (good, bad) = (server.url(), closed_url());
    let limit = Duration::from_secs(60);
    type Case<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, &'a str)>);
    let cases: [Case; 4] = [
        ("LIFEWATCH_NATS_URL", &[], vec![("LIFEWATCH_NATS_URL", good.as_str())]),
        ("NATS_URL", &[], vec![("NATS_URL", good.as_str())]),
        (
            "LIFEWATCH_NATS_URL before NATS_URL",
            &[],
            vec![("LIFEWATCH_NATS_URL", good.as_str()), ("NATS_URL", bad.as_str())],
        ),
        (
            "--nats before both",
            &["--nats", good.as_str()],
            vec![("LIFEWATCH_NATS_URL", bad.as_str()), ("NATS_URL", bad.as_str())],
        ),
    ];
    for (what, flags, env) in cases {
        let mut args = vec!["publish", FIXTURE];
        args.extend_from_slice(flags);
        let output = run_with_env(&args, &env, limit);
        assert!(output.status.success(), "{what}: {}", stderr(&output));
        assert!(stderr(&output).contains("published"), "{what}: {}", stderr(&output));
    }
    // The variable is really read: pointing it at a closed port fails, naming it.
    let output = run_with_env(&["publish", FIXTURE], &[("NATS_URL", bad.as_str())], limit);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(&bad), "{}", stderr(&output));
}

/// `publish` is a one-shot command: a server that is not there is reported
/// within seconds (the bound here is generous: it checks that it gives up at
/// all, not how fast), naming the server, exit 1.
#[test]
fn publish_to_a_closed_port_fails_naming_the_server() {
    let url = closed_url();
    let output = run_with_env(&["publish", FIXTURE, "--nats", &url], &[], Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains(&format!("cannot connect to NATS at {url}")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "the cause is named: {text}");
}

#[test]
fn simulate_ignores_the_nats_variables() {
    let bad = closed_url();
    let env = [("LIFEWATCH_NATS_URL", bad.as_str()), ("NATS_URL", bad.as_str())];
    let output = run_with_env(&["simulate", "--accounts", "2"], &env, Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let first = output.stdout.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let event: Value = serde_json::from_slice(first).expect("simulate printed events");
    assert_eq!(event["specversion"], "1.0");
    let help = lifewatch(&["simulate", "--help"], None);
    assert!(help.stdout_text().contains("NATS_URL"), "simulate's help says why it ignores the variables");
}

#[test]
fn run_refuses_a_url_of_another_scheme_before_creating_the_database() {
    let dir = TempDir::new("run-http");
    let db = dir.join("live.db");
    let output = run_with_env(
        &["run", "--nats", "http://127.0.0.1:8222", "--db", db.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("nats://, tls://, ws:// or wss://"), "{}", stderr(&output));
    assert!(!db.exists(), "the database was created before the usage error");
}

#[test]
fn run_names_a_missing_database_directory() {
    let dir = TempDir::new("run-missing-dir");
    let missing = dir.join("not-there");
    let db = missing.join("live.db");
    let output = run_with_env(
        &["run", "--nats", &closed_url(), "--db", db.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains(missing.to_str().unwrap()) && text.contains("does not exist"), "{text}");
    assert!(!missing.exists());
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a test file");
}

#[test]
fn a_partial_configuration_is_overlaid_on_the_built_in_one() {
    let dir = TempDir::new("partial-config");
    let path = dir.join("partial.toml");
    write(
        &path,
        "[deadlines.project]\nrequested = \"20m\"\n\n[nats]\nurl = \"nats://me:hunter2@127.0.0.1:4222\"\n\
         token = \"s3cr3t-token\"\n",
    );
    let config = path.to_str().unwrap();
    let json = lifewatch(&["config", "show", "--config", config, "--format", "json"], None);
    json.assert_success();
    let text = json.stdout_text();
    assert!(!text.contains("hunter2") && !text.contains("s3cr3t"), "a secret was printed:\n{text}");
    let value: Value = serde_json::from_str(&text).expect("config show --format json prints JSON");
    assert_eq!(value["deadlines"]["project"]["requested"], "20m");
    assert_eq!(value["deadlines"]["project"]["provisioning"], "15m", "built-in keys of the same table stay");
    assert_eq!(value["deadlines"]["account"]["pending"], "15m");
    assert_eq!(value["outage_threshold"], 5);
    assert_eq!(value["nats"]["token"], "<set>");
    assert!(value["owners"].as_array().is_some_and(|owners| !owners.is_empty()));

    let toml = lifewatch(&["config", "show", "--config", config], None);
    toml.assert_success();
    let text = toml.stdout_text();
    assert!(!text.contains("hunter2") && !text.contains("s3cr3t"), "{text}");
    assert!(text.contains(&format!("# from {config}")), "the file's sections are marked:\n{text}");
    assert!(text.contains("# built-in"), "{text}");
    // What config show prints is a configuration lifewatch accepts.
    let shown = dir.join("shown.toml");
    write(&shown, &text.replace("\"<set>\"", "\"x\""));
    lifewatch(&["config", "show", "--config", shown.to_str().unwrap()], None).assert_success();

    // The overlay is what commands run on: a project requested 11 minutes
    // ago is stuck with the built-in 5m deadline, not with the file's 20m.
    let events = r#"{"specversion":"1.0","id":"e1","source":"t","type":"project.requested","subject":"prj_1","time":"2026-11-27T00:00:00Z","data":{"account_id":"acc_1","region":"eu-west-1"}}"#;
    let stuck = |extra: &[&str]| -> bool {
        let args = [&["replay", "-", "--now", "2026-11-27T00:11:00Z"][..], extra].concat();
        let run = lifewatch(&args, Some(events.as_bytes()));
        run.assert_success();
        run.records().iter().any(|record| record["kind"] == "stuck")
    };
    assert!(stuck(&[]));
    assert!(!stuck(&["--config", config]));

    // Unknown keys are still refused, named.
    let typo = dir.join("typo.toml");
    write(&typo, "[deadlines.project]\nprovisionning = \"7m\"\n");
    let run = lifewatch(&["config", "show", "--config", typo.to_str().unwrap()], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("provisionning"), "{}", run.stderr);
}

#[test]
fn check_finds_the_runbooks_from_any_directory_and_suggests_root() {
    let elsewhere = TempDir::new("check-elsewhere");
    let run = lifewatch_in(&elsewhere, &["check"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // A package laid out as the repository's: ops/lifewatch.toml beside ops/runbooks/.
    let package = TempDir::new("check-package");
    let ops = package.join("ops");
    std::fs::create_dir_all(ops.join("runbooks")).expect("create ops/runbooks");
    for entry in std::fs::read_dir(repo_root().join("ops/runbooks")).expect("the shipped runbooks") {
        let entry = entry.expect("a runbook");
        std::fs::copy(entry.path(), ops.join("runbooks").join(entry.file_name())).expect("copy a runbook");
    }
    let config = ops.join("lifewatch.toml");
    write(&config, "outage_threshold = 3\n");
    let run =
        lifewatch_in(&elsewhere, &["check", "--config", config.to_str().unwrap(), "--config-only"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // A configuration elsewhere, without runbooks beside it: check names
    // where it looked and suggests --root.
    let bare = elsewhere.join("lifewatch.toml");
    write(&bare, "outage_threshold = 3\n");
    let run = lifewatch_in(
        &repo_root().join("ops"),
        &["check", "--config", bare.to_str().unwrap(), "--config-only"],
        None,
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("--root"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("looked for in {}", elsewhere.to_str().unwrap())), "{}", run.stderr);
    let run = lifewatch_in(
        &elsewhere,
        &["check", "--config", bare.to_str().unwrap(), "--root", repo_root().to_str().unwrap()],
        None,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// Two incident messages published to INCIDENTS, then `tail --from-start
/// --count 2` prints them (as published, or as table rows) and exits.
#[test]
fn tail_prints_incident_transitions_from_the_start() {
    let server = NatsServer::start(&[]);
    let url = server.url();
    // publish creates the streams (INCIDENTS among them) as `run` would.
    let output = run_with_env(&["publish", FIXTURE, "--nats", &url], &[], Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let bodies = [
        r#"{"transition":"opened","incident":{"kind":"stuck","severity":"warning","entity":{"type":"account","id":"acc_1"},"state":"pending","owner":"team-accounts","opened_at":"2026-11-27T00:15:00Z","summary":"account acc_1 stuck in pending"}}"#,
        r#"{"transition":"resolved","incident":{"kind":"stuck","severity":"warning","entity":{"type":"account","id":"acc_1"},"state":"pending","owner":"team-accounts","opened_at":"2026-11-27T00:15:00Z","summary":"account acc_1 stuck in \u001b[2Jpending"}}"#,
    ];
    block_on(async {
        let jetstream = lifewatch_nats::async_nats::jetstream::new(server.client().await);
        for body in bodies {
            let ack = jetstream.publish("incidents.stuck.account.acc_1", body.into()).await.expect("publish");
            ack.await.expect("stored on INCIDENTS");
        }
    });
    let limit = Duration::from_secs(30);
    let args = ["tail", "--nats", url.as_str(), "--from-start", "--count", "2"];
    let jsonl = run_with_env(&[&args[..], &["--format", "jsonl"]].concat(), &[], limit);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let text = String::from_utf8_lossy(&jsonl.stdout).into_owned();
    assert_eq!(text.lines().collect::<Vec<_>>(), bodies, "{text}");

    let table = run_with_env(&args, &[("NATS_URL", "nats://127.0.0.1:1")], limit);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per transition:\n{text}");
    assert!(lines[0].starts_with("TRANSITION") && lines[0].contains("SEVERITY"), "{text}");
    assert!(lines[1].starts_with("opened") && lines[1].contains("account acc_1"), "{text}");
    assert!(lines[2].starts_with("resolved"), "{text}");
    // Rows printed one at a time still line up under the header.
    let column = lines[0].find("SEVERITY").unwrap();
    for line in &lines[1..] {
        assert!(line[..column].ends_with("  ") && !line[column..].starts_with(' '), "{text}");
    }
    assert!(!text.contains('\x1b'), "an event's string reached the terminal raw:\n{text}");
}

/// `run` is a daemon: a server that is down at start is waited for, each
/// retry logged, and SIGTERM still stops it cleanly.
#[test]
fn run_waits_for_a_server_that_is_down_and_logs_its_retries() {
    let dir = TempDir::new("run-waits");
    let db = dir.join("live.db");
    let url = closed_url();
    let monitor =
        crate::nats_support::Monitor::start(&url, &db, &repo_root().join("ops/lifewatch.toml"), &[]);
    wait_for("two logged connection retries", Duration::from_secs(30), || {
        (monitor.log_text().matches("cannot connect to NATS yet").count() >= 2).then_some(())
    });
    let status = monitor.terminate();
    assert!(status.success(), "a stop while waiting for the server is clean: {status:?}");
}
