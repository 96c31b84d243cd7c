//! `lifewatch ack`, `lifewatch resolve` and `lifewatch note`: a person acts
//! on an incident.
//!
//! The action is stored as a request in the database; the single writer
//! applies it. While `lifewatch run` holds the database, the monitor does
//! (within half a second) and this command waits for its answer; otherwise
//! this command opens the writer itself, which needs the monitor's
//! configuration (`--config`): under another one it would derive every
//! incident again, so it leaves the request queued instead and says so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use lifewatch_store::{ActionKind, OperatorAction, Store, StoreError, Writer};

use crate::commands::ConfigArg;
use crate::error::UsageError;
use crate::output::terminal_safe;

/// The `Examples:` section of `lifewatch ack --help`.
pub const ACK_EXAMPLES: &str = "Examples:
  lifewatch ack --db /tmp/lifewatch.db inc_1a2b3c4d5e6f7a8b --by alice --note \"looking at the provisioner\"
  LIFEWATCH_DB=/tmp/lifewatch.db lifewatch ack inc_1a2b3c4d5e6f7a8b

Acknowledging stops the escalation chain and sends `acknowledged` through the
owner's channels (a PagerDuty acknowledge). While `lifewatch run` holds the
database, the monitor applies it within a second.";

/// The `Examples:` section of `lifewatch resolve --help`.
pub const RESOLVE_EXAMPLES: &str = "Examples:
  lifewatch resolve --db /tmp/lifewatch.db inc_1a2b3c4d5e6f7a8b --by alice --note \"state fixed by hand\"

Only illegal_transition and invariant_violation incidents are resolved by
hand; every other kind resolves when its condition ends.";

/// The `Examples:` section of `lifewatch note --help`.
pub const NOTE_EXAMPLES: &str = "Examples:
  lifewatch note --db /tmp/lifewatch.db inc_1a2b3c4d5e6f7a8b \"customer informed by support\" --by bob";

/// How long the command waits for a running monitor to apply the request.
const MONITOR_WAIT: Duration = Duration::from_secs(10);

/// `lifewatch ack` and `lifewatch resolve` arguments.
#[derive(Args)]
pub struct ActArgs {
    /// The incident's id (`inc_…`, from `lifewatch incidents` or the dashboard).
    id: String,
    /// The database.
    #[arg(long, env = "LIFEWATCH_DB", value_name = "PATH")]
    db: PathBuf,
    /// Who acts (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// A note kept with the action on the incident's timeline.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

/// `lifewatch note` arguments.
#[derive(Args)]
pub struct NoteArgs {
    /// The incident's id.
    id: String,
    /// The note.
    text: String,
    /// The database.
    #[arg(long, env = "LIFEWATCH_DB", value_name = "PATH")]
    db: PathBuf,
    /// Who writes it (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

/// `lifewatch ack`.
pub fn ack(args: ActArgs) -> anyhow::Result<ExitCode> {
    act(&args.db, &args.id, ActionKind::Ack, args.by, args.note.as_deref(), &args.config)
}

/// `lifewatch resolve`.
pub fn resolve(args: ActArgs) -> anyhow::Result<ExitCode> {
    act(&args.db, &args.id, ActionKind::Resolve, args.by, args.note.as_deref(), &args.config)
}

/// `lifewatch note`.
pub fn note(args: NoteArgs) -> anyhow::Result<ExitCode> {
    if args.text.trim().is_empty() {
        anyhow::bail!(UsageError::Option { option: "TEXT", message: "the note is empty".into() });
    }
    act(&args.db, &args.id, ActionKind::Note, args.by, Some(&args.text), &args.config)
}

/// Who acts when `--by` is not given.
fn default_actor(by: Option<String>) -> String {
    by.filter(|by| !by.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

fn act(
    db: &Path,
    id: &str,
    action: ActionKind,
    by: Option<String>,
    note: Option<&str>,
    config: &ConfigArg,
) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(db)?;
    let Some(detail) = lifewatch_store::query::incident(&store, id)? else {
        anyhow::bail!(UsageError::Option {
            option: "ID",
            message: format!("no incident {} in {}", terminal_safe(id), db.display()),
        });
    };
    if let Some(reason) = lifewatch_store::refusal_before_asking(&detail, action) {
        eprintln!("lifewatch: {}: {reason}", detail.record.id);
        return Ok(ExitCode::FAILURE);
    }
    drop(store);
    let by = default_actor(by);
    let request = lifewatch_store::request_operator_action(db, id, action, &by, note, super::wall_clock())?;
    let app = config.load()?;
    let decided = if lifewatch_store::derived_under(db, &app.engine)? {
        match Writer::open(db, app.engine.clone()) {
            Err(StoreError::Locked { .. }) => wait_for_monitor(db, request)?,
            Err(error) => return Err(error.into()),
            Ok(writer) => apply_now(writer, &app)?,
        }
    } else {
        // Opening the writer under this configuration would derive every
        // incident again: only a monitor running with its own may apply it.
        let decided = wait_for_monitor(db, request)?;
        if decided.as_ref().is_none_or(|action| action.state == "requested") {
            eprintln!(
                "lifewatch: request {request} queued: {} was written under another configuration and no \
                 monitor applied it; run this again with the monitor's --config to apply it now, or \
                 `lifewatch run` applies it when it starts",
                db.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        decided
    };
    Ok(report(&decided))
}

/// Opens the writer and applies every waiting request (this one included).
fn apply_now(mut writer: Writer, app: &crate::config::AppConfig) -> anyhow::Result<Option<OperatorAction>> {
    if !app.notifications.teams.is_empty() {
        writer.set_delivery_router(crate::deliver::router(&app.notifications));
    }
    let decided = writer.apply_operator_requests()?;
    writer.commit()?;
    Ok(decided.into_iter().next_back())
}

/// Waits for the running monitor to apply request `id`.
fn wait_for_monitor(db: &Path, id: i64) -> anyhow::Result<Option<OperatorAction>> {
    let start = Instant::now();
    loop {
        let action = lifewatch_store::operator_action(db, id)?;
        if action.as_ref().is_some_and(|action| action.state != "requested") || start.elapsed() > MONITOR_WAIT
        {
            return Ok(action);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Tells what became of the request.
fn report(decided: &Option<OperatorAction>) -> ExitCode {
    let Some(action) = decided else {
        eprintln!("lifewatch: the request was not found again");
        return ExitCode::FAILURE;
    };
    let incident = terminal_safe(&action.incident_id);
    let by = terminal_safe(&action.by);
    match (action.state.as_str(), action.action) {
        ("applied", ActionKind::Ack) => println!("{incident} acknowledged by {by}: its escalation stops"),
        ("applied", ActionKind::Resolve) => println!("{incident} resolved by {by}"),
        ("applied", ActionKind::Note) => println!("note added to {incident} by {by}"),
        ("refused", _) => {
            eprintln!(
                "lifewatch: {incident}: {}",
                terminal_safe(action.refusal.as_deref().unwrap_or("refused"))
            );
            return ExitCode::FAILURE;
        }
        _ => println!(
            "request {} queued: the running monitor has not applied it yet (it looks every half second)",
            action.id
        ),
    }
    ExitCode::SUCCESS
}
