//! `lifewatch serve` over databases filled from the fixtures: the JSON API,
//! its errors, the OpenAPI document against the routes, the token, the
//! security headers and hostile event strings in the pages.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{TempDir, lifewatch, temp_db};
use crate::nats_support::{free_port, wait_for};

/// A `lifewatch serve` child on a free port, killed (by its pid) on drop.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Served {
    /// Serves `db` with extra environment variables, waiting until `/healthz` answers.
    pub fn start(db: &Path, env: &[(&str, &str)]) -> Served {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_lifewatch"));
        command
            .args(["serve", "--db"])
            .arg(db)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("LIFEWATCH_WEB_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start lifewatch serve");
        let served = Served { child, base: format!("http://127.0.0.1:{port}") };
        let client = client();
        wait_for("lifewatch serve to answer /healthz", Duration::from_secs(20), || {
            client.get(served.url("/healthz")).send().ok().filter(|answer| answer.status() == 200)
        });
        served
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`: the status and the body as JSON (`Value::Null` when the body is not JSON).
    pub fn json(&self, path: &str) -> (u16, Value) {
        let answer = client().get(self.url(path)).send().expect("a response");
        let status = answer.status().as_u16();
        (status, answer.json().unwrap_or(Value::Null))
    }

    /// GET `path`: the status and the body as text.
    pub fn text(&self, path: &str) -> (u16, String) {
        let answer = client().get(self.url(path)).send().expect("a response");
        (answer.status().as_u16(), answer.text().expect("a body"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("an HTTP client")
}

/// A database of `fixtures/launch-day.jsonl`.
fn launch_day() -> (TempDir, std::path::PathBuf) {
    let (dir, db) = temp_db("web");
    lifewatch(&["replay", "fixtures/launch-day.jsonl", "--db", db.to_str().unwrap()], None).assert_success();
    (dir, db)
}

#[test]
fn the_api_answers_what_the_cli_prints() {
    let (_dir, db) = launch_day();
    let db_arg = db.to_str().unwrap();
    let served = Served::start(&db, &[]);

    // Every incident, page by page (newest first), is what `incidents` lists.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/incidents?limit=7&cursor={cursor}"),
            None => "/api/incidents?limit=7".to_string(),
        };
        let (status, page) = served.json(&path);
        assert_eq!(status, 200, "{page}");
        let incidents = page["incidents"].as_array().expect("incidents");
        assert!(incidents.len() <= 7);
        ids.extend(incidents.iter().map(|record| record["id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let listed = lifewatch(&["incidents", "--db", db_arg, "--format", "jsonl"], None);
    let mut expected: Vec<String> = listed
        .assert_success()
        .records()
        .iter()
        .map(|record| record["id"].as_str().unwrap().to_string())
        .collect();
    assert!(expected.len() > 14 && pages > 2, "{} incidents in {pages} pages", expected.len());
    let mut got = ids.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "the pages hold every incident once");

    // Filters narrow; the open ones are those `incidents --status open` lists.
    let (_, open) = served.json("/api/incidents?status=open&limit=1000");
    let open_cli = lifewatch(&["incidents", "--db", db_arg, "--status", "open", "--format", "jsonl"], None);
    assert_eq!(open["incidents"].as_array().unwrap().len(), open_cli.assert_success().records().len());
    assert!(open["incidents"].as_array().unwrap().iter().all(|record| record["status"] == "open"));

    // One incident with its transitions; its entity with its timeline.
    let first = &ids[0];
    let (status, detail) = served.json(&format!("/api/incidents/{first}"));
    assert_eq!(status, 200);
    assert_eq!(detail["record"]["id"], first.as_str());
    assert_eq!(detail["transitions"][0]["transition"], "opened", "{detail}");
    let entity = detail["record"]["entity"]["id"].as_str().unwrap().to_string();
    if detail["record"]["entity"]["type"] != "region" {
        let (status, shown) = served.json(&format!("/api/entities/{entity}"));
        assert_eq!(status, 200, "{shown}");
        assert!(!shown["timeline"].as_array().unwrap().is_empty(), "{shown}");
        assert!(shown["incidents"].as_array().unwrap().iter().any(|record| record["id"] == first.as_str()));
    }

    // Outages are the regional_outage incidents.
    let (status, outages) = served.json("/api/outages");
    assert_eq!(status, 200);
    let outages = outages["outages"].as_array().unwrap();
    assert!(!outages.is_empty() && outages.iter().all(|record| record["kind"] == "regional_outage"));
}

#[test]
fn the_stuck_report_is_the_cli_s_and_the_home_page_lists_it() {
    let (_dir, db) = temp_db("web-stuck");
    let db_arg = db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/stuck.jsonl", "--db", db_arg], None).assert_success();
    let served = Served::start(&db, &[]);
    for now in [None, Some("2027-01-01T00:00:00Z")] {
        let (path, mut args) = match now {
            Some(now) => (format!("/api/report/stuck?now={now}"), vec!["--now", now]),
            None => ("/api/report/stuck".to_string(), vec![]),
        };
        let (status, report) = served.json(&path);
        assert_eq!(status, 200, "{report}");
        args.extend(["report", "stuck", "--db", db_arg, "--format", "jsonl"]);
        args.rotate_left(if now.is_some() { 2 } else { 0 });
        let cli = lifewatch(&args, None);
        let expected = cli.assert_success().records();
        assert!(!expected.is_empty(), "{now:?}: the fixture has stuck entities");
        assert_eq!(report["entities"].as_array().unwrap(), &expected, "{now:?}");
    }
    // The home page lists the open stuck incident with its entity, and the
    // entity page its timeline.
    let (status, home) = served.text("/");
    assert_eq!(status, 200);
    assert!(home.contains("prj_open") && home.contains("Stuck entities"), "{home}");
    let (status, entity) = served.text("/entities/prj_open");
    assert_eq!(status, 200);
    assert!(entity.contains("project.provisioning_started") && entity.contains("provisioning"), "{entity}");
}

#[test]
fn bad_input_is_a_named_400_and_unknown_ids_404() {
    let (_dir, db) = launch_day();
    let served = Served::start(&db, &[]);
    for (path, parameter) in [
        ("/api/incidents?limit=0", "limit"),
        ("/api/incidents?limit=1001", "limit"),
        ("/api/incidents?limit=ten", "limit"),
        ("/api/incidents?status=closed", "status"),
        ("/api/incidents?kind=fire", "kind"),
        ("/api/incidents?severity=huge", "severity"),
        ("/api/incidents?since=yesterday", "since"),
        ("/api/incidents?cursor=abc", "cursor"),
        ("/api/incidents?colour=red", "colour"),
        ("/api/report/stuck?now=soon", "now"),
        ("/api/outages?status=maybe", "status"),
        ("/?severity=%3Cscript%3E", "severity"),
    ] {
        let (status, body) = served.json(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{path}: {message}");
    }
    for path in
        ["/api/incidents/inc_nope", "/api/entities/nobody", "/incidents/inc_nope", "/entities/x", "/nowhere"]
    {
        let (status, body) = served.json(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let long = format!("/api/incidents?owner={}", "x".repeat(5000));
    assert_eq!(served.json(&long).0, 414);
}

#[test]
fn every_documented_route_exists() {
    let (_dir, db) = launch_day();
    let served = Served::start(&db, &[]);
    let (_, page) = served.json("/api/incidents?limit=1");
    let incident = page["incidents"][0]["id"].as_str().unwrap().to_string();
    let (_, detail) = served.json(&format!("/api/incidents/{incident}"));
    let entity = detail["record"]["entity"]["id"].as_str().unwrap().to_string();
    let (status, document) = served.json("/api/openapi.json");
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{document}");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    for (path, operations) in paths {
        let concrete = path.replace("{id}", if path.contains("entities") { &entity } else { &incident });
        if operations.get("post").is_some() {
            // An operator action: the route exists, and without a configured
            // token it is refused as such (403), never 404 or 405.
            let answer = client().post(served.url(&concrete)).send().unwrap();
            assert_eq!(answer.status().as_u16(), 403, "{path} is documented but answers {}", answer.status());
            continue;
        }
        assert!(operations.get("get").is_some(), "{path}");
        let answer = client().get(served.url(&concrete)).send().unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path} is documented but answers {}", answer.status());
    }
    // The answers hold what the document says: a page of incidents checked
    // against its schema, the incident record's among its components.
    let schema = serde_json::json!({
        "$ref": "#/components/schemas/IncidentPageBody",
        "components": document["components"],
    });
    let validator = jsonschema::validator_for(&schema).expect("the document's schemas compile");
    let (_, page) = served.json("/api/incidents?limit=50");
    let errors: Vec<String> = validator.iter_errors(&page).map(|error| error.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut broken = page.clone();
    broken["incidents"][0]["severity"] = serde_json::json!("catastrophic");
    assert!(!validator.is_valid(&broken), "the record schema is enforced");
    // And every route the server has is documented (pages and assets aside).
    for path in [
        "/api/incidents",
        "/api/incidents/{id}",
        "/api/entities/{id}",
        "/api/report/stuck",
        "/api/outages",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}

#[test]
fn a_token_guards_everything_but_the_probes() {
    let (_dir, db) = launch_day();
    let served = Served::start(&db, &[("LIFEWATCH_WEB_TOKEN", "t0ken-for-the-test")]);
    let client = client();
    for path in ["/", "/api/incidents", "/metrics", "/api/openapi.json", "/static/app.css"] {
        let answer = client.get(served.url(path)).send().unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{path}");
        let wrong = client.get(served.url(path)).bearer_auth("t0ken-for-the-tesT").send().unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
        let right = client.get(served.url(path)).bearer_auth("t0ken-for-the-test").send().unwrap();
        assert_eq!(right.status().as_u16(), 200, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(client.get(served.url(path)).send().unwrap().status().as_u16(), 200, "{path}");
    }
    // A browser opens ?access_token= once and keeps a cookie; the token leaves the URL.
    let no_redirect =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = no_redirect.get(served.url("/?access_token=t0ken-for-the-test")).send().unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!answer.headers()["location"].to_str().unwrap().contains("t0ken"));
    let pair = cookie.split(';').next().unwrap();
    let with_cookie = client.get(served.url("/")).header("cookie", pair).send().unwrap();
    assert_eq!(with_cookie.status().as_u16(), 200);
}

#[test]
fn hostile_event_strings_render_as_text() {
    let (dir, db) = temp_db("web-hostile");
    let script = "<script>alert(1)</script>";
    let image = "\"><img src=x onerror=alert(2)>";
    // Subjects are restricted to [A-Za-z0-9_-]; ids, sources and data strings are not.
    let quoted = |text: &str| serde_json::to_string(text).unwrap();
    let lines = [
        format!(
            r#"{{"specversion":"1.0","id":{},"source":{},"type":"project.requested","subject":"prj_h","time":"2026-11-27T12:00:00Z","data":{{"account_id":{},"region":{}}}}}"#,
            quoted(image),
            quoted(script),
            quoted(script),
            quoted(image)
        ),
        format!(
            r#"{{"specversion":"1.0","id":"ev-2","source":{},"type":"project.provisioning_failed","subject":"prj_h","time":"2026-11-27T12:01:00Z","data":{{"reason":{}}}}}"#,
            quoted(script),
            quoted(script)
        ),
        // Rejected (no data), shown on the entity page as text.
        format!(
            r#"{{"specversion":"1.0","id":{},"source":{},"type":"project.provisioned","subject":"prj_h","time":"2026-11-27T12:02:00Z"}}"#,
            quoted(script),
            quoted(image)
        ),
    ];
    let file = dir.path().join("hostile.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let replayed = lifewatch(&["replay", file.to_str().unwrap(), "--db", db.to_str().unwrap()], None);
    replayed.assert_success();
    let served = Served::start(&db, &[]);
    let (_, page) = served.json("/api/incidents?limit=10");
    let record = page["incidents"]
        .as_array()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("an incident: {page}"));
    let id = record["id"].as_str().unwrap();
    for path in
        ["/".to_string(), "/?status=".to_string(), format!("/incidents/{id}"), "/entities/prj_h".to_string()]
    {
        let (status, html) = served.text(&path);
        assert_eq!(status, 200, "{path}: {html}");
        assert!(!html.contains("<script>alert"), "{path} carries a script: {html}");
        assert!(!html.contains("<img"), "{path} carries an injected element: {html}");
        if path.contains("entities") {
            assert!(
                html.contains("&lt;img src=x") && html.contains("&lt;script&gt;"),
                "{path} does not show them: {html}"
            );
        }
    }
    // The invariant violation's communication templates quote the hostile
    // account id: escaped on the page, as is in JSON.
    let (_, page) = served.json("/api/incidents?kind=invariant_violation");
    let failed = page["incidents"][0]["id"].as_str().unwrap_or_else(|| panic!("{page}")).to_string();
    let (status, html) = served.text(&format!("/incidents/{failed}"));
    assert_eq!(status, 200);
    assert!(!html.contains("<img"), "{html}");
    let comms_section =
        html.split("id=\"comms\"").nth(1).unwrap_or_else(|| panic!("no comms section: {html}"));
    assert!(comms_section.contains("&lt;script&gt;alert(1)"), "{comms_section}");
    let (status, comms) = served.json(&format!("/api/incidents/{failed}/comms"));
    assert_eq!(status, 200);
    assert!(comms[4]["text"].as_str().unwrap().contains(script), "JSON carries the text as is: {comms}");
}

#[test]
fn pages_and_answers_carry_the_security_headers() {
    let (_dir, db) = launch_day();
    let served = Served::start(&db, &[]);
    for path in ["/", "/api/incidents", "/nowhere"] {
        let answer = client().get(served.url(path)).send().unwrap();
        let headers = answer.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

#[test]
fn serve_refuses_a_missing_database() {
    let dir = TempDir::new("web-missing");
    let missing = dir.path().join("nope.db");
    let run = lifewatch(&["serve", "--db", missing.to_str().unwrap(), "--listen", "127.0.0.1:0"], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("nope.db"), "{}", run.stderr);
    assert!(!missing.exists());
}

#[test]
fn the_changes_version_moves_with_every_commit() {
    let (_dir, db) = temp_db("web-changes");
    let db_arg = db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/stuck.jsonl", "--db", db_arg], None).assert_success();
    let served = Served::start(&db, &[]);
    let (status, before) = served.json("/api/changes");
    assert_eq!(status, 200);
    assert_eq!(served.json("/api/changes").1, before, "nothing was committed");
    // A page carries the version it was rendered at, which its script compares.
    let (_, home) = served.text("/");
    assert!(home.contains(&format!("data-version=\"{}\"", before["version"].as_str().unwrap())), "{home}");
    // Another writer commits: the version moves.
    lifewatch(&["replay", "fixtures/provisioning_failed.jsonl", "--db", db_arg], None).assert_success();
    let (_, after) = served.json("/api/changes");
    assert_ne!(after, before);
}
