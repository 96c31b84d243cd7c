//! People acting on incidents (`lifewatch ack|resolve|note`, the API's
//! POSTs) and escalation: actions are inputs that `rebuild` keeps, an
//! unacknowledged incident escalates to its step's channel in event time
//! (the same in replay as live), an acknowledged one does not, and a
//! restart neither escalates again nor forgets.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{TempDir, lifewatch};
use crate::notify::{receiver, reply};

/// Runs `lifewatch args` and returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = crate::nats_support::lifewatch().args(args).output().expect("run lifewatch");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `(incident, transition)` rows of a database, in store order.
fn transitions(db: &Path) -> Vec<(String, String)> {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = connection
        .prepare("SELECT outbox.incident_id, outbox.transition FROM outbox ORDER BY outbox.id")
        .unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The records of a database by id.
fn records(db: &Path) -> BTreeMap<String, Value> {
    crate::nats_support::db_incidents(db)
}

#[test]
fn ack_resolve_and_note_are_inputs_that_rebuild_keeps() {
    let dir = TempDir::new("operator-cli");
    let db = dir.path().join("lifewatch.db");
    let db_arg = db.to_str().unwrap();
    let replayed = lifewatch(&["replay", "--db", db_arg, "fixtures/illegal_transition.jsonl"], None);
    assert!(replayed.code == Some(0), "{}", replayed.stderr);
    let before = records(&db);
    let illegal = |entity: &str| {
        before
            .values()
            .find(|record| record["kind"] == "illegal_transition" && record["entity"]["id"] == entity)
            .and_then(|record| record["id"].as_str())
            .unwrap()
            .to_string()
    };
    let (acc_d, prj_t) = (illegal("acc_d"), illegal("prj_t"));
    let quota = before.values().find(|record| record["kind"] == "quota_breach").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, stdout, stderr) = run(&["ack", "--db", db_arg, &acc_d, "--by", "alice", "--note", "on it"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("acknowledged by alice"), "{stdout}");
    let (code, _, stderr) = run(&["ack", "--db", db_arg, &acc_d]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("acknowledged already"), "{stderr}");
    // Only kinds that never resolve by themselves are resolved by hand.
    let (code, _, stderr) = run(&["resolve", "--db", db_arg, &quota, "--by", "bob"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("resolves by itself"), "{stderr}");
    let (code, stdout, stderr) = run(&["resolve", "--db", db_arg, &prj_t, "--by", "bob"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) =
        run(&["note", "--db", db_arg, &prj_t, "state fixed in the provisioner", "--by", "carol"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, _, stderr) = run(&["ack", "--db", db_arg, "inc_0000000000000000"]);
    assert_eq!(code, Some(2), "an unknown id is a usage error: {stderr}");

    let after = records(&db);
    assert_eq!(after[&prj_t]["status"], "resolved");
    assert_eq!(after[&acc_d]["status"], "open");
    let stored = transitions(&db);
    assert!(stored.contains(&(acc_d.clone(), "acknowledged".to_string())), "{stored:?}");
    assert!(stored.contains(&(prj_t.clone(), "resolved".to_string())), "{stored:?}");
    // The timeline: who did what, with the note.
    let (code, stdout, _) = run(&["show", "--db", db_arg, &prj_t, "--format", "jsonl"]);
    assert_eq!(code, Some(0));
    let actions: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line.get("action").cloned())
        .collect();
    assert_eq!(actions.len(), 2, "{stdout}");
    assert_eq!((actions[0]["action"].as_str(), actions[0]["by"].as_str()), (Some("resolve"), Some("bob")));
    assert_eq!(actions[1]["note"], "state fixed in the provisioner");

    // Inputs, like events: rebuilding from the log keeps them, and verify agrees.
    let (code, stdout, stderr) = run(&["rebuild", "--db", db_arg, "--repair"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(records(&db), after);
    let (code, stdout, stderr) = run(&["verify", "--db", db_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The same condition again opens a new incident: the resolved one stays resolved.
    let more = dir.path().join("more.jsonl");
    let mut line = crate::common::event(
        "again-1",
        "project.provisioning_failed",
        "prj_t",
        "2026-11-27T13:00:00Z",
        serde_json::json!({"error": "again"}),
    );
    line.push(b'\n');
    std::fs::write(&more, line).unwrap();
    assert!(lifewatch(&["replay", "--db", db_arg, more.to_str().unwrap()], None).code == Some(0));
    let latest = records(&db);
    assert_eq!(latest[&prj_t]["status"], "resolved");
    let open_for_prj_t = latest
        .values()
        .filter(|record| record["kind"] == "illegal_transition" && record["entity"]["id"] == "prj_t")
        .filter(|record| record["status"] == "open")
        .count();
    assert_eq!(open_for_prj_t, 1, "{latest:#?}");
}

/// Every team escalates 2 minutes and 10 minutes after an incident opens.
const ESCALATION: &str = r#"
[[channels]]
name = "pager"
kind = "webhook"
url = "http://127.0.0.1:9/unused"

[[teams]]
name = "platform-oncall"
escalation = [{ after = "2m", notify = ["pager"] }, { after = "10m", notify = ["pager"] }]

[[teams]]
name = "accounts-oncall"
escalation = [{ after = "2m", notify = ["pager"] }, { after = "10m", notify = ["pager"] }]

[[teams]]
name = "billing-support"
escalation = [{ after = "2m", notify = ["pager"] }]
"#;

/// Replay escalates exactly as the live monitor does: the same `escalated`
/// transitions, in the same place among each incident's others. (The live
/// clock is kept out of it with a long lateness, as replay's with an early
/// `--now`: every escalation here is one that fell due before the event
/// that ended its incident.)
#[test]
fn replay_escalates_as_the_live_monitor_does() {
    use crate::nats_support::{NatsServer, started_monitor};
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("operator-escalation-replay");
    let config = crate::nats_support::write_config(
        dir.path(),
        &[
            ("allowed_lateness = \"30s\"", "allowed_lateness = \"3650d\""),
            ("max_future = \"5m\"", "max_future = \"3650d\""),
        ],
        "report_interval = \"1s\"\n",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(ESCALATION);
    std::fs::write(&config, text).unwrap();
    let fixture = crate::common::repo_root().join("fixtures/stuck.jsonl");
    let live_db = dir.path().join("live.db");
    let monitor = started_monitor(&server, &live_db, &config, &[&fixture], &[]);
    assert!(monitor.terminate().success());
    let replay_db = dir.path().join("replay.db");
    let replayed = lifewatch(
        &[
            "replay",
            "--db",
            replay_db.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--now",
            "2026-11-01T00:00:00Z",
            fixture.to_str().unwrap(),
        ],
        None,
    );
    assert!(replayed.code == Some(0), "{}", replayed.stderr);
    let per_incident = |db: &Path| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (incident, transition) in transitions(db) {
            if transition != "updated" {
                map.entry(incident).or_default().push(transition);
            }
        }
        map
    };
    let (live, replay) = (per_incident(&live_db), per_incident(&replay_db));
    assert_eq!(live, replay);
    let escalated = live.values().flatten().filter(|transition| *transition == "escalated").count();
    assert!(escalated >= 4, "the fixture's long incidents escalate: {live:#?}");
    // prj_prov was stuck from 10:21 to 10:30: the 2m step fired, the 10m one did not.
    let prj_prov = records(&live_db)
        .into_values()
        .find(|record| record["key"] == "stuck:project:prj_prov:provisioning")
        .unwrap();
    assert_eq!(live[prj_prov["id"].as_str().unwrap()], ["opened", "escalated", "resolved"], "{live:#?}");
}

/// Live, on the wall clock: an incident nobody acknowledges is sent to its
/// escalation step's channel once the step's delay (plus the lateness) has
/// passed; one acknowledged through the API is not, and its owner's channel
/// gets `acknowledged`; a restart does not escalate again.
#[test]
fn an_unacknowledged_incident_pages_its_escalation_step_and_an_ack_stops_it() {
    use crate::nats_support::{Monitor, NatsServer, free_port, wait_for};
    let server = NatsServer::start(&[]);
    let dir = TempDir::new("operator-escalation-live");
    let (pager_url, pager) = receiver(|_| reply("200 OK"));
    let (chat_url, chat) = receiver(|_| reply("200 OK"));
    let config = crate::nats_support::write_config(
        dir.path(),
        &[
            ("allowed_lateness = \"30s\"", "allowed_lateness = \"1s\""),
            ("# token = \"…\"", "token = \"op-T0KEN\""),
        ],
        "report_interval = \"1s\"\n",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[delivery]\nretry_base = \"50ms\"\n\n\
         [[channels]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{pager_url}\"\n\n\
         [[channels]]\nname = \"chat\"\nkind = \"webhook\"\nurl = \"{chat_url}\"\n\n\
         [[teams]]\nname = \"accounts-oncall\"\nroutes = [{{ channel = \"chat\" }}]\n\
         escalation = [{{ after = \"3s\", notify = [\"pager\"] }}]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let db = dir.path().join("lifewatch.db");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let monitor = Monitor::start(&server.url(), &db, &config, &["--listen", &listen]);
    // Two accounts created twice, now: two illegal_transition incidents of accounts-oncall.
    let now = lifewatch_core::Timestamp::from_unix_nanos(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64,
    )
    .to_string();
    let events = dir.path().join("events.jsonl");
    let mut lines = Vec::new();
    for (n, account) in ["acc_quiet", "acc_acked"].into_iter().enumerate() {
        for k in 0..2 {
            lines.extend(crate::common::event(
                &format!("op-{n}-{k}"),
                "account.created",
                account,
                &now,
                serde_json::json!({"plan": "free"}),
            ));
            lines.push(b'\n');
        }
    }
    std::fs::write(&events, lines).unwrap();
    crate::nats_support::publish(&server.url(), &[&events], &[]);
    let id_of = |account: &str| {
        wait_for("the illegal_transition incidents", Duration::from_secs(20), || {
            records(&db)
                .into_values()
                .find(|record| record["kind"] == "illegal_transition" && record["entity"]["id"] == account)
                .and_then(|record| record["id"].as_str().map(str::to_string))
        })
    };
    let (quiet, acked) = (id_of("acc_quiet"), id_of("acc_acked"));
    // Acknowledged through the API at once, well before its step.
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{listen}/api/incidents/{acked}/ack");
    let refused = client.post(&url).send().unwrap();
    assert_eq!(refused.status(), 401, "a bearer token is required");
    let answer = client
        .post(&url)
        .bearer_auth("op-T0KEN")
        .json(&serde_json::json!({"by": "alice", "note": "looking"}))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    let pages_for = |id: &str| {
        pager
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.body["incident"]["id"] == id)
            .map(|request| request.body["transition"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    wait_for("the quiet incident's escalation", Duration::from_secs(30), || {
        (!pages_for(&quiet).is_empty()).then_some(())
    });
    assert!(
        chat.lock().unwrap().iter().any(|request| request.body["incident"]["id"] == acked.as_str()
            && request.body["transition"] == "acknowledged"),
        "the owner's channel is told of the acknowledgement"
    );
    // Well past the step: still one page, and none for the acknowledged one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pages_for(&quiet), ["escalated"]);
    assert!(pages_for(&acked).is_empty());
    let page = pager.lock().unwrap()[0].body.clone();
    assert_eq!(page["escalation"]["step"], 1, "{page}");
    let published: Vec<Value> = crate::nats_support::stream_messages(&server.url(), "INCIDENTS")
        .iter()
        .map(|message| serde_json::from_slice(&message.payload).unwrap())
        .filter(|body: &Value| body["transition"] == "escalated")
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        (published[0]["escalation"]["step"].as_u64(), published[0]["incident"]["id"].as_str()),
        (Some(1), Some(quiet.as_str()))
    );
    // A restart refolds the escalation: nothing is sent again.
    assert!(monitor.terminate().success());
    let monitor = Monitor::start(&server.url(), &db, &config, &[]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(monitor.terminate().success());
    assert_eq!(pages_for(&quiet), ["escalated"]);
    assert!(pages_for(&acked).is_empty());
    // INCIDENTS carries both transitions.
    let stored = transitions(&db);
    assert!(stored.contains(&(quiet, "escalated".to_string())), "{stored:?}");
    assert!(stored.contains(&(acked, "acknowledged".to_string())), "{stored:?}");
}
