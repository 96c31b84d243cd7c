//! `lifewatch risks`: the launch risk register (`ops/risks.toml`) as a table
//! with each risk's coverage.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::output::{self, Format, Table};
use crate::risks::{self, Accepted, Detection, Gap, Register, Risk, Status};

/// The `Examples:` section of `lifewatch risks --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch risks
  lifewatch risks --root /srv/launch-ops --format json

Each risk is covered (detected, owned, with a runbook, a drill and comms),
accepted (left uncovered on purpose by a named owner), or has gaps, each
named. The command exits 0 whatever the coverage; `lifewatch check` is the
gate. A mistake in the register (an unknown key, a kind, alert or team that
does not exist, a missing runbook) exits 2, naming the risk and the key.";

/// `lifewatch risks` arguments.
#[derive(Args)]
pub struct RisksArgs {
    /// The operations package's root: the directory holding ops/risks.toml,
    /// ops/lifewatch.toml, ops/prometheus/alerts.yml and ops/runbooks/.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Output format: table for people, json or jsonl for tools.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    format: Format,
}

/// One risk as `--format json` prints it.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a str,
    title: &'a str,
    likelihood: &'a str,
    impact: &'a str,
    detection: &'a Detection,
    owner: Option<&'a str>,
    runbook: Option<&'a str>,
    drill: Option<&'a str>,
    comms: Option<&'a str>,
    accepted: Option<&'a Accepted>,
    /// `covered`, `accepted` or `gap`.
    status: &'static str,
    gaps: Vec<Gap>,
}

/// `lifewatch risks`.
pub fn main(args: RisksArgs) -> anyhow::Result<ExitCode> {
    let register = risks::load(&args.root)
        .map_err(|error| crate::error::UsageError::Risks(Box::new(error)))
        .with_context(|| format!("the risk register of {}", args.root.display()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    write(&mut out, &register, args.format)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn line<'a>(register: &Register, risk: &'a Risk) -> Line<'a> {
    let (status, gaps) = match register.status(risk) {
        Status::Covered => ("covered", Vec::new()),
        Status::Accepted => ("accepted", Vec::new()),
        Status::Gaps(gaps) => ("gap", gaps),
    };
    Line {
        id: &risk.id,
        title: &risk.title,
        likelihood: risk.likelihood.as_str(),
        impact: risk.impact.as_str(),
        detection: &risk.detection,
        owner: risk.owner.as_deref().or(risk.accepted.as_ref().map(|accepted| accepted.owner.as_str())),
        runbook: risk.runbook.as_deref(),
        drill: risk.drill.as_deref(),
        comms: risk.comms.as_deref(),
        accepted: risk.accepted.as_ref(),
        status,
        gaps,
    }
}

/// `kinds: a, b; alerts: X` or `-`.
fn detection(detection: &Detection) -> String {
    let mut parts = Vec::new();
    if !detection.kinds.is_empty() {
        let kinds: Vec<&str> = detection.kinds.iter().map(|kind| kind.as_str()).collect();
        parts.push(format!("kinds: {}", kinds.join(", ")));
    }
    if !detection.alerts.is_empty() {
        parts.push(format!("alerts: {}", detection.alerts.join(", ")));
    }
    if parts.is_empty() { "-".to_string() } else { parts.join("; ") }
}

fn write(out: &mut impl Write, register: &Register, format: Format) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for risk in &register.risks {
                output::write_json_line(out, &line(register, risk))?;
            }
        }
        Format::Json => {
            output::write_json_array(out, register.risks.iter().map(|risk| line(register, risk)))?;
        }
        Format::Table => {
            let mut table = Table::new(&[
                "ID",
                "TITLE",
                "LIKELIHOOD",
                "IMPACT",
                "DETECTION",
                "OWNER",
                "RUNBOOK",
                "DRILL",
                "STATUS",
            ]);
            let (mut covered, mut accepted, mut gaps) = (0, 0, 0);
            for risk in &register.risks {
                let status = register.status(risk);
                match status {
                    Status::Covered => covered += 1,
                    Status::Accepted => accepted += 1,
                    Status::Gaps(_) => gaps += 1,
                }
                let line = line(register, risk);
                let status = status.to_string();
                table.row([
                    risk.id.as_str(),
                    risk.title.as_str(),
                    line.likelihood,
                    line.impact,
                    &detection(&risk.detection),
                    line.owner.unwrap_or("-"),
                    line.runbook.unwrap_or("-"),
                    line.drill.unwrap_or("-"),
                    &status,
                ]);
            }
            table.write(out)?;
            for risk in &register.risks {
                if let Some(accepted) = &risk.accepted {
                    writeln!(
                        out,
                        "accepted: {} by {}: {}",
                        output::terminal_safe(&risk.id),
                        output::terminal_safe(&accepted.owner),
                        output::terminal_safe(&accepted.reason)
                    )?;
                }
            }
            let missing = register.gaps().len();
            writeln!(
                out,
                "{} risks: {covered} covered, {accepted} accepted, {gaps} with gaps ({missing} {})",
                register.risks.len(),
                if missing == 1 { "gap" } else { "gaps" }
            )?;
        }
    }
    Ok(())
}
