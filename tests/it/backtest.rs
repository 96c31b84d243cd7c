//! `lifewatch backtest`: a stored log refolded under a changed configuration,
//! read-only, and the differences in incidents named.

use serde_json::Value;

use crate::common::{TempDir, lifewatch, temp_db};

fn summary(db: &str, config: &str, extra: &[&str]) -> Value {
    let mut args = vec!["backtest", "--db", db, "--config", config, "-o", "json"];
    args.extend_from_slice(extra);
    let run = lifewatch(&args, None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_slice(&run.stdout).unwrap_or_else(|error| panic!("{error}: {}", run.stdout_text()))
}

fn count(document: &Value, change: &str) -> u64 {
    document["summary"][change].as_u64().unwrap()
}

#[test]
fn backtest_shows_what_a_changed_configuration_would_have_done() {
    let (_dir, db) = temp_db("backtest");
    let db = db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/launch-day.jsonl", "--db", db], None).assert_success();
    let bytes = std::fs::read(db).unwrap();
    let configs = TempDir::new("backtest-configs");
    let write = |name: &str, text: &str| {
        let path = configs.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    // The configuration the database was made with: nothing changes.
    let same = write("same.toml", "outage_threshold = 5\n");
    let document = summary(db, &same, &[]);
    assert!(count(&document, "current") > 50, "{}", document["summary"]);
    assert_eq!(count(&document, "current"), count(&document, "new"));
    assert!(document["differences"].as_array().unwrap().is_empty(), "{}", document["summary"]);

    // A shorter provisioning deadline opens stuck incidents that did not open.
    let shorter = write("shorter.toml", "[deadlines.project]\nprovisioning = \"5m\"\n");
    let document = summary(db, &shorter, &[]);
    assert!(count(&document, "opened") > 0, "{}", document["summary"]);
    let opened: Vec<&Value> =
        document["differences"].as_array().unwrap().iter().filter(|d| d["change"] == "opened").collect();
    // Stuck in provisioning, and the regional outages those add up to.
    assert!(opened.iter().all(|d| d["current"].is_null()));
    assert!(
        opened.iter().all(|d| (d["new"]["kind"] == "stuck" && d["new"]["state"] == "provisioning")
            || d["new"]["kind"] == "regional_outage"),
        "{opened:#?}"
    );
    assert!(opened.iter().any(|d| d["new"]["kind"] == "stuck"));
    // A longer one closes some.
    let longer = write("longer.toml", "[deadlines.project]\nprovisioning = \"2h\"\n");
    assert!(count(&summary(db, &longer, &[]), "closed") > 0);

    // Another owner and another severity: rerouted and regraded, nothing opened.
    let routed = write(
        "routed.toml",
        "[severity]\nbilling_dispute = \"error\"\n\n[[owners]]\nkinds = [\"billing_dispute\"]\nowner = \"finance-oncall\"\n\n[[owners]]\nowner = \"launch-ops\"\n",
    );
    let document = summary(db, &routed, &[]);
    assert_eq!(count(&document, "opened") + count(&document, "closed"), 0, "{}", document["summary"]);
    let disputes = document["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["current"]["kind"] == "billing_dispute")
        .collect::<Vec<_>>();
    assert!(!disputes.is_empty());
    assert!(disputes.iter().any(|d| d["change"] == "rerouted" && d["new"]["owner"] == "finance-oncall"));
    assert!(disputes.iter().any(|d| d["change"] == "regraded" && d["new"]["severity"] == "error"));

    // --since narrows the comparison to what opened from then on.
    let all = summary(db, &shorter, &[]);
    let later = summary(db, &shorter, &["--since", "2026-11-29T00:00:00Z"]);
    assert!(
        count(&later, "opened") < count(&all, "opened") && count(&later, "current") < count(&all, "current")
    );

    // The table names each difference and ends with the totals.
    let run = lifewatch(&["backtest", "--db", db, "--config", &shorter], None);
    run.assert_success();
    let text = run.stdout_text();
    assert!(text.starts_with("CHANGE") && text.contains("\nopened "), "{text}");
    assert!(text.lines().last().unwrap().starts_with("backtest: "), "{text}");

    // Nothing was written.
    assert_eq!(std::fs::read(db).unwrap(), bytes, "backtest changed the database");

    // A bad configuration: exit 2 naming the key; a missing database: an error.
    let bad = write("bad.toml", "[deadlines.project]\nprovisioning = \"soon\"\n");
    let run = lifewatch(&["backtest", "--db", db, "--config", &bad], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("deadlines.project.provisioning"), "{}", run.stderr);
    let missing = configs.join("missing.db");
    let run = lifewatch(&["backtest", "--db", missing.to_str().unwrap(), "--config", &same], None);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("missing.db"), "{}", run.stderr);
}
