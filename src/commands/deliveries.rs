//! `lifewatch deliveries`: the notifications of a database — pending,
//! delivered, or given up (`dead`) — and `deliveries retry` to send dead
//! ones again.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use lifewatch_store::{Deliveries, Delivery};

use crate::error::UsageError;
use crate::output::{self, Format, Table};

/// The `Examples:` section of `lifewatch deliveries --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch deliveries --db /tmp/lifewatch.db --state dead
  lifewatch deliveries retry --db /tmp/lifewatch.db --all
  lifewatch deliveries retry --db /tmp/lifewatch.db 42

A running monitor picks re-queued deliveries up within a second.";

/// A delivery's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum State {
    /// Not yet accepted by the receiver.
    Pending,
    /// Accepted.
    Delivered,
    /// Given up.
    Dead,
    /// Held back while its region's outage is open.
    Inhibited,
    /// Held back, and its incident ended before the outage did: never sent on its own.
    Suppressed,
    /// Sent within one summary message: the channel's rate limit (`per_minute`) held it.
    Summarised,
}

/// `lifewatch deliveries` arguments.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    command: Option<DeliveriesCommand>,
    /// The database.
    #[arg(long, env = "LIFEWATCH_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// Only deliveries in this state.
    #[arg(long, value_enum)]
    state: Option<State>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// `lifewatch deliveries` subcommands.
#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// Make dead deliveries pending again (one by id, or --all).
    #[command(after_help = EXAMPLES)]
    Retry(RetryArgs),
}

/// `lifewatch deliveries retry` arguments.
#[derive(Args)]
pub struct RetryArgs {
    /// The database.
    #[arg(long, env = "LIFEWATCH_DB", value_name = "PATH")]
    db: PathBuf,
    /// The delivery's id (see `lifewatch deliveries --state dead`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<i64>,
    /// Every dead delivery.
    #[arg(long)]
    all: bool,
}

/// `lifewatch deliveries`.
pub fn main(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    if let Some(DeliveriesCommand::Retry(retry)) = args.command {
        let store = Deliveries::open(&retry.db)?;
        if let Some(id) = retry.id
            && !store.exists(id)?
        {
            anyhow::bail!(UsageError::Option { option: "ID", message: format!("no delivery {id}") });
        }
        let requeued = store.requeue(retry.id)?;
        let noun = if requeued == 1 { "delivery" } else { "deliveries" };
        eprintln!("lifewatch: {requeued} dead {noun} re-queued");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(db) = args.db else {
        anyhow::bail!(UsageError::Option {
            option: "--db",
            message: "the database is required (or LIFEWATCH_DB)".into()
        });
    };
    let store = Deliveries::open(&db)?;
    let state = args.state.map(|state| match state {
        State::Pending => "pending",
        State::Delivered => "delivered",
        State::Dead => "dead",
        State::Inhibited => "inhibited",
        State::Suppressed => "suppressed",
        State::Summarised => "summarised",
    });
    let deliveries = store.listed(state, args.limit)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    write(&mut out, &deliveries, args.format)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write(out: &mut impl Write, deliveries: &[Delivery], format: Format) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for delivery in deliveries {
                output::write_json_line(out, delivery)?;
            }
        }
        Format::Json => output::write_json_array(out, deliveries.iter())?,
        Format::Table => {
            let mut table =
                Table::new(&["ID", "STATE", "CHANNEL", "INCIDENT", "TRANSITION", "ATTEMPTS", "LAST ERROR"]);
            for delivery in deliveries {
                table.row([
                    delivery.id.to_string(),
                    delivery.state.clone(),
                    delivery.channel.clone(),
                    delivery.incident_id.clone(),
                    delivery.transition.clone(),
                    delivery.attempts.to_string(),
                    delivery.last_error.clone().unwrap_or_default(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "{} shown", deliveries.len())?;
        }
    }
    Ok(())
}
