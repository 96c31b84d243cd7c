//! The live monitor against a real `nats-server` (started by each test on a
//! free loopback port, stopped by its pid): `lifewatch publish` → `lifewatch
//! run` → the database and the INCIDENTS stream, compared with `lifewatch
//! replay` of the same events.
//!
//! **Why the comparisons turn the live clock off.** The fixtures are dated in
//! the past, so in live terms every event arrives late. With a real
//! `allowed_lateness` the monitor would, between two batches, judge visits
//! whose leaving events are still in the stream as stuck (which is what live
//! mode must do with events that late), while replay sees the whole stream
//! first. So the end-to-end, crash and server-restart tests set
//! `allowed_lateness` (and `max_future`) to ten years: the wall clock never
//! moves the engine, and `replay --now 1970-01-01T00:00:00Z` never judges an
//! open visit either. Stuck incidents of visits that ended late are still
//! compared (the retroactive rule); the wall-clock path has its own test,
//! `stuck_deadline_fires_on_the_wall_clock`, with events timed now.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::nats_support::*;
use lifewatch_nats::async_nats;

const NO_LIVE_CLOCK: [(&str, &str); 2] = [
    ("allowed_lateness = \"30s\"", "allowed_lateness = \"3650d\""),
    ("max_future = \"5m\"", "max_future = \"3650d\""),
];
const NEVER: &str = "1970-01-01T00:00:00Z";

fn launch_day() -> PathBuf {
    repo_root().join("fixtures/launch-day.jsonl")
}

/// What most tests here start from: a server, a directory named after the
/// test, a configuration in it with the live clock turned off
/// ([`NO_LIVE_CLOCK`]) and progress every second, and where the database goes.
pub(crate) fn live_setup(name: &str) -> (NatsServer, TempDir, PathBuf, PathBuf) {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new(name);
    let config = write_config(dir.path(), &NO_LIVE_CLOCK, "report_interval = \"1s\"\n");
    let db = dir.path().join("lifewatch.db");
    (server, dir, config, db)
}

/// [`wait_for`], printing the monitor's log if it times out.
fn wait_watching<T>(monitor: &Monitor, what: &str, condition: impl FnMut() -> Option<T>) -> T {
    let mut condition = condition;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_for(what, PATIENCE, &mut condition)))
    {
        Ok(value) => value,
        Err(panic) => {
            eprintln!("monitor log:\n{}", monitor.log_text());
            std::panic::resume_unwind(panic);
        }
    }
}

/// The fixture split into `parts` files of consecutive lines.
fn split(file: &Path, parts: usize, dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(file).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let size = lines.len().div_ceil(parts);
    lines
        .chunks(size)
        .enumerate()
        .map(|(index, chunk)| {
            let path = dir.join(format!("part-{index}.jsonl"));
            std::fs::write(&path, chunk.join("\n") + "\n").expect("write a part");
            path
        })
        .collect()
}

/// The database, the INCIDENTS stream and replay agree, and every outbox
/// entry reached INCIDENTS exactly once.
fn assert_all_agree(url: &str, db: &Path, fixture: &Path, config: &Path) {
    let expected = replay(&[fixture], NEVER, config);
    assert!(!expected.is_empty(), "the fixture raises incidents");
    let stored = db_incidents(db);
    assert_same_records("database vs replay", &stored, &expected);
    let (published, message_ids) = incidents_stream(url);
    assert_same_records("INCIDENTS vs replay", &published, &expected);
    assert_each_transition_once(&message_ids);
}

#[test]
fn end_to_end_publish_run_matches_replay() {
    let (server, _dir, config, db) = live_setup("e2e");
    let fixture = launch_day();
    let report = publish(&server.url(), &[&fixture], &[]);
    assert!(report.contains("invalid lines skipped"), "{report}");
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    wait_until_processed(&db, accepted_by_replay(&[&fixture], &config), &monitor);
    let log = monitor.log_text();
    let status = monitor.terminate();
    assert!(status.success(), "clean shutdown exits 0, got {status:?}");
    assert!(log.contains("consumer_lag") && log.contains("events_per_s"), "progress is reported: {log}");
    assert_all_agree(&server.url(), &db, &fixture, &config);
}

#[test]
fn monitor_killed_mid_stream_loses_nothing_and_doubles_nothing() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("sigkill");
    // Small batches, so that a kill lands between commits.
    let config = write_config(
        dir.path(),
        &NO_LIVE_CLOCK,
        "batch_size = 25\nack_wait = \"3s\"\nreport_interval = \"1s\"\n",
    );
    let fixture = launch_day();
    let parts = split(&fixture, 4, dir.path());
    let db = dir.path().join("lifewatch.db");
    let mut seen = 0;
    for part in &parts[..3] {
        publish(&server.url(), &[part], &[]);
        let monitor = Monitor::start(&server.url(), &db, &config, &[]);
        seen = wait_watching(&monitor, "progress before the kill", || {
            let events = db_summary(&db)?.events;
            (events > seen).then_some(events)
        });
        monitor.kill();
    }
    publish(&server.url(), &[&parts[3]], &[]);
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    wait_until_processed(&db, accepted_by_replay(&[&fixture], &config), &monitor);
    assert!(monitor.terminate().success());
    assert_all_agree(&server.url(), &db, &fixture, &config);
}

#[test]
fn monitor_reconnects_after_the_server_restarts() {
    let mut server = NatsServer::start(&[]);
    let dir = TempDir::new("restart");
    let config = write_config(
        dir.path(),
        &NO_LIVE_CLOCK,
        "batch_size = 25\nack_wait = \"3s\"\nreport_interval = \"1s\"\n",
    );
    let fixture = launch_day();
    let parts = split(&fixture, 2, dir.path());
    let db = dir.path().join("lifewatch.db");
    publish(&server.url(), &[&parts[0]], &[]);
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    wait_for("the monitor to start consuming", PATIENCE, || (db_summary(&db)?.events > 0).then_some(()));
    server.restart();
    publish(&server.url(), &[&parts[1]], &[]);
    wait_until_processed(&db, accepted_by_replay(&[&fixture], &config), &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success());
    assert!(log.contains("reconnecting"), "the monitor noticed the outage: {log}");
    assert_all_agree(&server.url(), &db, &fixture, &config);
}

#[test]
fn duplicates_malformed_and_mismatched_messages() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("bad");
    // Real max_future (5m): the fixtures are dated in the past of any run.
    let config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    let good = repo_root().join("fixtures/provisioning_failed.jsonl");
    let bad = repo_root().join("fixtures/bad-input.jsonl");

    // The good events twice through `publish`: JetStream drops the second copy.
    let first = publish(&server.url(), &[&good], &[]);
    let second = publish(&server.url(), &[&good], &[]);
    let good_lines = std::fs::read_to_string(&good).unwrap().lines().filter(|l| !l.trim().is_empty()).count();
    assert!(first.contains(&format!("{good_lines} stored")), "{first}");
    assert!(second.contains(&format!("0 stored, {good_lines} duplicates")), "{second}");

    // Every line of bad-input, and the good events once more, without a
    // Nats-Msg-Id: the stream keeps them all, the monitor must sort them out.
    // Then a good event on the wrong subject, and one from the future.
    let bad_bytes = std::fs::read(&bad).unwrap();
    let bad_lines: Vec<&[u8]> = bad_bytes
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    let good_text = std::fs::read_to_string(&good).unwrap();
    let first_good = good_text.lines().next().unwrap().to_string();
    let future_time =
        lifewatch_nats::wall_clock().unwrap().saturating_add(lifewatch_core::Duration::from_seconds(3600));
    let future = format!(
        r#"{{"specversion":"1.0","id":"from-the-future","source":"t","type":"account.created","subject":"acc_future","time":"{future_time}","data":{{"plan":"free"}}}}"#
    );
    let mut sent_bad: Vec<String> = Vec::new();
    block_on(async {
        let client = server.client().await;
        let jetstream = async_nats::jetstream::new(client);
        let mut acks = Vec::new();
        let send = |subject: String, payload: Vec<u8>| {
            let jetstream = jetstream.clone();
            async move { jetstream.publish(subject, payload.into()).await.expect("publish").await.expect("ack") }
        };
        for (index, line) in bad_lines.iter().enumerate() {
            let subject = match lifewatch_core::parse_event(line) {
                Ok(event) => event.nats_subject(),
                Err(_) => format!("lifecycle.bad.line{index}.x"),
            };
            acks.push(send(subject, line.to_vec()).await);
        }
        for line in good_text.lines().filter(|l| !l.trim().is_empty()) {
            let event = lifewatch_core::parse_event(line.as_bytes()).unwrap();
            acks.push(send(event.nats_subject(), line.as_bytes().to_vec()).await);
        }
        let wrong = "lifecycle.account.somebody_else.created".to_string();
        sent_bad.push(wrong.clone());
        acks.push(send(wrong, first_good.clone().into_bytes()).await);
        let event = lifewatch_core::parse_event(future.as_bytes()).unwrap();
        sent_bad.push(event.nats_subject());
        acks.push(send(event.nats_subject(), future.clone().into_bytes()).await);
        assert!(acks.iter().all(|ack| !ack.duplicate));
    });

    // What replay says of the same inputs, plus the two live-only rejections.
    let good_accepted = accepted_by_replay(&[&good], &config);
    let bad_accepted = accepted_by_replay(&[&bad], &config);
    let replay_rejections = {
        let output = lifewatch().arg("replay").arg(&bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let mut reasons: Vec<String> = stderr
            .lines()
            .filter_map(|line| line.split(": rejected: ").nth(1))
            .map(|rest| rest.split(':').next().unwrap().to_string())
            .collect();
        reasons.push("subject_mismatch".into());
        reasons.push("time_in_future".into());
        reasons.sort();
        reasons
    };

    let db = dir.path().join("lifewatch.db");
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    wait_for("every message to be stored or rejected", PATIENCE, || {
        let summary = db_summary(&db)?;
        (summary.events == good_accepted + bad_accepted && summary.rejected == replay_rejections.len() as i64)
            .then_some(())
    });
    let store = lifewatch_store::Store::open_read_only(&db).unwrap();
    let mut reasons: Vec<String> =
        store.rejected(None, None, true).unwrap().into_iter().map(|rejected| rejected.reason).collect();
    reasons.sort();
    assert_eq!(reasons, replay_rejections, "every bad message kept with its reason");
    let rejected = wait_for("the rejected stream to hold every bad message", PATIENCE, || {
        let messages = stream_messages(&server.url(), "LIFEWATCH_REJECTED");
        (messages.len() == replay_rejections.len()).then_some(messages)
    });
    let mut republished_reasons: Vec<String> = rejected
        .iter()
        .map(|message| {
            let reason = message.headers["Lifewatch-Reject-Reason"].clone();
            assert_eq!(message.subject, format!("lifewatch.rejected.{reason}"));
            assert!(message.headers["Lifewatch-Original-Subject"].starts_with("lifecycle."));
            reason
        })
        .collect();
    republished_reasons.sort();
    assert_eq!(republished_reasons, replay_rejections);
    for subject in &sent_bad {
        assert!(
            rejected.iter().any(|message| &message.headers["Lifewatch-Original-Subject"] == subject),
            "{subject} republished with its original subject"
        );
    }
    assert!(monitor.terminate().success());
    // Once more: nothing changes on a restart that finds everything acknowledged.
    let summary = db_summary(&db).unwrap();
    assert_eq!(summary.events, good_accepted + bad_accepted);
}

#[test]
fn stuck_deadline_fires_on_the_wall_clock() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("stuck");
    let config = write_config(
        dir.path(),
        &[
            ("requested = \"5m\"", "requested = \"2s\""),
            ("allowed_lateness = \"30s\"", "allowed_lateness = \"1s\""),
        ],
        "",
    );
    let db = dir.path().join("lifewatch.db");
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    wait_for("the monitor to create its streams", PATIENCE, || {
        (!stream_messages(&server.url(), "INCIDENTS").is_empty()
            || monitor.log_text().contains("monitor running"))
        .then_some(())
    });
    let (record, due, arrived) = block_on(async {
        let client = server.client().await;
        let mut stuck = client.subscribe("incidents.stuck.project.prj_stuck").await.unwrap();
        client.flush().await.unwrap();
        let now = lifewatch_nats::wall_clock().unwrap();
        let line = format!(
            r#"{{"specversion":"1.0","id":"stuck-1","source":"t","type":"project.requested","subject":"prj_stuck","time":"{now}","data":{{"account_id":"acc_x","region":"eu-west-1"}}}}"#
        );
        let jetstream = async_nats::jetstream::new(client.clone());
        jetstream.publish("lifecycle.project.prj_stuck.requested", line.into()).await.unwrap().await.unwrap();
        let due = now.saturating_add(lifewatch_core::Duration::from_seconds(3));
        let message = tokio::time::timeout(Duration::from_secs(30), futures_next(&mut stuck))
            .await
            .expect("a stuck incident within 30 s")
            .expect("a message");
        let arrived = lifewatch_nats::wall_clock().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        (body, due, arrived)
    });
    assert_eq!(record["transition"], "opened");
    assert_eq!(record["incident"]["state"], "requested");
    let late_ms = arrived.since(due).as_nanos() / 1_000_000;
    eprintln!("stuck incident arrived {late_ms} ms after due + lateness");
    assert!(
        late_ms <= 2_000,
        "the stuck incident must fire within 2 s of due + lateness, came {late_ms} ms late"
    );
    assert!(monitor.terminate().success());
}

async fn futures_next(subscriber: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    subscriber.next().await
}

#[test]
fn authentication_user_password_token_and_refusal() {
    let fixture = repo_root().join("fixtures/provisioning_failed.jsonl");
    let dir = TempDir::new("auth");
    let config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    for (server_args, good, bad) in [
        (
            vec!["--user", "monitor", "--pass", "s3cret-pass"],
            vec!["--user", "monitor", "--password", "s3cret-pass"],
            Some(vec!["--user", "monitor", "--password", "wrong-pass"]),
        ),
        (vec!["--auth", "t0ken-value"], vec!["--token", "t0ken-value"], None),
    ] {
        let server = NatsServer::start(&server_args);
        let db = dir.path().join(format!("auth-{}.db", server.port));
        publish(&server.url(), &[&fixture], &good);
        let monitor = Monitor::start(&server.url(), &db, &config, &good);
        let events = accepted_by_replay(&[&fixture], &config);
        wait_until_processed(&db, events, &monitor);
        let log = monitor.log_text();
        assert!(monitor.terminate().success());
        for secret in ["s3cret-pass", "t0ken-value"] {
            assert!(!log.contains(secret), "a secret leaked into the log");
        }
        if let Some(bad) = bad {
            let started = Instant::now();
            let refused = Monitor::start(&server.url(), &dir.path().join("refused.db"), &config, &bad);
            let (status, log) = refused.wait_exit(Duration::from_secs(30));
            assert!(!status.success(), "a wrong password must fail");
            assert!(log.contains("refused the credentials"), "a clear message: {log}");
            assert!(!log.contains("wrong-pass"), "the password must not be printed: {log}");
            eprintln!("refused in {:?}", started.elapsed());
        }
    }
}

/// `lifewatch outbox --db DB --format jsonl`: the entries set aside.
fn set_aside(db: &Path) -> Vec<serde_json::Value> {
    let output = lifewatch().args(["outbox", "--format", "jsonl", "--db"]).arg(db).output().unwrap();
    assert!(output.status.success(), "lifewatch outbox failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// The issue's outage: five failing projects in region "eu west". Its
/// subject is cleaned, so it reaches INCIDENTS, and the incidents of later
/// events flow behind it.
#[test]
fn an_outage_in_a_region_with_a_space_reaches_incidents_and_later_ones_flow() {
    let (server, dir, config, db) = live_setup("eu-west");
    let outage = std::fs::read_to_string(repo_root().join("fixtures/regional_outage.jsonl")).unwrap();
    let later = std::fs::read_to_string(repo_root().join("fixtures/provisioning_failed.jsonl")).unwrap();
    let fixture = dir.path().join("eu-west.jsonl");
    std::fs::write(&fixture, outage.replace("\"eu-west-1\"", "\"eu west\"") + &later).unwrap();
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    assert!(monitor.terminate().success());

    let messages = stream_messages(&server.url(), "INCIDENTS");
    let eu_west = lifewatch_core::subject_token("eu west");
    assert!(eu_west.starts_with("eu_west~"), "{eu_west}");
    assert!(
        messages
            .iter()
            .any(|message| message.subject == format!("incidents.regional_outage.region.{eu_west}")),
        "the regional outage of \"eu west\" reached INCIDENTS"
    );
    assert!(
        messages.iter().any(|message| message.subject == "incidents.provisioning_failed.project.prj_1"),
        "the incidents of later events were published too"
    );
    assert_all_agree(&server.url(), &db, &fixture, &config);
    assert!(set_aside(&db).is_empty(), "nothing was set aside");
}

/// The issue's dispute: a valid event whose record would be over NATS's
/// 1 MiB limit (a 600,000-byte account id) goes out with the record's cut
/// account id, the same record as `replay` and the store give, and later
/// incidents still flow.
#[test]
fn an_incident_too_large_for_nats_is_published_bounded_and_later_ones_flow() {
    let (server, dir, config, db) = live_setup("huge");
    let account = "a".repeat(600_000);
    let huge = format!(
        r#"{{"specversion":"1.0","id":"huge-1","source":"billing/disputes","type":"dispute.opened","subject":"dsp_huge","time":"2026-11-20T07:00:00Z","data":{{"account_id":"{account}","amount_cents":99,"currency":"USD"}}}}"#
    );
    let later = std::fs::read_to_string(repo_root().join("fixtures/billing_dispute.jsonl")).unwrap();
    let fixture = dir.path().join("huge.jsonl");
    std::fs::write(&fixture, format!("{huge}\n{later}")).unwrap();
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);
    assert!(monitor.terminate().success());

    let expected = replay(&[&fixture], NEVER, &config);
    let (published, message_ids) = incidents_stream(&server.url());
    assert_each_transition_once(&message_ids);
    assert_eq!(published.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let mut huge_seen = 0;
    for message in stream_messages(&server.url(), "INCIDENTS") {
        assert!(
            message.payload.len() <= lifewatch_core::MAX_MESSAGE_BYTES,
            "{} bytes",
            message.payload.len()
        );
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body.get("truncated"), None, "records are bounded already: no message needs cutting");
        let id = body["incident"]["id"].as_str().unwrap();
        if message.subject.ends_with(".dsp_huge") {
            assert!(body["incident"]["account_id"].as_str().unwrap().ends_with("[cut from 600000 bytes]"));
            huge_seen += 1;
        }
        assert_eq!(published[id], expected[id], "the published record is replay's");
    }
    assert!(huge_seen > 0, "the huge dispute's incident was published");
    assert!(published.len() > 1, "later incidents were published");
    // The store keeps the same (cut) record; the event log keeps the event whole.
    let stored = db_incidents(&db);
    let cut = stored.values().find(|record| record["entity"]["id"] == "dsp_huge").unwrap();
    assert_eq!(cut, &expected[cut["id"].as_str().unwrap()]);
    assert!(set_aside(&db).is_empty());
}

/// Rows the server refuses for good — an invalid subject (as stored before
/// subjects were cleaned) and a subject no stream takes — are set aside,
/// logged once, listed by `lifewatch outbox`, and do not hold back the rest.
#[test]
fn rows_refused_for_good_are_set_aside_and_listed() {
    let (server, _dir, config, db) = live_setup("set-aside");
    let fixture = repo_root().join("fixtures/regional_outage.jsonl");
    let output = lifewatch()
        .args(["replay", "--now", NEVER, "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (invalid, nowhere) = {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let ids: Vec<i64> = connection
            .prepare("SELECT id FROM outbox ORDER BY id LIMIT 2")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids.len(), 2, "the fixture queues incidents");
        connection
            .execute(
                "UPDATE outbox SET subject = 'incidents.regional_outage.region.eu west' WHERE id = ?1",
                [ids[0]],
            )
            .unwrap();
        connection.execute("UPDATE outbox SET subject = 'nowhere.at.all' WHERE id = ?1", [ids[1]]).unwrap();
        (ids[0], ids[1])
    };
    let total: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
        .unwrap();

    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    let events = db_summary(&db).unwrap().events;
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success());

    let listed = set_aside(&db);
    let ids: Vec<i64> = listed.iter().map(|entry| entry["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![invalid, nowhere]);
    assert_eq!(listed[0]["subject"], "incidents.regional_outage.region.eu west");
    assert!(!listed[0]["reason"].as_str().unwrap().is_empty());
    assert!(listed[1]["reason"].as_str().unwrap().contains("no stream"), "{}", listed[1]["reason"]);
    for id in [invalid, nowhere] {
        let logged = log
            .lines()
            .filter(|line| line.contains("set aside") && line.contains(&format!("\"id\":{id}")))
            .count();
        assert_eq!(logged, 1, "entry {id} logged once when set aside: {log}");
    }
    let (_, message_ids) = incidents_stream(&server.url());
    assert_eq!(message_ids.len() as i64, total - 2, "every other entry was published");
    let table = lifewatch().args(["outbox", "--db"]).arg(&db).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("2 set aside"));
}

/// A clean stop waits (bounded, `outbox_drain`) for the outbox, and when
/// the server keeps refusing for a reason that may pass (here the stream is
/// full) it says how many entries remain rather than claiming all went out.
#[test]
fn a_clean_stop_says_how_many_incidents_remain_unpublished() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("drain");
    let config =
        write_config(dir.path(), &NO_LIVE_CLOCK, "report_interval = \"1s\"\noutbox_drain = \"1s\"\n");
    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "INCIDENTS".to_string(),
                subjects: vec!["incidents.>".to_string()],
                max_messages: 1,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .expect("create a full-after-one INCIDENTS stream");
    });
    let fixture = repo_root().join("fixtures/regional_outage.jsonl");
    publish(&server.url(), &[&fixture], &[]);
    let db = dir.path().join("lifewatch.db");
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    let events = accepted_by_replay(&[&fixture], &config);
    wait_watching(&monitor, "every event stored and the first incident published", || {
        let summary = db_summary(&db)?;
        (summary.events == events && stream_messages(&server.url(), "INCIDENTS").len() == 1).then_some(())
    });
    let log_before = monitor.log.clone();
    assert!(monitor.terminate().success(), "a clean stop exits 0");
    let log = std::fs::read_to_string(&log_before).unwrap();
    let pending = db_summary(&db).unwrap().pending_outbox;
    assert!(pending > 0, "the stream refused the rest");
    assert!(!log.contains("every incident transition was published"), "{log}");
    let last = log.lines().rfind(|line| line.contains("monitor stopped")).expect("a final line");
    assert!(last.contains("not yet published"), "{last}");
    assert!(last.contains(&format!("\"unpublished\":{pending}")), "{last}");
    assert!(set_aside(&db).is_empty(), "a full stream is no reason to set anything aside");
}

/// Creates `name` on `subjects` only, as an operator might by hand.
fn create_stream(server: &NatsServer, name: &str, subjects: &[&str]) {
    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: name.to_string(),
                subjects: subjects.iter().map(|subject| subject.to_string()).collect(),
                ..Default::default()
            })
            .await
            .expect("create the stream");
    });
}

/// A stream made narrower than what lifewatch uses on it makes `lifewatch
/// run` refuse to start, naming the stream, its subjects and a subject
/// it does not cover, instead of refusing incidents one at a time.
#[test]
fn a_narrow_incidents_stream_stops_the_monitor_at_start() {
    let (server, _dir, config, db) = live_setup("narrow-incidents");
    create_stream(&server, "INCIDENTS", &["incidents.stuck.>"]);
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    let (status, log) = monitor.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "a stream that does not cover the subjects is an error: {log}");
    assert!(log.contains("stream INCIDENTS"), "{log}");
    assert!(log.contains("incidents.stuck.>"), "the stream's subjects are named: {log}");
    assert!(
        log.contains("incidents.provisioning_failed.account.*"),
        "the subject not covered is named: {log}"
    );
}

/// Publishes the valid lines of `file` straight to JetStream, each to its
/// subject with `Nats-Msg-Id` = event id, without `lifewatch publish`
/// (which would create a missing stream itself).
fn publish_directly(server: &NatsServer, file: &Path) {
    let text = std::fs::read_to_string(file).expect("the events");
    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        for line in text.lines() {
            let Ok(event) = lifewatch_core::parse_event(line.as_bytes()) else { continue };
            // The stream may be a moment old (just created again by the
            // monitor) on a loaded machine: a publish that is not
            // acknowledged is tried again, until a deadline.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", event.id.as_ref());
                let stored = match jetstream
                    .publish_with_headers(event.nats_subject(), headers, line.to_string().into())
                    .await
                {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match stored {
                    Ok(()) => break,
                    Err(error) if Instant::now() < deadline => {
                        eprintln!("publish of {} not stored yet ({error}); trying again", event.id);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => panic!("publish of {} never stored: {error}", event.id),
                }
            }
        }
    });
}

/// The INCIDENTS stream deleted under a running monitor is created again,
/// and the incidents raised afterwards reach it; none is set aside for
/// want of a stream.
#[test]
fn an_incidents_stream_deleted_while_the_monitor_runs_is_created_again() {
    let (server, dir, config, db) = live_setup("deleted-incidents");
    let parts = split(&launch_day(), 2, dir.path());
    let monitor = started_monitor(&server, &db, &config, &[&parts[0]], &[]);
    let outbox_count = || -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .unwrap()
    };
    let before = outbox_count();
    assert_eq!(stream_messages(&server.url(), "INCIDENTS").len() as i64, before);

    delete_stream(&server, "INCIDENTS");
    publish_directly(&server, &parts[1]);
    wait_until_processed(&db, accepted_by_replay(&[&parts[0], &parts[1]], &config), &monitor);
    let after = outbox_count();
    assert!(after > before, "the second part raises incidents");
    let log = monitor.log_text();
    assert!(monitor.terminate().success());

    assert!(set_aside(&db).is_empty(), "a deleted stream is no reason to set anything aside: {log}");
    let messages = stream_messages(&server.url(), "INCIDENTS");
    assert_eq!(messages.len() as i64, after - before, "every later transition reached the new stream: {log}");
    let recreated = log.lines().filter(|line| line.contains("created it again")).count();
    assert_eq!(recreated, 1, "the re-creation is logged once: {log}");
}

/// `lifewatch publish` to an events stream that does not take a subject
/// stops at the first refusal, naming the subject, instead of retrying
/// every message with backoff for minutes.
#[test]
fn publish_to_a_narrow_lifecycle_stream_fails_naming_the_subject() {
    let server = NatsServer::start(&[]);
    create_stream(&server, "LIFECYCLE", &["lifecycle.account.>"]);
    let dir = TempDir::new("narrow-lifecycle");
    // A file rather than a pipe, so that a chatty run cannot block on a full pipe.
    let log = dir.path().join("publish.log");
    let mut child = lifewatch()
        .arg("publish")
        .arg(launch_day())
        .args(["--nats", &server.url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("run lifewatch publish");
    let status = wait_for("lifewatch publish to give up", PATIENCE, || child.try_wait().ok().flatten());
    let stderr = std::fs::read_to_string(&log).expect("the log");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("no stream takes subject lifecycle."), "the subject is named: {stderr}");
    assert!(!stderr.contains("subject lifecycle.account."), "that subject has a stream: {stderr}");
}

/// The LIFECYCLE stream deleted under a running monitor is created again
/// and read from its beginning (a new stream numbers its messages from 1),
/// so events published to it afterwards are applied.
#[test]
fn a_lifecycle_stream_deleted_while_the_monitor_runs_is_created_again() {
    let (server, dir, config, db) = live_setup("deleted-lifecycle");
    let parts = split(&launch_day(), 2, dir.path());
    let monitor = started_monitor(&server, &db, &config, &[&parts[0]], &[]);

    delete_stream(&server, "LIFECYCLE");
    wait_watching(&monitor, "the monitor to create LIFECYCLE again", || {
        monitor.log_text().contains("events stream was deleted").then_some(())
    });
    publish_directly(&server, &parts[1]);
    wait_until_processed(&db, accepted_by_replay(&[&parts[0], &parts[1]], &config), &monitor);
    assert!(monitor.terminate().success());
}

/// With `--no-create`, an INCIDENTS stream deleted under the monitor is not
/// created: the monitor says why once, the transitions wait in the outbox
/// (none set aside), and they flow once the operators create it again.
#[test]
fn with_no_create_a_deleted_incidents_stream_is_waited_for() {
    let (server, dir, config, db) = live_setup("no-create-incidents");
    let parts = split(&launch_day(), 2, dir.path());
    let monitor = started_monitor(&server, &db, &config, &[&parts[0]], &["--no-create"]);

    delete_stream(&server, "INCIDENTS");
    publish_directly(&server, &parts[1]);
    let events = accepted_by_replay(&[&parts[0], &parts[1]], &config);
    wait_watching(&monitor, "the monitor to say INCIDENTS is missing, with transitions waiting", || {
        let summary = db_summary(&db)?;
        let said = monitor.log_text().contains("incidents stream is missing");
        (said && summary.events == events && summary.pending_outbox > 0).then_some(())
    });
    assert!(set_aside(&db).is_empty(), "a missing stream is no reason to set anything aside");
    assert!(stream_messages(&server.url(), "INCIDENTS").is_empty(), "--no-create created nothing");

    create_stream(&server, "INCIDENTS", &["incidents.>"]);
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success());
    let said = log.lines().filter(|line| line.contains("incidents stream is missing")).count();
    assert_eq!(said, 1, "said once while it stayed missing: {log}");
    assert!(set_aside(&db).is_empty());
}

/// With `--no-create`, a LIFECYCLE stream deleted under the monitor is not
/// created: the monitor says why, keeps trying, and still stops cleanly on
/// SIGTERM while it waits.
#[test]
fn with_no_create_a_deleted_lifecycle_stream_is_waited_for_and_shutdown_works() {
    let (server, _dir, config, db) = live_setup("no-create-lifecycle");
    let fixture = repo_root().join("fixtures/regional_outage.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &["--no-create"]);

    delete_stream(&server, "LIFECYCLE");
    wait_watching(&monitor, "the monitor to say LIFECYCLE is missing", || {
        monitor.log_text().contains("events stream is missing").then_some(())
    });
    let exists = block_on(async {
        async_nats::jetstream::new(server.client().await).get_stream("LIFECYCLE").await.is_ok()
    });
    assert!(!exists, "--no-create created nothing");
    assert!(monitor.terminate().success(), "a clean stop while waiting for the stream exits 0");
}

/// The rejected-messages stream deleted under the monitor is created again
/// when a rejected message is next republished, and holds that message.
#[test]
fn a_rejected_stream_deleted_while_the_monitor_runs_is_created_again() {
    let (server, _dir, config, db) = live_setup("deleted-rejected");
    let fixture = repo_root().join("fixtures/regional_outage.jsonl");
    let monitor = started_monitor(&server, &db, &config, &[&fixture], &[]);

    block_on(async {
        let jetstream = async_nats::jetstream::new(server.client().await);
        jetstream.delete_stream("LIFEWATCH_REJECTED").await.expect("delete LIFEWATCH_REJECTED");
        let ack = jetstream
            .publish("lifecycle.invalid.1.malformed", "{torn".into())
            .await
            .expect("publish a malformed line");
        ack.await.expect("stored");
    });
    let messages = wait_watching(&monitor, "the malformed line on a new LIFEWATCH_REJECTED", || {
        let messages = stream_messages(&server.url(), "LIFEWATCH_REJECTED");
        (!messages.is_empty()).then_some(messages)
    });
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, b"{torn");
    assert!(monitor.log_text().contains("created it again"), "{}", monitor.log_text());
    assert!(monitor.terminate().success());
}

/// A second monitor started with another database but the same `[nats]
/// consumer` name refuses to start, naming the setting and the first
/// monitor, and leaves the consumer alone: the first keeps consuming without
/// ever losing its consumer. A restart of the first monitor (same database)
/// takes its consumer back as before, and once it stopped cleanly the
/// second may take the consumer over.
#[test]
fn a_second_monitor_on_the_same_consumer_refuses_and_leaves_the_first_alone() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("second-monitor");
    let config = write_config(dir.path(), &NO_LIVE_CLOCK, "report_interval = \"1s\"\n");
    let parts = split(&launch_day(), 3, dir.path());
    let first_db = dir.path().join("first.db");
    let first = started_monitor(&server, &first_db, &config, &[&parts[0]], &[]);

    let second_db = dir.path().join("second.db");
    let second = Monitor::start(&server.url(), &second_db, &config, &[]);
    let (status, log) = second.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "a consumer in use by another monitor is an error: {log}");
    assert!(log.contains("[nats] consumer"), "the setting to change is named: {log}");
    let first_path = std::fs::canonicalize(&first_db).expect("the first database");
    assert!(log.contains(&first_path.display().to_string()), "the other owner is named: {log}");

    publish(&server.url(), &[&parts[1]], &[]);
    wait_until_processed(&first_db, accepted_by_replay(&[&parts[0], &parts[1]], &config), &first);
    let first_log = first.log_text();
    assert!(first.terminate().success());
    assert!(!first_log.contains("consumer deleted"), "the first monitor kept its consumer: {first_log}");
    assert!(
        !first_log.contains("binding the consumer again"),
        "the first monitor never rebound: {first_log}"
    );

    publish(&server.url(), &[&parts[2]], &[]);
    let everything = accepted_by_replay(&[&parts[0], &parts[1], &parts[2]], &config);
    let restarted = Monitor::start(&server.url(), &first_db, &config, &[]);
    wait_until_processed(&first_db, everything, &restarted);
    assert!(restarted.terminate().success());

    // A monitor that stopped cleanly released the consumer: the second
    // database's monitor may take it over at once.
    let second = Monitor::start(&server.url(), &second_db, &config, &[]);
    wait_until_processed(&second_db, everything, &second);
    let second_log = second.log_text();
    assert!(second.terminate().success());
    assert!(second_log.contains("another monitor released"), "{second_log}");
}

/// The last number before `label` in `lifewatch publish`'s report, e.g. the
/// stored count of `... 2454 stored, 38 duplicates; ...`.
fn reported(report: &str, label: &str) -> i64 {
    let totals = report.lines().rfind(|line| line.starts_with("publish: ")).expect("publish totals");
    let head = totals.split(label).next().expect("a count before the label");
    head.rsplit([' ', ':']).find(|token| !token.is_empty()).and_then(|token| token.parse().ok()).expect(label)
}

/// The fault stream of `simulate` published with `--raw`: a line rejected for
/// its content often carries the id of the corrected event that follows it
/// (SPEC §1: the id of a rejected event is not taken). Had the rejected line
/// been sent with `Nats-Msg-Id` = that id, JetStream would drop the correction
/// inside its duplicate window, and the live store would lack events (and have
/// incidents) that `replay` of the same file has. Identical invalid lines
/// (`null` twice) are each a rejection, live as in replay.
#[test]
fn a_fault_stream_published_raw_keeps_corrected_re_sends_and_matches_replay() {
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("raw-faults");
    let config = write_config(dir.path(), &NO_LIVE_CLOCK, "report_interval = \"1s\"\n");
    let fixture = dir.path().join("faults.jsonl");
    let simulate = lifewatch()
        .args(["simulate", "--faults", "--seed", "21", "--accounts", "200", "--out"])
        .arg(&fixture)
        .output()
        .expect("run lifewatch simulate");
    assert!(simulate.status.success(), "simulate failed: {}", String::from_utf8_lossy(&simulate.stderr));

    // What replay rejects, by line number; the stream must hold what this test is about.
    let text = std::fs::read_to_string(&fixture).expect("the simulated stream");
    let lines: Vec<&str> = text.lines().collect();
    let replayed =
        lifewatch().arg("replay").arg(&fixture).args(["--now", NEVER]).output().expect("run replay");
    let rejected_lines: Vec<usize> = String::from_utf8_lossy(&replayed.stderr)
        .lines()
        .filter_map(|line| line.split_once(": rejected: "))
        .filter_map(|(place, _)| place.rsplit(':').next()?.parse().ok())
        .collect();
    let id_of = |line: &str| -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        value.get("id")?.as_str().map(str::to_string)
    };
    let corrected = rejected_lines
        .iter()
        .filter_map(|&number| id_of(lines[number - 1]).map(|id| (number, id)))
        .filter(|(number, id)| {
            lines[*number..].iter().any(|later| {
                lifewatch_core::parse_event(later.as_bytes()).is_ok_and(|event| event.id == id.as_str())
            })
        })
        .count();
    assert!(corrected > 0, "the fault stream has rejected lines followed by their correction");
    let repeated = rejected_lines.iter().enumerate().any(|(index, &number)| {
        rejected_lines[..index].iter().any(|&earlier| lines[earlier - 1] == lines[number - 1])
    });
    assert!(repeated, "the fault stream has an invalid line twice");

    let report = publish(&server.url(), &[&fixture], &["--raw"]);
    assert_eq!(reported(&report, " invalid lines skipped"), 0, "{report}");
    let stored = reported(&report, " stored");
    let db = dir.path().join("live.db");
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    // Every stored message is either an accepted event or a rejection (the
    // broker dropped the exact duplicates), whether or not a correction was lost.
    let summary = wait_watching(&monitor, "every stored message to be accepted or rejected", || {
        let summary = db_summary(&db)?;
        (summary.events + summary.rejected == stored && summary.pending_outbox == 0).then_some(summary)
    });
    assert!(monitor.terminate().success());
    assert_eq!(summary.events, accepted_by_replay(&[&fixture], &config), "accepted live and by replay");
    assert_eq!(summary.rejected, rejected_lines.len() as i64, "rejected live and by replay");
    assert_all_agree(&server.url(), &db, &fixture, &config);

    // And as an operator would compare them: `incidents` of the live store and `replay`.
    let incidents = lifewatch()
        .args(["incidents", "--format", "jsonl", "--db"])
        .arg(&db)
        .output()
        .expect("run lifewatch incidents");
    assert!(incidents.status.success(), "{}", String::from_utf8_lossy(&incidents.stderr));
    let live = by_id(
        String::from_utf8_lossy(&incidents.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON record")),
    );
    assert_same_records("incidents --db live.db vs replay", &live, &replay(&[&fixture], NEVER, &config));
}

/// `simulate --nats` stops on SIGTERM at once, also while the server it
/// publishes to is gone (it used to wait for acknowledgements that never
/// came, and outlived the scripts that started it).
#[test]
fn simulate_stops_on_sigterm_when_its_server_is_gone() {
    let mut server = crate::nats_support::NatsServer::start(&[]);
    let mut simulate = crate::nats_support::lifewatch()
        .args(["simulate", "--nats", &server.url(), "--rate", "2000", "--duration", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start simulate");
    std::thread::sleep(std::time::Duration::from_secs(2));
    server.kill();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = std::process::Command::new("kill").args(["-TERM", &simulate.id().to_string()]).status();
    let status =
        crate::nats_support::wait_for("simulate to exit", std::time::Duration::from_secs(10), || {
            simulate.try_wait().expect("simulate's status")
        });
    let mut stderr = String::new();
    std::io::Read::read_to_string(simulate.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped by a signal"), "{stderr}");
}
