//! `lifewatch config show`: the effective configuration, the built-in one
//! with the `--config` file overlaid, secrets hidden.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::commands::ConfigArg;
use crate::config::Effective;

/// The `Examples:` section of `lifewatch config --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch config show
  lifewatch config show --config /etc/lifewatch/lifewatch.toml
  lifewatch config show --format json | jq .deadlines";

/// `lifewatch config` subcommands.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration: the built-in one with --config overlaid.
    ///
    /// It is validated first (a bad one exits 2 as every command does).
    /// Passwords, tokens and credentials in URLs are never printed: a secret
    /// that is set shows as `<set>`. In TOML, a comment above each section says
    /// whether it came from the file or the built-in configuration.
    #[command(after_help = EXAMPLES)]
    Show(ShowArgs),
}

/// Output formats of `config show`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ConfigFormat {
    /// TOML, as the file is written, with where each section came from.
    #[default]
    Toml,
    /// One JSON object, for tools.
    Json,
}

/// `lifewatch config show` arguments.
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "toml")]
    format: ConfigFormat,
}

/// `lifewatch config …`.
pub fn main(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show(args) => show(args),
    }
}

/// Keys whose values are secrets, wherever they appear.
const SECRET_KEYS: [&str; 4] = ["password", "token", "secret", "routing_key"];

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    // Validating first: what is shown is a configuration commands accept.
    args.config.load()?;
    let effective = Effective::load(args.config.config.as_deref())?;
    let mut table = effective.table;
    hide_secrets(&mut table);
    let mut out = io::stdout().lock();
    match args.format {
        ConfigFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &table)?;
            writeln!(out)?;
        }
        ConfigFormat::Toml => {
            let origin_of = |key: &str| {
                if effective.from_file.iter().any(|from| from == key) {
                    format!("from {} (over the built-in one)", effective.origin)
                } else {
                    "built-in".to_string()
                }
            };
            // Plain keys first (TOML puts them before any table), then each
            // section under a comment naming where it came from.
            let (plain, sections): (toml::Table, toml::Table) = table.into_iter().partition(|(_, value)| {
                !matches!(value, toml::Value::Table(_)) && !is_array_of_tables(value)
            });
            for (key, value) in plain {
                writeln!(out, "# {}", origin_of(&key))?;
                write!(out, "{}", toml::to_string(&toml::Table::from_iter([(key, value)]))?)?;
            }
            for (key, value) in sections {
                writeln!(out, "\n# {}", origin_of(&key))?;
                write!(out, "{}", toml::to_string(&toml::Table::from_iter([(key, value)]))?)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn is_array_of_tables(value: &toml::Value) -> bool {
    matches!(value, toml::Value::Array(items) if !items.is_empty() && items.iter().all(toml::Value::is_table))
}

/// Replaces every secret with `<set>`, and credentials in a URL with
/// `<redacted>`, at any depth. A channel's `url` is a secret as a whole (a
/// Slack or webhook URL is its own credential).
fn hide_secrets(table: &mut toml::Table) {
    hide_secrets_in(table, false);
}

fn hide_secrets_in(table: &mut toml::Table, in_channel: bool) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => hide_secrets_in(inner, false),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        hide_secrets_in(inner, key == "channels");
                    }
                }
            }
            _ if SECRET_KEYS.contains(&key.as_str()) => *value = toml::Value::String("<set>".into()),
            _ if in_channel && key == "url" => *value = toml::Value::String("<set>".into()),
            toml::Value::String(text) if key == "url" => *text = lifewatch_nats::redact_url(text),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_at_any_depth() {
        let mut table: toml::Table = toml::from_str(
            "[nats]\nurl = \"nats://u:hunter2@h:4222\"\npassword = \"hunter2\"\ntoken = \"t0k\"\nuser = \"me\"\n",
        )
        .unwrap();
        hide_secrets(&mut table);
        let text = toml::to_string(&table).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("t0k"), "{text}");
        assert!(text.contains("password = \"<set>\"") && text.contains("user = \"me\""), "{text}");
        let mut channels: toml::Table = toml::from_str(
            "[[channels]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"https://hooks.example/T0/B0/s3cr3t\"\n\
             [[channels]]\nname = \"pager\"\nkind = \"pagerduty\"\nrouting_key = \"rk-s3cr3t\"\n",
        )
        .unwrap();
        hide_secrets(&mut channels);
        let shown = toml::to_string(&channels).unwrap();
        assert!(!shown.contains("s3cr3t") && shown.contains("name = \"chat\""), "{shown}");
    }
}
