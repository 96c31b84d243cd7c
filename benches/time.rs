//! RFC 3339 parsing (criterion): lifewatch's `Timestamp::parse_rfc3339`
//! against chrono and jiff on the `time` attributes of a simulated `--faults`
//! stream (the replay stream's generator and seed), and, for scale, the whole
//! per-event cost (`parse_event` + `handle_event`) of the same stream, so that
//! the share of time parsing can be read off.
//!
//! `parse_rfc3339` reads the canonical form (`YYYY-MM-DDTHH:MM:SS[.f]Z` or
//! `±HH:MM`) by hand and gives everything else to chrono, with lifewatch's own
//! refusals; `chrono_parse_from_rfc3339` is chrono alone, which is what
//! lifewatch did before the fast path. Why the fast path exists is next to it
//! in `crates/core/src/time.rs`, the figures in `docs/benchmarks.md`.
//!
//! `cargo bench --bench time -- --warm-up-time 1 --measurement-time 3`;
//! compare the medians: the `time` group parses one string per event, the
//! `event` group does all of an event's work.

use std::str::FromStr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lifewatch_core::Timestamp;

mod common;

/// The `time` attribute of every line that is a JSON object with one, as the
/// consumer sees it (including the malformed times the simulator injects).
fn times(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(value.get("time")?.as_str()?.to_owned())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    // About 270,000 lines, malformed ones included: a replay-sized stream.
    let lines = common::lines(25_000);
    let times = times(&lines);

    let mut group = c.benchmark_group("time");
    group.throughput(Throughput::Elements(times.len() as u64));
    group.sample_size(20);
    group.bench_function("lifewatch_parse_rfc3339", |b| {
        b.iter(|| times.iter().filter_map(|text| Timestamp::parse_rfc3339(text)).count())
    });
    group.bench_function("chrono_parse_from_rfc3339", |b| {
        b.iter(|| times.iter().filter_map(|text| chrono::DateTime::parse_from_rfc3339(text).ok()).count())
    });
    group.bench_function("jiff_timestamp_from_str", |b| {
        b.iter(|| times.iter().filter_map(|text| jiff::Timestamp::from_str(text).ok()).count())
    });
    group.finish();

    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    common::bench_parse_and_apply(&mut group, &lines);
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
