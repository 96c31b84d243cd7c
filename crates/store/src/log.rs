//! Refolding the log: the engine's state is a function of the accepted events
//! in arrival order and the clock ticks between them, so parsing every stored
//! payload again and replaying the ticks at their positions restores it exactly.

use std::path::Path;

use lifewatch_core::{Config, Engine, Timestamp, parse_event};
use rusqlite::Connection;

use crate::error::{Context, StoreError};

/// What restoring an engine from the log found.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct RestoreStats {
    /// Events refolded.
    pub events: u64,
    /// Clock ticks replayed.
    pub ticks: u64,
    /// Stored events that this version no longer accepts (validation got
    /// stricter since they were stored); they are left in the log and skipped.
    pub no_longer_valid: u64,
    /// The seq of the last event in the log (0 when empty).
    pub last_seq: i64,
}

/// Events refolded between two calls of a progress callback.
const PROGRESS_EVENTS: u64 = 8192;

/// Builds an engine on `config` from the log of `connection`.
pub(crate) fn refold(
    connection: &Connection,
    path: &Path,
    config: Config,
) -> Result<(Engine, RestoreStats), StoreError> {
    refold_with_progress(connection, path, config, None)
}

/// [`refold`], calling `progress` with the events refolded so far and the
/// events in the log, at the start, every few thousand events and at the end
/// (the total is read only when there is a `progress` to tell).
pub(crate) fn refold_with_progress(
    connection: &Connection,
    path: &Path,
    config: Config,
    mut progress: Option<&mut dyn FnMut(u64, u64)>,
) -> Result<(Engine, RestoreStats), StoreError> {
    let total: u64 = match progress {
        Some(_) => connection
            .query_row("SELECT coalesce(sum(count), 0) FROM event_blocks", [], |row| row.get::<_, i64>(0))
            .context(path, "count the events of the log")?
            .try_into()
            .unwrap_or(0),
        None => 0,
    };
    if let Some(progress) = progress.as_mut() {
        progress(0, total);
    }
    let mut engine = Engine::new(config);
    let mut stats = RestoreStats::default();
    let ticks: Vec<(i64, i64, i64)> = connection
        .prepare("SELECT after_seq, id, now FROM ticks ORDER BY id")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .context(path, "read the clock ticks")?;
    // Ticks and operator actions between events, in the order they were
    // applied: by the event they followed, then a tick `id` before an
    // action that followed tick `id` (key 2 id < 2 id + 1) before tick `id + 1`.
    let mut between: Vec<(i64, i64, Between)> = ticks
        .into_iter()
        .map(|(after_seq, id, now)| (after_seq, 2 * id, Between::Tick(Timestamp::from_unix_nanos(now))))
        .chain(
            crate::operator::applied(connection, path)?
                .into_iter()
                .map(|action| (action.after_seq, 2 * action.after_tick + 1, Between::Action(action))),
        )
        .collect();
    between.sort_by_key(|(after_seq, key, _)| (*after_seq, *key));
    let mut between = between.into_iter().peekable();
    let apply = |engine: &mut Engine, stats: &mut RestoreStats, item: Between| match item {
        Between::Tick(now) => {
            engine.handle_time(now);
            stats.ticks += 1;
        }
        Between::Action(action) => {
            // A refusal now (another configuration made other incidents)
            // leaves the action stored and without effect, as it would
            // have been refused had it been asked then.
            if let Some(index) = engine.find_incident(&action.incident_id, action.slot) {
                let _refused = match action.action {
                    crate::ActionKind::Ack => engine.acknowledge(index),
                    crate::ActionKind::Resolve => engine.resolve_by_operator(index, action.requested_at),
                    crate::ActionKind::Note => Ok(()),
                };
            }
        }
    };
    crate::blocks::BlockReader::new(path)?.for_each(connection, path, |seq, _, payload| {
        while let Some((_, _, item)) = between.next_if(|&(after_seq, _, _)| after_seq < seq) {
            apply(&mut engine, &mut stats, item);
        }
        match parse_event(payload) {
            Ok(event) => {
                engine.handle_event(&event);
                stats.events += 1;
            }
            Err(_) => stats.no_longer_valid += 1,
        }
        stats.last_seq = seq;
        let done = stats.events + stats.no_longer_valid;
        if done % PROGRESS_EVENTS == 0
            && let Some(progress) = progress.as_mut()
        {
            progress(done, total);
        }
        Ok(())
    })?;
    if let Some(progress) = progress.as_mut() {
        progress(stats.events + stats.no_longer_valid, total);
    }
    for (_, _, item) in between {
        apply(&mut engine, &mut stats, item);
    }
    Ok((engine, stats))
}

/// What comes between two events of the log.
enum Between {
    Tick(Timestamp),
    Action(crate::operator::Applied),
}
