//! What the `engine` and `time` benchmarks share: the simulated stream they
//! measure and the whole per-event cost (`parse_event` + `handle_event`), so
//! that both report that figure from the same code in their own run.

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup};
use lifewatch_core::{Config, Engine, parse_event};
use lifewatch_sim::{SimulateOptions, Simulator};

/// The lines of a simulated `--faults` stream over `accounts` accounts,
/// malformed ones included, as a consumer reads them.
pub fn lines(accounts: u64) -> Vec<String> {
    let options = SimulateOptions { seed: 7, accounts, faults: true, ..Default::default() };
    Simulator::new(options).map(|line| line.line).collect()
}

/// Adds `lifewatch_parse_and_apply` to `group`: every line parsed and, when
/// valid, applied to a fresh engine with the shipped configuration.
pub fn bench_parse_and_apply(group: &mut BenchmarkGroup<'_, WallTime>, lines: &[String]) {
    group.bench_function("lifewatch_parse_and_apply", |b| {
        b.iter_batched(
            || Engine::new(Config::shipped()),
            |mut engine| {
                for line in lines {
                    if let Ok(event) = parse_event(line.as_bytes()) {
                        engine.handle_event(&event);
                    }
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
}
