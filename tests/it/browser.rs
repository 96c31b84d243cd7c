//! The dashboard in a real browser: headless Chromium loads the home page,
//! an incident page and an entity page served by `lifewatch serve`, runs
//! their script, and the DOM it ends with shows the incidents and the
//! outage banner, and nothing an event injected. Screenshots (laptop and
//! phone widths) are kept under `target/browser/` as artifacts.
//!
//! Chromium comes from Debian (`scripts/test.sh` installs it); without it
//! the test is skipped with a message, except under `CI=true`, where it
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{lifewatch, repo_root, temp_db};
use crate::web::Served;

/// The Chromium binary, or `None` (skipping) when it is not installed.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        let output = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
        output.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "chromium is not installed: scripts/test.sh installs Debian's chromium"
        );
        eprintln!("skipping the browser test: chromium is not installed");
    }
    found
}

/// Runs headless Chromium on `url` with `args`; its standard output.
fn headless(chromium: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // Lets the page's script run (its first poll is after 1 s) before the DOM is taken.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(output.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Where the screenshots go: `target/browser/` (next to the test's own temporary directory).
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser");
    std::fs::create_dir_all(&dir).expect("create target/browser");
    dir
}

/// No element an event could have injected: no image, no script but the page's own.
fn assert_nothing_injected(dom: &str, page: &str) {
    assert!(!dom.contains("<img"), "{page}: an injected element:\n{dom}");
    let scripts = dom.matches("<script").count();
    assert_eq!(scripts, 1, "{page}: a script other than /static/app.js:\n{dom}");
    assert!(dom.contains("<script src=\"/static/app.js\""), "{page}:\n{dom}");
    assert!(!dom.contains("alert(1)</script>") || dom.contains("&lt;script&gt;alert(1)"), "{page}:\n{dom}");
}

#[test]
fn the_dashboard_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let (dir, db) = temp_db("browser");
    // The regional-outage fixture up to just after the outage opened (so its
    // banner shows), with events whose source and id are hostile.
    let fixture = std::fs::read_to_string(repo_root().join("fixtures/regional_outage.jsonl")).unwrap();
    let mut lines: Vec<String> = fixture
        .lines()
        .filter(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["time"].as_str().is_some_and(|time| time < "2026-11-27T12:06:00Z")
        })
        .map(str::to_string)
        .collect();
    let quoted = |text: &str| serde_json::to_string(text).unwrap();
    lines.push(format!(
        r#"{{"specversion":"1.0","id":{},"source":{},"type":"project.requested","subject":"prj_hostile","time":"2026-11-27T12:05:00Z","data":{{"account_id":"acc_hostile","region":"eu-west-1"}}}}"#,
        quoted("\"><img src=x onerror=alert(1)>"),
        quoted("<script>alert(1)</script>")
    ));
    lines.push(format!(
        r#"{{"specversion":"1.0","id":"hostile-2","source":{},"type":"project.provisioning_failed","subject":"prj_hostile","time":"2026-11-27T12:05:30Z","data":{{"reason":{}}}}}"#,
        quoted("<script>alert(1)</script>"),
        quoted("<img src=x onerror=alert(1)>")
    ));
    let file = dir.path().join("browser.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    lifewatch(&["replay", "--db", db.to_str().unwrap(), "--quiet", file.to_str().unwrap()], None)
        .assert_success();
    let served = Served::start(&db, &[]);
    let (_, outages) = served.json("/api/outages?status=open");
    let outage = outages["outages"][0]["id"].as_str().expect("an open outage").to_string();
    let (_, hostile) = served.json("/api/incidents?entity=prj_hostile");
    let hostile = hostile["incidents"][0]["id"].as_str().expect("an incident of prj_hostile").to_string();

    let profile = dir.path().join("chromium-profile");
    let artifacts = artifacts();
    let home = headless(&chromium, &profile, &["--dump-dom"], &served.url("/"));
    assert!(
        home.contains("class=\"banner\"") && home.contains("Regional outage in"),
        "no outage banner:\n{home}"
    );
    assert!(home.contains("CRITICAL"), "severity is a word too:\n{home}");
    assert!(home.contains("prj_hostile"), "the hostile entity's incident is listed:\n{home}");
    assert!(home.contains("id=\"live\""), "{home}");
    assert_nothing_injected(&home, "/");

    for (name, path) in [
        ("incident", format!("/incidents/{outage}")),
        ("hostile-incident", format!("/incidents/{hostile}")),
        ("entity", "/entities/prj_hostile".to_string()),
    ] {
        let dom = headless(&chromium, &profile, &["--dump-dom"], &served.url(&path));
        assert_nothing_injected(&dom, &path);
        if name == "entity" {
            assert!(
                dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "the hostile source shows as text:\n{dom}"
            );
            assert!(dom.contains("project.provisioning_failed"), "{dom}");
        } else {
            assert!(dom.contains("Runbook") && dom.contains("<h2>Transitions</h2>"), "{dom}");
        }
        let shot = artifacts.join(format!("{name}.png"));
        headless(
            &chromium,
            &profile,
            &[&format!("--screenshot={}", shot.display()), "--window-size=1280,900"],
            &served.url(&path),
        );
        assert!(std::fs::metadata(&shot).is_ok_and(|metadata| metadata.len() > 10_000), "{}", shot.display());
    }
    for (name, size) in [("home", "1280,900"), ("home-phone", "390,844")] {
        let shot = artifacts.join(format!("{name}.png"));
        headless(
            &chromium,
            &profile,
            &[&format!("--screenshot={}", shot.display()), &format!("--window-size={size}")],
            &served.url("/"),
        );
        assert!(std::fs::metadata(&shot).is_ok_and(|metadata| metadata.len() > 10_000), "{}", shot.display());
    }
}
