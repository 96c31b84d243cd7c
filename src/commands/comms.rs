//! `lifewatch comms ID`: an incident's communication templates
//! (`ops/comms/<kind>.md`: status-page updates, support macro, follow-up
//! email), filled from its record, ready to copy.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use lifewatch_store::{Store, query};

use crate::commands::DbArg;
use crate::error::UsageError;
use crate::output::{self, terminal_safe};

/// The `Examples:` section of `lifewatch comms --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch replay fixtures/regional_outage.jsonl --db /tmp/lifewatch-outage.db > /dev/null
  lifewatch incidents --db /tmp/lifewatch-outage.db --kind regional_outage -o jsonl
  lifewatch comms --db /tmp/lifewatch-outage.db ID
  lifewatch comms --db /tmp/lifewatch-outage.db ID --template 'status-page: investigating'

The templates are read from ops/comms/<kind>.md under the package root (the
configuration's, as for check; --root overrides it), else the shipped ones.
Placeholders such as {{incident.region}} are filled from the incident; see
docs/operations.md for the list. Exit 1 when the incident does not exist,
2 for a template name the file does not have.";

/// `lifewatch comms` arguments.
#[derive(Args)]
pub struct CommsArgs {
    #[command(flatten)]
    db: DbArg,
    /// The incident id.
    id: String,
    /// Only this template (e.g. `support-macro`, `status-page: resolved`).
    #[arg(long, value_name = "NAME")]
    template: Option<String>,
    /// Configuration file, for the package root (default: the built-in one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The package root holding ops/comms/ (default: the configuration's root).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Output format: text for people, json for tools.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    format: CommsFormat,
}

/// How `comms` prints.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommsFormat {
    /// Each template under its name.
    Text,
    /// `[{name, text}]`.
    Json,
}

/// `lifewatch comms`.
pub fn run(args: CommsArgs) -> anyhow::Result<ExitCode> {
    let root = args.root.clone().unwrap_or_else(|| crate::config::runbook_root(args.config.as_deref()));
    let store = Store::open_read_only(&args.db.db)?;
    let Some(detail) = query::incident(&store, &args.id)? else {
        eprintln!(
            "lifewatch: no incident {} in {}",
            terminal_safe(&format!("{:?}", args.id)),
            args.db.db.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let mut rendered = lifewatch_web::comms::render(&root, &store, &detail.record)?;
    if rendered.is_empty() {
        eprintln!(
            "lifewatch: no communication templates for {} (ops/comms/{}.md under {})",
            detail.record.kind,
            detail.record.kind,
            root.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(name) = &args.template {
        let names: Vec<String> = rendered.iter().map(|template| format!("{:?}", template.name)).collect();
        rendered.retain(|template| &template.name == name);
        if rendered.is_empty() {
            return Err(UsageError::Option {
                option: "--template",
                message: format!(
                    "no template {} for {}; its templates are: {}",
                    terminal_safe(&format!("{name:?}")),
                    detail.record.kind,
                    names.join(", ")
                ),
            }
            .into());
        }
    }
    let mut out = io::stdout().lock();
    match args.format {
        CommsFormat::Json => output::write_json_array(&mut out, rendered.iter())?,
        CommsFormat::Text => {
            for (index, template) in rendered.iter().enumerate() {
                if index > 0 {
                    writeln!(out)?;
                }
                // The text holds strings from events: neutralised for the terminal.
                writeln!(out, "=== {} ===", terminal_safe(&template.name))?;
                writeln!(out, "{}", terminal_safe_lines(&template.text))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `terminal_safe` line by line, so that the template's own line breaks stay.
fn terminal_safe_lines(text: &str) -> String {
    text.lines().map(|line| terminal_safe(line).into_owned()).collect::<Vec<_>>().join("\n")
}
