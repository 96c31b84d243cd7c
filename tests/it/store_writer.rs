//! The store API as the drivers use it, on real SQLite files in a temp dir.

use lifewatch_core::{Config, RejectReason, Rejection, Timestamp};
use lifewatch_store::{Fed, Store, StoreError, Writer, WriterOptions};

use crate::common::{database_rows, event, temp_db};

/// A project that gets stuck in provisioning, an account, and a few more.
fn lifecycle(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    for index in 0..count {
        let account = format!("acc_{prefix}{index}");
        let project = format!("prj_{prefix}{index}");
        let minute =
            |m: usize| format!("2026-11-27T{:02}:{:02}:00Z", 10 + (index + m) / 60, (index + m) % 60);
        events.push(event(
            &format!("{prefix}-{index}-1"),
            "account.created",
            &account,
            &minute(0),
            serde_json::json!({"plan": "free"}),
        ));
        events.push(event(
            &format!("{prefix}-{index}-2"),
            "account.activated",
            &account,
            &minute(1),
            serde_json::json!(null),
        ));
        events.push(event(
            &format!("{prefix}-{index}-3"),
            "project.requested",
            &project,
            &minute(2),
            serde_json::json!({"account_id": account, "region": "eu-west-1"}),
        ));
        events.push(event(
            &format!("{prefix}-{index}-4"),
            "project.provisioning_started",
            &project,
            &minute(3),
            serde_json::json!({}),
        ));
    }
    events
}

#[test]
fn a_reopened_writer_restores_the_engine_exactly() {
    let (_dir, path) = temp_db("restore");
    let events = lifecycle("a", 50);
    let expected = {
        let mut writer = Writer::open(&path, Config::shipped()).unwrap();
        for (number, raw) in events.iter().enumerate() {
            assert_eq!(writer.feed(raw, &format!("input:{number}")), Fed::Accepted);
            if number == 100 {
                writer.tick(Timestamp::parse_rfc3339("2026-11-27T10:40:00Z").unwrap());
                writer.commit().unwrap();
            }
        }
        writer.tick(Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap());
        let committed = writer.commit().unwrap();
        assert_eq!(committed.events, events.len() as u64 - 101);
        assert_eq!(committed.ticks, 1);
        writer.engine().records()
    };
    assert!(expected.iter().any(|record| record.kind.as_str() == "stuck"));

    let mut writer = Writer::open(&path, Config::shipped()).unwrap();
    assert_eq!(writer.engine().records(), expected);
    assert_eq!(writer.restore_stats().events, events.len() as u64);
    assert_eq!(writer.restore_stats().ticks, 2);
    // Everything is a duplicate now, and nothing needs committing.
    for raw in &events {
        assert_eq!(writer.feed(raw, "again"), Fed::Duplicate);
    }
    assert_eq!(writer.commit().unwrap(), Default::default());
    drop(writer);

    let store = Store::open_read_only(&path).unwrap();
    let stored = store.incidents(&Default::default()).unwrap();
    assert_eq!(stored, expected);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn the_outbox_holds_every_transition_until_delivered() {
    let (_dir, path) = temp_db("outbox");
    let mut writer = Writer::open(&path, Config::shipped()).unwrap();
    for raw in lifecycle("o", 3) {
        writer.feed(&raw, "input");
    }
    writer.tick(Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap());
    let committed = writer.commit().unwrap();
    let pending = writer.pending_outbox(0, 100).unwrap();
    assert_eq!(pending.len() as u64, committed.transitions);
    assert!(pending.iter().all(|entry| entry.transition == "opened"));
    assert!(pending[0].subject.starts_with("incidents.stuck.project."));
    let payload: serde_json::Value = serde_json::from_str(&pending[0].payload).unwrap();
    assert_eq!(payload["transition"], "opened");
    assert_eq!(payload["incident"]["id"].as_str(), Some(pending[0].incident_id.as_str()));

    writer.mark_delivered(&[pending[0].id]).unwrap();
    let rest = writer.pending_outbox(0, 100).unwrap();
    assert_eq!(rest.len(), pending.len() - 1);
    assert_eq!(rest[0].id, pending[1].id);
    // A publisher reads on from the last id it sent.
    let after = writer.pending_outbox(pending[1].id, 100).unwrap();
    assert_eq!(after.len(), pending.len() - 2);
    assert!(after.iter().all(|entry| entry.id > pending[1].id));

    // A resolution is queued after the openings, in order.
    writer.feed(
        &event("o-0-5", "project.provisioned", "prj_o0", "2026-11-27T12:05:00Z", serde_json::json!({})),
        "x",
    );
    writer.commit().unwrap();
    let last = writer.pending_outbox(0, 100).unwrap();
    assert_eq!(last.last().map(|entry| entry.transition.as_str()), Some("resolved"));
}

#[test]
fn a_second_writer_in_the_same_process_is_refused() {
    let (_dir, path) = temp_db("lock");
    let _writer = Writer::open(&path, Config::shipped()).unwrap();
    match Writer::open(&path, Config::shipped()) {
        Err(StoreError::Locked { holder, .. }) => {
            assert!(holder.starts_with(&format!("pid {} started 20", std::process::id())), "{holder}")
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second writer was allowed"),
    }
    // Readers are welcome.
    Store::open_read_only(&path).unwrap().summary().unwrap();
}

#[test]
fn a_second_writer_through_a_symbolic_link_is_refused_and_hard_links_are_refused() {
    let (dir, path) = temp_db("lock-links");
    let writer = Writer::open(&path, Config::shipped()).unwrap();
    let symlink = dir.join("other-name.db");
    std::os::unix::fs::symlink(&path, &symlink).unwrap();
    match Writer::open(&symlink, Config::shipped()) {
        Err(StoreError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second writer was let in through a symbolic link"),
    }
    drop(writer);
    let hard_link = dir.join("hard-link.db");
    std::fs::hard_link(&path, &hard_link).unwrap();
    for name in [&path, &hard_link] {
        match Writer::open(name, Config::shipped()) {
            Err(error @ StoreError::Lock { .. }) => {
                assert!(error.to_string().contains("2 hard links"), "{error}")
            }
            Err(other) => panic!("expected a refused lock, got {other}"),
            Ok(_) => panic!("a writer was let in on a file with two hard links"),
        }
    }
}

/// A writer on `path` whose database may grow by only a few pages: the next
/// sizeable batch fails as on a full disk.
fn nearly_full(path: &std::path::Path) -> Writer {
    let size = std::fs::metadata(path).unwrap().len()
        + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    let pages = (size / 4096) as u32 + 4;
    let options = WriterOptions { max_page_count: Some(pages), ..WriterOptions::default() };
    Writer::open_with(path, Config::shipped(), options).unwrap()
}

#[test]
fn a_full_disk_fails_the_batch_and_keeps_what_was_committed() {
    let (_dir, path) = temp_db("full");
    let events = lifecycle("f", 400);
    let committed_records = {
        let mut writer = Writer::open(&path, Config::shipped()).unwrap();
        for raw in &events[..40] {
            writer.feed(raw, "input");
        }
        writer.commit().unwrap();
        writer.engine().records()
    };
    let mut writer = nearly_full(&path);
    for raw in &events[40..] {
        writer.feed(raw, "input");
    }
    let error = writer.commit().expect_err("the batch cannot fit");
    assert!(matches!(error, StoreError::DiskFull { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("disk full"), "{message}");
    // The writer refuses to go on with an engine ahead of the database.
    assert!(matches!(writer.commit(), Err(StoreError::Poisoned { .. })));
    drop(writer);

    let writer = Writer::open(&path, Config::shipped()).unwrap();
    assert_eq!(writer.engine().records(), committed_records);
    assert_eq!(writer.restore_stats().events, 40);
    assert_eq!(Store::open_read_only(&path).unwrap().integrity_check().unwrap(), "ok");
}

#[test]
fn redrive_moves_inputs_that_are_now_valid_into_the_log() {
    let (_dir, path) = temp_db("redrive");
    let mut writer = Writer::open(&path, Config::shipped()).unwrap();
    let good =
        event("r-1", "account.created", "acc_r", "2026-11-27T10:00:00Z", serde_json::json!({"plan": "team"}));
    // A driver's own rule rejected it (say, too far in the future then).
    writer.reject(&good, &Rejection::new(RejectReason::TimeInFuture, "2h ahead of the wall clock"), "nats:1");
    assert!(matches!(writer.feed(b"{not json", "nats:2"), Fed::Rejected(_)));
    writer.commit().unwrap();

    let summary = writer.redrive(Some(RejectReason::TimeInFuture)).unwrap();
    assert_eq!((summary.tried, summary.accepted), (1, 1));
    assert!(writer.engine().has_seen("r-1"));
    let summary = writer.redrive(None).unwrap();
    assert_eq!((summary.tried, summary.still_rejected), (1, 1));
    drop(writer);

    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(store.summary().unwrap().events, 1);
    let left = store.rejected(None, None, false).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reason, "malformed_json");
    let all = store.rejected(None, None, true).unwrap();
    assert_eq!(all[0].redriven.as_deref(), Some("accepted as event 1"));
    assert_eq!(store.events_of("acc_r").unwrap()[0].payload, good);
    let writer = Writer::open(&path, Config::shipped()).unwrap();
    assert!(writer.engine().has_seen("r-1"));
}

#[test]
fn an_entitys_events_are_listed_across_batches_and_rebuild_checks_the_lists() {
    let (_dir, path) = temp_db("lists");
    let events = lifecycle("l", 30);
    {
        let mut writer = Writer::open(&path, Config::shipped()).unwrap();
        // Batches that split entities' events (an account's two events fall
        // in different batches for some).
        for (number, raw) in events.iter().enumerate() {
            assert_eq!(writer.feed(raw, &format!("input:{number}")), Fed::Accepted);
            if number % 7 == 0 {
                writer.commit().unwrap();
            }
        }
        writer.commit().unwrap();
    }
    let expected_of = |subject: &str| -> Vec<(i64, Vec<u8>)> {
        events
            .iter()
            .enumerate()
            .filter(|(_, raw)| {
                serde_json::from_slice::<serde_json::Value>(raw).unwrap()["subject"] == subject
            })
            .map(|(index, raw)| (index as i64 + 1, raw.clone()))
            .collect()
    };
    let store = Store::open_read_only(&path).unwrap();
    for subject in ["acc_l0", "prj_l0", "acc_l13", "prj_l29"] {
        let stored: Vec<(i64, Vec<u8>)> =
            store.events_of(subject).unwrap().into_iter().map(|event| (event.seq, event.payload)).collect();
        assert_eq!(stored, expected_of(subject), "{subject}");
    }
    let (engine, _) = store.restore(Config::shipped()).unwrap();
    assert_eq!(store.compare(&engine).unwrap(), vec![]);
    drop(store);

    // A list that lost an event: rebuild names it, and repair recomputes it.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute("UPDATE entities SET events = x'' WHERE id = 'prj_l13'", []).unwrap();
    drop(connection);
    let store = Store::open_read_only(&path).unwrap();
    let differences = store.compare(&engine).unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(differences[0].to_string().contains("events 0 stored, 2 from the log"), "{}", differences[0]);
    assert_eq!(store.events_of("prj_l13").unwrap(), vec![]);
    drop(store);
    let mut writer = Writer::open(&path, Config::shipped()).unwrap();
    assert_eq!(writer.repair().unwrap().len(), 1);
    drop(writer);
    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(store.compare(&engine).unwrap(), vec![]);
    assert_eq!(store.events_of("prj_l13").unwrap().len(), 2);
}

#[test]
fn background_commits_store_what_commits_store() {
    let events = lifecycle("b", 300);
    let feed_all = |path: &std::path::Path, background: bool| {
        let mut writer = Writer::open(path, Config::shipped()).unwrap();
        let mut committed = 0;
        for (number, raw) in events.iter().enumerate() {
            writer.feed(raw, "input");
            if number % 97 == 96 {
                writer.tick(Timestamp::parse_rfc3339("2026-11-27T10:30:00Z").unwrap());
                let result = if background { writer.commit_in_background() } else { writer.commit() };
                committed += result.unwrap().events;
            }
        }
        writer.tick(Timestamp::parse_rfc3339("2026-11-27T18:00:00Z").unwrap());
        // `commit` waits for the batches in flight, then writes the last one.
        committed += writer.commit().unwrap().events;
        if background {
            // What background commits stored is reported by the next call.
            assert!(committed < events.len() as u64, "{committed}");
        } else {
            assert_eq!(committed, events.len() as u64);
        }
        writer.engine().records()
    };
    let ((_direct_dir, direct), (_background_dir, background)) = (temp_db("direct"), temp_db("background"));
    let records = feed_all(&direct, false);
    assert!(records.iter().any(|record| record.kind.as_str() == "stuck"));
    assert_eq!(feed_all(&background, true), records);
    assert_eq!(
        database_rows(&background, &["meta", "checkpoints"]),
        database_rows(&direct, &["meta", "checkpoints"])
    );
    let store = Store::open_read_only(&background).unwrap();
    assert_eq!(store.incidents(&Default::default()).unwrap(), records);
    assert_eq!(store.summary().unwrap().events, events.len() as i64);
    let writer = Writer::open(&background, Config::shipped()).unwrap();
    assert_eq!(writer.engine().records(), records);
}

#[test]
fn a_failed_background_commit_is_reported_and_poisons_the_writer() {
    let (_dir, path) = temp_db("background-full");
    let events = lifecycle("g", 400);
    {
        let mut writer = Writer::open(&path, Config::shipped()).unwrap();
        for raw in &events[..40] {
            writer.feed(raw, "input");
        }
        writer.commit().unwrap();
    }
    let mut writer = nearly_full(&path);
    for raw in &events[40..] {
        writer.feed(raw, "input");
    }
    // Handed over: the failure shows at the next call that waits for it.
    writer.commit_in_background().expect("the batch is handed over");
    let error = writer.flush().expect_err("the batch cannot fit");
    assert!(matches!(error, StoreError::DiskFull { .. }), "{error}");
    assert!(matches!(writer.commit_in_background(), Err(StoreError::Poisoned { .. })));
    assert!(matches!(writer.commit(), Err(StoreError::Poisoned { .. })));
    drop(writer);
    let writer = Writer::open(&path, Config::shipped()).unwrap();
    assert_eq!(writer.restore_stats().events, 40);
}

#[test]
fn a_large_batch_compressed_on_a_second_thread_reads_back_byte_for_byte() {
    // 6,400 events in one commit: the log blocks are compressed on a thread
    // of their own while the rest of the batch is written.
    let events: Vec<Vec<u8>> =
        ["large", "wide"].into_iter().flat_map(|prefix| lifecycle(prefix, 800)).collect();
    let (_dir, path) = temp_db("large-batch");
    let mut writer = Writer::open(&path, Config::shipped()).unwrap();
    for raw in &events {
        writer.feed(raw, "input");
    }
    writer.tick(Timestamp::parse_rfc3339("2026-11-27T18:00:00Z").unwrap());
    assert_eq!(writer.commit().unwrap().events, events.len() as u64);
    let records = writer.engine().records();
    drop(writer);

    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(store.summary().unwrap().events, events.len() as i64);
    for (prefix, offset) in [("large", 0), ("wide", 800)] {
        for index in [0, 1, 399, 799] {
            let first = (offset + index) * 4;
            for (subject, own) in [
                (format!("acc_{prefix}{index}"), first..first + 2),
                (format!("prj_{prefix}{index}"), first + 2..first + 4),
            ] {
                let stored: Vec<Vec<u8>> =
                    store.events_of(&subject).unwrap().into_iter().map(|event| event.payload).collect();
                assert_eq!(stored, events[own].to_vec(), "{subject}");
            }
        }
    }
    assert_eq!(store.incidents(&Default::default()).unwrap(), records);
    let writer = Writer::open(&path, Config::shipped()).unwrap();
    assert_eq!(writer.engine().records(), records);
    assert_eq!(Store::open_read_only(&path).unwrap().compare(writer.engine()).unwrap(), vec![]);
}
