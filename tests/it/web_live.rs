//! The web server next to the live monitor (`run --listen`): readiness
//! follows NATS, `/metrics` counts what the monitor did and passes
//! `promtool check metrics`, and a stop with the server gone is prompt.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{lifewatch, repo_root, temp_db};
use crate::nats_live::live_setup;
use crate::nats_support::{free_port, started_monitor, wait_for};
use crate::web::{Served, client};

/// `promtool check metrics` on `text`: `Ok` when it passes; `Err` with its
/// output; `None` when promtool is not installed (and CI is not set: under
/// CI a missing promtool fails).
fn promtool(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("CI").is_err(),
                "promtool is not installed ({error}): scripts/test.sh installs Debian's prometheus"
            );
            eprintln!("skipping the promtool check: promtool is not installed ({error})");
            return None;
        }
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    if output.status.success() {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn get(url: &str) -> (u16, String) {
    match client().get(url).send() {
        Ok(answer) => (answer.status().as_u16(), answer.text().unwrap_or_default()),
        Err(error) => (0, error.to_string()),
    }
}

#[test]
fn readiness_follows_nats_and_metrics_count_what_the_monitor_did() {
    let (mut server, _dir, config, db) = live_setup("web-live");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let fixture = repo_root().join("fixtures/regional_outage.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &["--listen", &listen]);
    let base = format!("http://{listen}");
    wait_for("/readyz to say ready", Duration::from_secs(20), || {
        (get(&format!("{base}/readyz")).0 == 200).then_some(())
    });
    let (status, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200, "{metrics}");
    for expected in [
        "lifewatch_events_accepted_total{type=\"project.provisioning_failed\"}",
        "lifewatch_incidents_opened_total{kind=\"regional_outage\"} ",
        "lifewatch_open_incidents{",
        "lifewatch_batch_commit_duration_seconds_bucket",
        "lifewatch_nats_connected 1",
        "lifewatch_store_size_bytes ",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    if let Some(checked) = promtool(&metrics) {
        checked.unwrap_or_else(|output| panic!("promtool check metrics:\n{output}\n{metrics}"));
    }
    // The API answers from the database the monitor writes.
    let (status, outages) = get(&format!("{base}/api/outages"));
    assert_eq!(status, 200);
    assert!(outages.contains("regional_outage"), "{outages}");

    // NATS goes away: not ready, naming it; back: ready again.
    server.kill();
    let reason = wait_for("/readyz to say not ready", Duration::from_secs(20), || {
        let (status, body) = get(&format!("{base}/readyz"));
        (status == 503).then_some(body)
    });
    assert!(reason.contains("NATS"), "{reason}");
    assert_eq!(get(&format!("{base}/healthz")).0, 200, "the process still answers");
    server.restart();
    wait_for("/readyz to say ready again", Duration::from_secs(30), || {
        (get(&format!("{base}/readyz")).0 == 200).then_some(())
    });

    // A stop while the server is gone is prompt (acknowledgements and the
    // last flush are bounded), and the web server stops with the monitor.
    server.kill();
    assert!(monitor.terminate().success());
    assert!(client().get(format!("{base}/healthz")).send().is_err(), "the web server outlived the monitor");
}

#[test]
fn serve_metrics_show_the_read_side_and_pass_promtool() {
    let (_dir, db) = temp_db("web-metrics");
    lifewatch(&["replay", "fixtures/launch-day.jsonl", "--db", db.to_str().unwrap()], None).assert_success();
    let served = Served::start(Path::new(&db), &[]);
    let (status, metrics) = served.text("/metrics");
    assert_eq!(status, 200);
    let open: u64 =
        lifewatch(&["incidents", "--db", db.to_str().unwrap(), "--status", "open", "-o", "jsonl"], None)
            .records()
            .len() as u64;
    let gauged: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("lifewatch_open_incidents{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(gauged, open, "{metrics}");
    assert!(metrics.contains("lifewatch_outbox_backlog_transitions "), "{metrics}");
    if let Some(checked) = promtool(&metrics) {
        checked.unwrap_or_else(|output| panic!("promtool check metrics:\n{output}\n{metrics}"));
    }
    assert_eq!(served.text("/readyz").0, 200);
}
