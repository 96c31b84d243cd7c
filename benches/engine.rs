//! Engine apply rate (criterion): parse + validate + apply of simulated
//! `--faults` lines, against the baseline the issue names: serde_json decoding
//! the same lines into owned, typed envelopes (attributes as `String`s, `time`
//! as a chrono instant, `data` as a `serde_json::Value`).
//!
//! `cargo bench --bench engine` — both groups run side by side in one process;
//! compare their throughput (elements/s). The end-to-end figure (file in,
//! records out) comes from `benches/replay.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lifewatch_core::parse_event;

mod common;

#[path = "common/envelope.rs"]
mod envelope;
use envelope::OwnedEnvelope;

fn bench(c: &mut Criterion) {
    let lines = common::lines(5_000);
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function("baseline_serde_owned_decode", |b| {
        b.iter(|| {
            let mut decoded = 0usize;
            for line in &lines {
                if let Ok(envelope) = serde_json::from_str::<OwnedEnvelope>(line) {
                    decoded += envelope.id.len();
                }
            }
            decoded
        })
    });
    common::bench_parse_and_apply(&mut group, &lines);
    group.bench_function("lifewatch_parse_only", |b| {
        b.iter(|| lines.iter().filter(|line| parse_event(line.as_bytes()).is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
