//! Operator actions: a person acknowledges an incident, resolves one by hand
//! or adds a note (`lifewatch ack|resolve|note`, the API's POSTs).
//!
//! An action is an input, like an event: once applied it is kept at its
//! place in the log (after which event and which clock tick), refolding
//! applies it there again, and `rebuild` keeps it. Anyone may ask for one
//! ([`request`]: a row in `requested` state, without the writer's lock); the
//! single [`Writer`](crate::Writer) applies what was asked
//! ([`Writer::apply_operator_requests`](crate::Writer::apply_operator_requests)),
//! and the row becomes `applied` or `refused` (with the reason) in the
//! transaction that stores the transitions it made.

use std::path::Path;

use lifewatch_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Context, StoreError};
use crate::schema::{self, Access, Durability};

/// The most bytes of a note or a name kept (longer ones are cut, with the
/// cut marked): they are shown on pages and sent in messages.
pub const MAX_OPERATOR_TEXT: usize = 2048;

/// What a person does to an incident.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Acknowledge: I am on it; escalation stops.
    Ack,
    /// Resolve by hand (kinds that never resolve by themselves).
    Resolve,
    /// A note on the incident's timeline.
    Note,
}

impl ActionKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Ack => "ack",
            ActionKind::Resolve => "resolve",
            ActionKind::Note => "note",
        }
    }

    fn parse(name: &str) -> Option<ActionKind> {
        [ActionKind::Ack, ActionKind::Resolve, ActionKind::Note]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One operator action as stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct OperatorAction {
    /// Its id.
    pub id: i64,
    /// The incident.
    pub incident_id: String,
    /// What was asked.
    pub action: ActionKind,
    /// Who asked.
    pub by: String,
    /// The note given with it.
    pub note: Option<String>,
    /// When it was asked (wall clock).
    pub requested_at: Timestamp,
    /// `requested` (the writer has not applied it yet), `applied` or `refused`.
    pub state: String,
    /// Why it was refused.
    pub refusal: Option<String>,
}

const COLUMNS: &str = "id, incident_id, action, by, note, requested_at_ms, state, refusal";

fn action(row: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorAction> {
    let name: String = row.get(2)?;
    Ok(OperatorAction {
        id: row.get(0)?,
        incident_id: row.get(1)?,
        action: ActionKind::parse(&name).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, name.into())
        })?,
        by: row.get(3)?,
        note: row.get(4)?,
        requested_at: Timestamp::from_unix_nanos(row.get::<_, i64>(5)?.saturating_mul(1_000_000)),
        state: row.get(6)?,
        refusal: row.get(7)?,
    })
}

/// Why `action` cannot apply to the incident of `detail`, checked before
/// asking (the writer checks again when it applies it, against the engine).
pub fn refusal_before_asking(detail: &crate::query::IncidentDetail, action: ActionKind) -> Option<String> {
    use lifewatch_core::{IncidentKind, Status};
    let kind = detail.record.kind;
    let acknowledged =
        detail.actions.iter().any(|done| done.action == ActionKind::Ack && done.state == "applied");
    match action {
        ActionKind::Note => None,
        _ if detail.record.status == Status::Resolved => Some("the incident is resolved already".into()),
        ActionKind::Ack if acknowledged => Some("the incident is acknowledged already".into()),
        ActionKind::Resolve
            if !matches!(kind, IncidentKind::IllegalTransition | IncidentKind::InvariantViolation) =>
        {
            Some(format!(
                "a {kind} incident resolves by itself when its condition ends; only illegal_transition \
                 and invariant_violation incidents are resolved by hand"
            ))
        }
        _ => None,
    }
}

/// Text from a person, bounded and without control characters but newlines.
pub fn clean_text(text: &str) -> String {
    let mut cleaned: String =
        text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect::<String>();
    lifewatch_core::cut_text(&mut cleaned, MAX_OPERATOR_TEXT);
    cleaned
}

/// Asks for an action on `incident_id` (the writer applies it). Does not
/// take the writer's lock: it waits for a running writer's commit at most
/// the busy timeout. Returns the request's id.
pub fn request(
    path: &Path,
    incident_id: &str,
    action: ActionKind,
    by: &str,
    note: Option<&str>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound { path: path.to_path_buf() });
    }
    let mut connection = schema::connect(path, Access::ReadWrite, Durability::Full)?;
    schema::check_and_migrate(&mut connection, path, Access::ReadOnly)?;
    connection
        .execute(
            "INSERT INTO operator_actions(incident_id, action, by, note, requested_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, 'requested')",
            params![
                incident_id,
                action.as_str(),
                clean_text(by),
                note.map(clean_text),
                now.unix_nanos() / 1_000_000
            ],
        )
        .context(path, "store the request")?;
    Ok(connection.last_insert_rowid())
}

/// The action of id `id`, as it stands.
pub fn action_state(path: &Path, id: i64) -> Result<Option<OperatorAction>, StoreError> {
    let connection = schema::connect(path, Access::ReadOnly, Durability::Full)?;
    connection
        .query_row(&format!("SELECT {COLUMNS} FROM operator_actions WHERE id = ?1"), [id], action)
        .optional()
        .context(path, "read an operator action")
}

/// Every action on `incident_id`, oldest first.
pub(crate) fn actions_of(
    connection: &Connection,
    path: &Path,
    incident_id: &str,
) -> Result<Vec<OperatorAction>, StoreError> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM operator_actions WHERE incident_id = ?1 ORDER BY id"))
        .and_then(|mut statement| statement.query_map([incident_id], action)?.collect())
        .context(path, "read operator actions")
}

/// Requests not applied yet with an id above `after`, oldest first.
pub(crate) fn requested_after(
    connection: &Connection,
    path: &Path,
    after: i64,
) -> Result<Vec<OperatorAction>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM operator_actions WHERE state = 'requested' AND id > ?1 ORDER BY id"
        ))
        .and_then(|mut statement| statement.query_map([after], action)?.collect())
        .context(path, "read operator requests")
}

/// What the writer decided about a request, written at the next commit.
#[derive(Clone, Debug)]
pub(crate) struct Decided {
    pub(crate) id: i64,
    pub(crate) refusal: Option<String>,
    /// The last seq fed when it was applied.
    pub(crate) after_seq: i64,
    /// How many of the batch's pending ticks came before it.
    pub(crate) ticks_before: usize,
    /// The incident's index in the engine, a hint for refolding.
    pub(crate) slot: Option<u32>,
}

/// Writes the decisions of a batch; `first_tick` is the id its first pending
/// tick got (ticks are written first).
pub(crate) fn write_decisions(
    connection: &Connection,
    path: &Path,
    decided: &[Decided],
    first_tick: i64,
) -> Result<(), StoreError> {
    let mut update = connection
        .prepare_cached(
            "UPDATE operator_actions SET state = ?2, refusal = ?3, after_seq = ?4, after_tick = ?5, slot = ?6
             WHERE id = ?1",
        )
        .context(path, "prepare the operator update")?;
    for decision in decided {
        let state = if decision.refusal.is_some() { "refused" } else { "applied" };
        // The last tick before it: the batch's `ticks_before`-th, or the
        // last one of earlier batches.
        let after_tick = first_tick - 1 + decision.ticks_before as i64;
        update
            .execute(params![
                decision.id,
                state,
                decision.refusal,
                decision.after_seq,
                after_tick,
                decision.slot
            ])
            .context(path, "store an operator action's outcome")?;
    }
    Ok(())
}

/// An applied action, as refolding replays it.
pub(crate) struct Applied {
    pub(crate) incident_id: String,
    pub(crate) action: ActionKind,
    pub(crate) requested_at: Timestamp,
    pub(crate) after_seq: i64,
    pub(crate) after_tick: i64,
    pub(crate) slot: Option<u32>,
}

/// The applied actions that change the engine (acks and resolutions), in
/// log order.
pub(crate) fn applied(connection: &Connection, path: &Path) -> Result<Vec<Applied>, StoreError> {
    connection
        .prepare(
            "SELECT incident_id, action, requested_at_ms, after_seq, after_tick, slot FROM operator_actions
             WHERE state = 'applied' AND action IN ('ack', 'resolve') ORDER BY after_seq, after_tick, id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| {
                    let name: String = row.get(1)?;
                    Ok(Applied {
                        incident_id: row.get(0)?,
                        action: ActionKind::parse(&name).unwrap_or(ActionKind::Note),
                        requested_at: Timestamp::from_unix_nanos(
                            row.get::<_, i64>(2)?.saturating_mul(1_000_000),
                        ),
                        after_seq: row.get(3)?,
                        after_tick: row.get(4)?,
                        slot: row.get(5)?,
                    })
                })?
                .collect()
        })
        .context(path, "read the operator actions")
}
