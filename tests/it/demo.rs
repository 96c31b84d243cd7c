//! `lifewatch demo`: the simulated day through the store and through a
//! nats-server it starts itself gives the same incidents, serves the
//! dashboard while it runs, stops cleanly on SIGINT, and leaves no server
//! process and no temporary directory behind.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::lifewatch;
use crate::nats_support::wait_for;
use crate::web::client;

/// The temporary directory a demo named on standard error (`database <dir>/lifewatch.db`).
fn temp_dir_of(stderr: &str) -> PathBuf {
    let line = stderr.lines().find(|line| line.contains("; database ")).unwrap_or_else(|| panic!("{stderr}"));
    let db = line.rsplit("; database ").next().unwrap();
    PathBuf::from(db).parent().unwrap().to_path_buf()
}

fn summary_of(stdout: &str) -> String {
    stdout
        .lines()
        .find(|line| line.starts_with("demo: "))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"))
        .to_string()
}

#[test]
fn through_nats_and_in_process_the_day_raises_the_same_incidents() {
    let args = ["demo", "--duration", "3s", "--accounts", "600", "--exit"];
    let in_process = lifewatch(&[&args[..], &["--in-process"]].concat(), None);
    in_process.assert_success();
    assert!(in_process.stderr.contains("in process"), "{}", in_process.stderr);
    let through_nats = lifewatch(&args, None);
    through_nats.assert_success();
    assert!(
        through_nats.stderr.contains("through a nats-server"),
        "nats-server is on PATH: {}",
        through_nats.stderr
    );
    let (quiet, nats) = (in_process.stdout_text(), through_nats.stdout_text());
    assert_eq!(summary_of(&quiet), summary_of(&nats));
    assert!(summary_of(&nats).contains("regional_outage"), "{nats}");
    assert!(nats.lines().any(|line| line.contains("CRITICAL") && line.contains("regional_outage")), "{nats}");
    assert!(through_nats.stderr.contains("dashboard at http://127.0.0.1:"), "{}", through_nats.stderr);
    // Nothing left behind: the temporary directory (the nats-server's store
    // was in it) is gone and no process runs on it.
    let dir = temp_dir_of(&through_nats.stderr);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    let left = Command::new("pgrep").args(["-f", &dir.display().to_string()]).output().unwrap();
    assert!(left.stdout.is_empty(), "a process is left: {}", String::from_utf8_lossy(&left.stdout));
}

#[test]
fn the_dashboard_answers_until_sigint() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(["demo", "--in-process", "--duration", "2s", "--accounts", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || stdout.lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut url = None;
    let mut over = false;
    let mut lines = stderr.lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(at) = line.strip_prefix("lifewatch demo: dashboard at ") {
            url = Some(at.trim_end_matches('/').to_string());
        }
        if line.contains("the day is over") {
            over = true;
            break;
        }
    }
    // The rest of standard error is read on, so the demo never writes into a closed pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    assert!(over, "the demo did not finish its day");
    let url = url.expect("the dashboard's URL");
    let page = wait_for("the dashboard", Duration::from_secs(10), || {
        let answer = client().get(format!("{url}/api/incidents?limit=5")).send().ok()?;
        (answer.status() == 200).then(|| answer.text().ok()).flatten()
    });
    assert!(page.contains("\"incidents\":[{"), "{page}");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = wait_for("the demo to stop", Duration::from_secs(20), || child.try_wait().ok().flatten());
    assert!(exit.success(), "{exit:?}");
    let printed = reader.join().unwrap();
    let said = drain.join().unwrap();
    assert!(said.iter().any(|line| line.contains("stopped")), "{said:?}");
    assert!(printed.iter().any(|line| line.starts_with("demo: ")), "{printed:?}");
}
