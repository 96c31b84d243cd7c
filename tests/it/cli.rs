//! End-to-end tests of the `lifewatch` binary: input handling, exit statuses,
//! the `--now` clock, output formats, configuration errors, `check` and
//! `simulate`.

use std::collections::HashSet;
use std::path::Path;

use crate::common::{TempDir, lifewatch, lifewatch_in, replay_jsonl, repo_root, temp_db};
use serde_json::{Value, json};

fn event(id: &str, event_type: &str, subject: &str, time: &str, data: Value) -> String {
    json!({"specversion": "1.0", "id": id, "source": "test/cli", "type": event_type,
           "subject": subject, "time": time, "data": data})
    .to_string()
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.iter().map(|line| format!("{line}\n")).collect::<String>()).unwrap();
    path.to_str().unwrap().to_string()
}

/// The shipped configuration with `edit` applied to its text.
fn config_with(dir: &Path, edit: impl FnOnce(String) -> String) -> String {
    let shipped = std::fs::read_to_string(crate::common::repo_root().join("ops/lifewatch.toml")).unwrap();
    let edited = edit(shipped.clone());
    assert_ne!(edited, shipped, "the edit must change the configuration");
    let path = dir.join("lifewatch.toml");
    std::fs::write(&path, edited).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn standard_input_equals_the_file_argument() {
    let input = std::fs::read(crate::common::repo_root().join("fixtures/stuck.jsonl")).unwrap();
    let from_file = replay_jsonl(&["fixtures/stuck.jsonl"], None);
    assert!(!from_file.records().is_empty());
    let piped = lifewatch(&["replay", "--format", "jsonl"], Some(&input));
    piped.assert_success();
    assert_eq!(piped.stdout_text(), from_file.stdout_text());
    let dash = lifewatch(&["replay", "-", "--format", "jsonl"], Some(&input));
    dash.assert_success();
    assert_eq!(dash.stdout_text(), from_file.stdout_text());
}

#[test]
fn rejected_lines_are_summarised_on_stderr_and_do_not_change_the_exit_status() {
    let run = replay_jsonl(&["fixtures/bad-input.jsonl"], None);
    for expected in [
        "fixtures/bad-input.jsonl:2: rejected: malformed_json",
        "fixtures/bad-input.jsonl:6: rejected: missing_attribute",
        "fixtures/bad-input.jsonl:8: rejected: invalid_attribute",
        "fixtures/bad-input.jsonl:13: rejected: unknown_type",
        "fixtures/bad-input.jsonl:23: rejected: invalid_data",
        "fixtures/bad-input.jsonl:32: rejected: malformed_json",
    ] {
        assert!(run.stderr.contains(expected), "stderr lacks {expected:?}:\n{}", run.stderr);
    }
    assert_eq!(run.stderr.matches(": rejected: ").count(), 31, "{}", run.stderr);
    // Blank lines are skipped, not rejected.
    assert!(!run.stderr.contains("bad-input.jsonl:5:"), "{}", run.stderr);
    // The good events around the bad lines were applied.
    let kinds: Vec<String> = run.records().iter().map(|record| record["kind"].to_string()).collect();
    assert_eq!(kinds, ["\"onboarding_failed\""]);
}

fn stuck_states(run: &crate::common::Run) -> Vec<(String, String, Value)> {
    run.records()
        .iter()
        .filter(|record| record["kind"] == "stuck")
        .map(|record| {
            (
                record["state"].as_str().unwrap().to_string(),
                record["opened_at"].as_str().unwrap().to_string(),
                record["resolved_at"].clone(),
            )
        })
        .collect()
}

#[test]
fn now_judges_only_the_visits_still_open_at_the_end() {
    let dir = TempDir::new("now");
    // requested 12:00 (deadline 12:05), left at 12:10: stuck whatever --now says.
    // provisioning from 12:10 (deadline 12:25), never left: judged against --now.
    let file = write_lines(
        &dir,
        "late.jsonl",
        &[
            event("n1", "account.created", "acc_1", "2026-11-27T11:00:00Z", json!({"plan": "team"})),
            event("n2", "account.activated", "acc_1", "2026-11-27T11:01:00Z", json!({})),
            event(
                "n3",
                "project.requested",
                "prj_1",
                "2026-11-27T12:00:00Z",
                json!({"account_id": "acc_1", "region": "eu-west-1"}),
            ),
            event("n4", "project.provisioning_started", "prj_1", "2026-11-27T12:10:00Z", json!({})),
        ],
    );
    let retroactive =
        ("requested".to_string(), "2026-11-27T12:05:00Z".to_string(), json!("2026-11-27T12:10:00Z"));
    let still_open = ("provisioning".to_string(), "2026-11-27T12:25:00Z".to_string(), Value::Null);
    // Default: the latest event, 12:10.
    assert_eq!(stuck_states(&replay_jsonl(&[&file], None)), vec![retroactive.clone()]);
    // Earlier than the events: every event is still applied.
    assert_eq!(
        stuck_states(&replay_jsonl(&[&file], Some("2026-11-27T11:00:00Z"))),
        vec![retroactive.clone()]
    );
    // Exactly at the deadline: not stuck (strictly after).
    assert_eq!(
        stuck_states(&replay_jsonl(&[&file], Some("2026-11-27T12:25:00Z"))),
        vec![retroactive.clone()]
    );
    assert_eq!(
        stuck_states(&replay_jsonl(&[&file], Some("2026-11-27T13:25:00.001+01:00"))),
        [retroactive.clone(), still_open.clone()]
    );
    assert_eq!(
        stuck_states(&replay_jsonl(&[&file], Some("2026-11-28T00:00:00Z"))),
        [retroactive, still_open]
    );
}

#[test]
fn a_bad_now_is_a_usage_error() {
    let run = lifewatch(&["replay", "fixtures/stuck.jsonl", "--now", "tomorrow"], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("tomorrow"), "{}", run.stderr);
}

#[test]
fn table_format_prints_aligned_columns_without_colour_off_a_terminal() {
    let run = lifewatch(&["replay", "fixtures/regional_outage.jsonl", "--format", "table"], None);
    run.assert_success();
    let text = run.stdout_text();
    assert!(!text.contains('\x1b'), "ANSI escapes in non-terminal output:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    for column in ["ID", "STATUS", "SEVERITY", "KIND", "OWNER", "SUMMARY"] {
        assert!(header.contains(column), "header lacks {column}: {header}");
    }
    // The table lists the open incidents first (see replay_cli.rs).
    let mut records = replay_jsonl(&["fixtures/regional_outage.jsonl"], None).records();
    records.sort_by_key(|record| !record["resolved_at"].is_null());
    let rows: Vec<&str> = lines.iter().skip(1).filter(|line| line.starts_with("inc_")).copied().collect();
    assert_eq!(rows.len(), records.len());
    // Every column starts at the same offset in every row as in the header.
    for column in ["STATUS", "SEVERITY", "KIND", "OWNER", "SUMMARY"] {
        let start = header.find(column).unwrap();
        for row in &rows {
            let before = &row[..start];
            assert!(before.ends_with("  "), "column {column} is not aligned in {row:?}");
            assert_ne!(&row[start..start + 1], " ", "column {column} is not aligned in {row:?}");
        }
    }
    let kind_start = header.find("KIND").unwrap();
    for (row, record) in rows.iter().zip(&records) {
        assert!(row[kind_start..].starts_with(record["kind"].as_str().unwrap()), "{row}");
        assert!(row.starts_with(record["id"].as_str().unwrap()), "{row}");
    }
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    type Case = (&'static str, fn(String) -> String, &'static [&'static str]);
    let cases: [Case; 3] = [
        (
            "unknown key",
            |text| text.replace("outage_threshold = 5", "outage_treshold = 5"),
            &["outage_treshold"],
        ),
        (
            "bad duration",
            |text| text.replace("pending = \"15m\"", "pending = \"15 minutes\""),
            &["deadlines.account.pending", "15 minutes"],
        ),
        (
            "no catch-all owner",
            |text| {
                let last = text.rfind("[[owners]]").unwrap();
                let end = text[last..].find("\n\n").map_or(text.len(), |end| last + end);
                format!("{}{}", &text[..last], &text[end..])
            },
            &["owners"],
        ),
    ];
    for (what, edit, names) in cases {
        let dir = TempDir::new("config");
        let config = config_with(&dir, edit);
        for args in
            [vec!["replay", "fixtures/stuck.jsonl", "--config", &config], vec!["check", "--config", &config]]
        {
            let run = lifewatch(&args, None);
            assert_eq!(run.code, Some(2), "{what}: {args:?}: {}", run.stderr);
            assert!(run.stdout.is_empty(), "{what}: printed records with a bad configuration");
            for name in names {
                assert!(run.stderr.contains(name), "{what}: message does not name {name:?}:\n{}", run.stderr);
            }
        }
    }
    // The unedited file is fine.
    let dir = TempDir::new("config-ok");
    let path = dir.join("lifewatch.toml");
    std::fs::copy(crate::common::repo_root().join("ops/lifewatch.toml"), &path).unwrap();
    replay_jsonl(&["fixtures/stuck.jsonl", "--config", path.to_str().unwrap()], None);
}

#[test]
fn check_passes_on_the_shipped_package_and_lists_missing_runbooks() {
    let run = lifewatch(&["check"], None);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout_text(), run.stderr);
    let explicit = lifewatch(&["check", "--config", "ops/lifewatch.toml", "--root", "."], None);
    assert_eq!(explicit.code, Some(0), "{}", explicit.stderr);

    let empty = TempDir::new("empty-root");
    let run = lifewatch(&["check", "--root", empty.to_str().unwrap()], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for kind in [
        "stuck",
        "provisioning_failed",
        "onboarding_failed",
        "quota_breach",
        "billing_dispute",
        "illegal_transition",
        "invariant_violation",
        "regional_outage",
    ] {
        let runbook = format!("ops/runbooks/{kind}.md");
        assert!(
            run.stderr.lines().any(|line| line.contains("missing") && line.contains(&runbook)),
            "no line names the missing {runbook}:\n{}",
            run.stderr
        );
    }
    // Run from elsewhere, the built-in configuration still finds its runbooks
    // (the default root is the configuration's, not the working directory).
    let run = lifewatch_in(&empty, &["check"], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn a_line_over_one_mebibyte_is_rejected_as_too_large_without_stopping_the_stream() {
    let dir = TempDir::new("too-large");
    let huge = format!(
        "{{\"specversion\":\"1.0\",\"id\":\"big\",\"padding\":\"{}\"}}",
        "x".repeat(lifewatch_core::MAX_LINE_BYTES)
    );
    let file = write_lines(
        &dir,
        "huge.jsonl",
        &[
            event("h1", "account.created", "acc_1", "2026-11-27T12:00:00Z", json!({"plan": "free"})),
            huge,
            event(
                "h2",
                "account.onboarding_failed",
                "acc_1",
                "2026-11-27T12:01:00Z",
                json!({"reason": "kyc"}),
            ),
        ],
    );
    let run = replay_jsonl(&[&file], None);
    assert!(run.stderr.contains("huge.jsonl:2: rejected: too_large"), "{}", run.stderr);
    assert_eq!(run.stderr.matches(": rejected: ").count(), 1, "{}", run.stderr);
    let records = run.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["kind"], "onboarding_failed");
    // The same through standard input.
    let piped = lifewatch(&["replay", "--format", "jsonl"], Some(&std::fs::read(&file).unwrap()));
    piped.assert_success();
    assert_eq!(piped.stdout_text(), run.stdout_text());
    assert!(piped.stderr.contains(":2: rejected: too_large"), "{}", piped.stderr);
}

#[test]
fn an_empty_file_gives_no_incidents() {
    let dir = TempDir::new("empty");
    let path = dir.join("empty.jsonl");
    std::fs::write(&path, "").unwrap();
    let run = replay_jsonl(&[path.to_str().unwrap()], None);
    assert!(run.stdout.is_empty(), "{}", run.stdout_text());
    let table = lifewatch(&["replay", path.to_str().unwrap(), "--format", "table"], None);
    table.assert_success();
    let stdin = lifewatch(&["replay", "--format", "jsonl"], Some(b""));
    stdin.assert_success();
    assert!(stdin.stdout.is_empty());
}

#[test]
fn a_nonexistent_file_exits_1_naming_it() {
    let run = lifewatch(&["replay", "fixtures/no-such-file.jsonl", "--format", "jsonl"], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("fixtures/no-such-file.jsonl"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn simulate_is_deterministic_and_faults_bring_malformed_lines_and_duplicates() {
    let args = ["simulate", "--seed", "7", "--accounts", "40", "--faults"];
    let first = lifewatch(&args, None);
    first.assert_success();
    let second = lifewatch(&args, None);
    second.assert_success();
    assert!(first.stdout.len() > 1000);
    assert!(first.stdout == second.stdout, "the same seed gave different streams");
    let other = lifewatch(&["simulate", "--seed", "8", "--accounts", "40", "--faults"], None);
    assert!(other.stdout != first.stdout, "different seeds gave the same stream");

    let dir = TempDir::new("simulate");
    let out = dir.join("sim.jsonl");
    let to_file = lifewatch(
        &["simulate", "--seed", "7", "--accounts", "40", "--faults", "--out", out.to_str().unwrap()],
        None,
    );
    to_file.assert_success();
    assert!(std::fs::read(&out).unwrap() == first.stdout, "--out differs from standard output");

    let mut rejected = 0;
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for line in first.stdout.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
        match lifewatch_core::parse_event(line) {
            Ok(event) => {
                if !seen.insert(event.id.to_string()) {
                    duplicates += 1;
                }
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(rejected > 0, "--faults produced no malformed line");
    assert!(duplicates > 0, "--faults produced no duplicate");

    let clean = lifewatch(&["simulate", "--seed", "7", "--accounts", "40"], None);
    clean.assert_success();
    let replay = lifewatch(&["replay", "--format", "jsonl"], Some(&clean.stdout));
    replay.assert_success();
    assert!(
        !replay.stderr.contains(": rejected: "),
        "a fault-free stream had rejected lines:\n{}",
        replay.stderr
    );
}

/// With one core, replay parses on the caller's thread instead of the
/// pipeline's second thread; both paths must print and report the same.
#[test]
fn one_core_and_two_threads_give_the_same_replay() {
    let files = ["fixtures/launch-day.jsonl", "fixtures/bad-input.jsonl", "fixtures/regional_outage.jsonl"];
    let threaded = crate::common::replay_jsonl(&files, None);
    let output = std::process::Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_lifewatch"), "replay"])
        .args(files)
        .args(["--format", "jsonl"])
        .current_dir(crate::common::repo_root())
        .output()
        .expect("taskset (util-linux) runs lifewatch on one core");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!threaded.stdout.is_empty());
    assert_eq!(output.stdout, threaded.stdout, "records differ between one core and two threads");
    assert_eq!(String::from_utf8_lossy(&output.stderr), threaded.stderr, "rejected-line summaries differ");
}

/// The subcommands listed in a `--help` text (its `Commands:` section), but `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_help_ends_with_examples() {
    let top = lifewatch(&["--help"], None);
    top.assert_success();
    let mut commands: Vec<Vec<String>> =
        subcommands(&top.stdout_text()).into_iter().map(|name| vec![name]).collect();
    assert!(commands.len() >= 12, "{}", top.stdout_text());
    let mut index = 0;
    while index < commands.len() {
        let mut args: Vec<&str> = commands[index].iter().map(String::as_str).collect();
        args.push("--help");
        let run = lifewatch(&args, None);
        run.assert_success();
        let help = run.stdout_text();
        assert!(help.contains("\nExamples:\n  lifewatch "), "{args:?} has no examples:\n{help}");
        // Nested commands (`report stuck`) are checked too.
        for nested in subcommands(&help) {
            let mut path = commands[index].clone();
            path.push(nested);
            commands.push(path);
        }
        index += 1;
    }
    assert!(commands.iter().any(|path| path == &["report", "stuck"]), "{commands:?}");
}

#[test]
fn version_and_completions() {
    let version = lifewatch(&["--version"], None);
    version.assert_success();
    let text = version.stdout_text();
    assert!(text.starts_with(&format!("lifewatch {}", env!("CARGO_PKG_VERSION"))), "{text}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = lifewatch(&["completions", shell], None);
        run.assert_success();
        assert!(run.stdout_text().contains("lifewatch"), "{shell}: {}", run.stdout_text());
        assert!(run.stdout_text().contains("replay"), "{shell}: no subcommands");
    }
    let unknown = lifewatch(&["completions", "tcsh"], None);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
}

#[test]
fn bad_live_and_nats_sections_exit_2_naming_the_key() {
    let dir = TempDir::new("config-app");
    let config =
        config_with(&dir, |text| text.replace("allowed_lateness = \"30s\"", "allowed_lateness = \"soon\""));
    let run = lifewatch(&["check", "--config", &config], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("live.allowed_lateness"), "{}", run.stderr);
    let missing = dir.join("missing.toml");
    let run = lifewatch(&["replay", "fixtures/stuck.jsonl", "--config", missing.to_str().unwrap()], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("bad configuration") && run.stderr.contains("missing.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_rate_that_cannot_work_is_a_usage_error() {
    // Refused before any connection is tried: nothing listens on port 1.
    let run = lifewatch(&["simulate", "--nats", "nats://127.0.0.1:1", "--rate", "0"], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--rate"), "{}", run.stderr);
}

#[test]
fn replay_memory_stays_flat_whatever_the_share_of_bad_lines() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    // Two million junk lines under a 256 MiB address-space limit: the build
    // that kept every rejected line until the end (about 150 bytes each)
    // ran out of memory here and printed nothing but the allocation failure;
    // streaming each rejection to standard error needs a fixed amount.
    const LINES: u64 = 2_000_000;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 262144 && exec \"$0\" replay -")
        .arg(env!("CARGO_BIN_EXE_lifewatch"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sh");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let writer = std::thread::spawn(move || {
        let chunk = b"x\n".repeat(100_000);
        for _ in 0..LINES / 100_000 {
            if pipe.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    // Standard error is read as it comes, keeping only a count and the ends.
    let stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (mut count, mut first, mut last) = (0u64, String::new(), String::new());
    for line in stderr.lines() {
        let line = line.expect("stderr is text");
        count += 1;
        if count == 1 {
            first = line.clone();
        }
        last = line;
    }
    writer.join().expect("stdin writer panicked");
    let status = child.wait().expect("cannot wait for lifewatch");
    assert_eq!(status.code(), Some(0), "first: {first}\nlast: {last}");
    assert_eq!(first, "<stdin>:1: rejected: malformed_json: expected value at line 1 column 1");
    assert_eq!(count, LINES + 1, "a line per rejection, then the totals");
    assert_eq!(
        last,
        format!(
            "replay: {LINES} lines, 0 accepted, 0 duplicates, {LINES} rejected (malformed_json {LINES}); 0 entities"
        )
    );
}

/// `check` refuses runbook paths that are absolute or lead out of the
/// runbook root, by `..` or through a symbolic link, even when the file
/// they name exists: a runbook link must stay inside the operations package.
#[test]
fn check_refuses_runbook_paths_outside_the_root() {
    let root = TempDir::new("runbook-root");
    let runbooks = root.join("ops/runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    for entry in std::fs::read_dir(crate::common::repo_root().join("ops/runbooks")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), runbooks.join(entry.file_name())).unwrap();
    }
    std::fs::remove_file(runbooks.join("stuck.md")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", runbooks.join("stuck.md")).unwrap();
    let config_dir = TempDir::new("runbook-config");
    let config = config_with(&config_dir, |text| {
        text.replace("quota_breach = \"ops/runbooks/quota_breach.md\"", "quota_breach = \"/etc/passwd\"")
            .replace(
                "billing_dispute = \"ops/runbooks/billing_dispute.md\"",
                "billing_dispute = \"../../../../../../../../etc/passwd\"",
            )
    });
    let run =
        lifewatch(&["check", "--config", &config, "--root", root.to_str().unwrap(), "--config-only"], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for kind in ["stuck", "quota_breach", "billing_dispute"] {
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains(&format!("runbook of {kind} ")) && line.contains("outside")),
            "no line refuses the runbook of {kind}:\n{}",
            run.stderr
        );
    }
    assert_eq!(run.stderr.lines().count(), 3, "only those three:\n{}", run.stderr);
}

/// A duration with a unit repeated (`15m15m`, which would add up to 30m) or
/// units out of order (`5m1h`), and owner or plan names with control
/// characters (which would reach terminals and pagers as escape sequences),
/// are configuration errors naming the key.
#[test]
fn repeated_duration_units_and_control_characters_are_refused() {
    type Case = (&'static str, fn(String) -> String, &'static [&'static str]);
    let cases: [Case; 4] = [
        (
            "repeated unit",
            |text| text.replace("pending = \"15m\"", "pending = \"15m15m\""),
            &["deadlines.account.pending", "15m15m"],
        ),
        (
            "units out of order",
            |text| text.replace("pending = \"15m\"", "pending = \"5m1h\""),
            &["deadlines.account.pending", "5m1h"],
        ),
        (
            "control character in an owner",
            |text| text.replacen("owner = \"accounts-oncall\"", "owner = \"accounts\\u001b[31m-oncall\"", 1),
            &["owners[0].owner", "control character"],
        ),
        (
            "control character in a plan name",
            |text| text.replace("free = { max_projects", "\"fr\\u0007ee\" = { max_projects"),
            &["plans.", "control character"],
        ),
    ];
    for (what, edit, names) in cases {
        let dir = TempDir::new("config");
        let config = config_with(&dir, edit);
        for args in
            [vec!["replay", "fixtures/stuck.jsonl", "--config", &config], vec!["check", "--config", &config]]
        {
            let run = lifewatch(&args, None);
            assert_eq!(run.code, Some(2), "{what}: {args:?}: {}", run.stderr);
            for name in names {
                assert!(run.stderr.contains(name), "{what}: message does not name {name:?}:\n{}", run.stderr);
            }
        }
    }
}

/// A UTF-8 byte order mark at the very start of the input (editors add one)
/// is skipped: a file or standard input that starts with one gives the same
/// incidents as without it, in `replay` and in `replay --db`, and no line is
/// rejected.
#[test]
fn a_byte_order_mark_at_the_start_of_the_input_is_skipped() {
    let dir = TempDir::new("bom");
    let plain = crate::common::repo_root().join("fixtures/provisioning_failed.jsonl");
    let text = std::fs::read(&plain).unwrap();
    let bom_path = dir.join("bom.jsonl");
    std::fs::write(&bom_path, [b"\xEF\xBB\xBF".as_slice(), &text].concat()).unwrap();
    let plain = plain.to_str().unwrap();
    let bom = bom_path.to_str().unwrap();
    let now = "2030-01-01T00:00:00Z";

    let expected = replay_jsonl(&[plain], Some(now));
    let from_file = replay_jsonl(&[bom], Some(now));
    assert!(
        !from_file.stderr.contains("rejected: ") && from_file.stderr.contains(" 0 rejected"),
        "{}",
        from_file.stderr
    );
    assert_eq!(from_file.records(), expected.records(), "the file with a BOM");
    let from_stdin =
        lifewatch(&["replay", "-", "--now", now, "--format", "jsonl"], Some(&std::fs::read(bom).unwrap()));
    from_stdin.assert_success();
    assert!(from_stdin.stderr.contains(" 0 rejected"), "{}", from_stdin.stderr);
    assert_eq!(from_stdin.records(), expected.records(), "standard input with a BOM");

    let mut stored = Vec::new();
    for (name, file) in [("plain", plain), ("bom", bom)] {
        let db = dir.join(format!("{name}.db"));
        let db = db.to_str().unwrap();
        let run = lifewatch(&["replay", file, "--now", now, "--db", db], None);
        run.assert_success();
        assert!(run.stderr.contains(" 0 rejected"), "{name}: {}", run.stderr);
        let incidents = lifewatch(&["incidents", "--db", db, "--format", "jsonl"], None);
        incidents.assert_success();
        stored.push(incidents.records());
    }
    assert!(!stored[0].is_empty(), "the fixture gives incidents");
    assert_eq!(stored[0], stored[1], "replay --db of the file with a BOM");
}

/// `LIFEWATCH_DB` stands in for `--db` on the commands that read a database,
/// `--db` wins over it, and it does not switch `replay` into persisting.
#[test]
fn lifewatch_db_environment_variable_gives_the_database() {
    let (dir, db) = temp_db("env-db");
    let db = db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/stuck.jsonl", "--db", db], None).assert_success();
    let with_env = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifewatch"))
            .args(args)
            .current_dir(repo_root())
            .env("LIFEWATCH_DB", db)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let expected = lifewatch(&["incidents", "--db", db, "--format", "jsonl"], None);
    expected.assert_success();
    assert!(!expected.records().is_empty(), "the fixture gives incidents");
    assert_eq!(with_env(&["incidents", "--format", "jsonl"]), (Some(0), expected.stdout_text()));
    let (code, _) = with_env(&["report", "stuck"]);
    assert_eq!(code, Some(0));

    let missing = dir.path().join("missing.db");
    let (code, _) = with_env(&["incidents", "--db", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1), "--db wins over LIFEWATCH_DB (and a missing database is an error)");

    let other = dir.path().join("never-created.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(["replay", "fixtures/stuck.jsonl"])
        .current_dir(repo_root())
        .env("LIFEWATCH_DB", &other)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(!other.exists(), "replay without --db stays in memory whatever LIFEWATCH_DB says");
}
