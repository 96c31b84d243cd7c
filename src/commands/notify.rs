//! `lifewatch notify test --channel NAME`: a clearly marked test message
//! through one channel, and what the receiver answered — the first thing to
//! run when setting a channel up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use lifewatch_notify::payload::{self, Links};

use crate::deliver::{self, Answer};
use lifewatch_notify::{Channel, ChannelKind};
use serde_json::json;

use crate::config::AppConfig;
use crate::error::UsageError;
use crate::output::terminal_safe;

/// The `Examples:` section of `lifewatch notify --help`.
pub const EXAMPLES: &str = "Examples:
  lifewatch notify test --channel platform-chat --config /etc/lifewatch/lifewatch.toml

Channels are the `[[channels]]` of the configuration (see docs/operations.md). The test
message says it is a test; for PagerDuty it triggers a test alert and resolves it at once.";

/// `lifewatch notify` subcommands.
#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through a channel and print what the receiver answered.
    #[command(after_help = EXAMPLES)]
    Test(TestArgs),
}

/// `lifewatch notify test` arguments.
#[derive(Args)]
pub struct TestArgs {
    /// The channel (its `name` in `[[channels]]`).
    #[arg(long)]
    channel: String,
    /// Configuration file (default: the shipped ops/lifewatch.toml, built in).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// How long to wait for the receiver.
    #[arg(long, default_value = "10s", value_parser = crate::commands::parse_duration)]
    timeout: Duration,
    /// For a `nats` channel: how to reach the server (default: `[nats]` of the configuration).
    #[command(flatten)]
    nats: crate::live::NatsFlags,
}

/// `lifewatch notify`.
pub fn main(command: NotifyCommand) -> anyhow::Result<ExitCode> {
    let NotifyCommand::Test(args) = command;
    let app = AppConfig::load(args.config.as_deref())?;
    let Some(channel) = app.notifications.channels.get(&args.channel) else {
        let known: Vec<&str> = app.notifications.channels.keys().map(String::as_str).collect();
        return Err(UsageError::Option {
            option: "--channel",
            message: format!(
                "no channel {} in the configuration; its channels are: {}",
                terminal_safe(&format!("{:?}", args.channel)),
                if known.is_empty() { "none ([[channels]] is empty)".to_string() } else { known.join(", ") }
            ),
        }
        .into());
    };
    let runtime = crate::live::runtime()?;
    let nats = match channel.kind {
        ChannelKind::Nats { .. } => Some(args.nats.with_env_url().nats_config(&app.nats)?),
        _ => None,
    };
    let answers = runtime.block_on(async {
        let mut senders = deliver::Senders::default();
        if let Some(nats) = &nats {
            senders.nats = Some(lifewatch_nats::connect(&nats.connect, args.timeout).await?);
        }
        send_test(channel, &senders, args.timeout).await
    })?;
    let mut ok = true;
    for (what, answer) in &answers {
        println!(
            "notify test: {} ({}) {}: {} {} in {} ms: {}",
            terminal_safe(&channel.name),
            channel.kind.name(),
            what,
            match channel.kind {
                ChannelKind::Email { .. } | ChannelKind::Nats { .. } => "status",
                _ => "HTTP",
            },
            answer.status,
            answer.took.as_millis(),
            terminal_safe(&payload::bounded(answer.body.trim(), 300))
        );
        ok &= (200..300).contains(&answer.status);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The test record: a resolvable `info` incident that says what it is.
fn test_record() -> serde_json::Value {
    let now = lifewatch_nats::wall_clock().map(|now| now.to_string()).unwrap_or_default();
    json!({
        "id": "inc_lifewatch_test", "key": "lifewatch:test", "kind": "stuck", "severity": "info",
        "status": "open", "entity": {"type": "project", "id": "prj_lifewatch_test"}, "account_id": null,
        "region": null, "state": null, "owner": "lifewatch-test", "runbook": "ops/runbooks/stuck.md",
        "opened_at": now, "resolved_at": null,
        "summary": "TEST: a test message from `lifewatch notify test`; no action needed",
        "count": 1, "events": []
    })
}

async fn send_test(
    channel: &Channel,
    senders: &deliver::Senders,
    timeout: Duration,
) -> anyhow::Result<Vec<(&'static str, Answer)>> {
    let client =
        reqwest::Client::builder().timeout(timeout).build().context("cannot build the HTTP client")?;
    let record = test_record();
    let links = Links {
        incident: None,
        runbook: Some("ops/runbooks/stuck.md".into()),
        held_back: Vec::new(),
        escalation_step: None,
        summarised: Vec::new(),
    };
    let idempotency = format!("test-{}", lifewatch_nats::wall_clock().map_or(0, |now| now.unix_nanos()));
    // For PagerDuty the test alert is resolved at once.
    let steps: &[(&str, &'static str)] = match channel.kind {
        ChannelKind::PagerDuty { .. } => &[("opened", "triggered a test alert"), ("resolved", "resolved it")],
        _ => &[("test", "sent a test")],
    };
    let mut answers = Vec::new();
    for &(transition, what) in steps {
        let answer =
            deliver::send(&client, senders, channel, transition, &record, &idempotency, &links, timeout)
                .await
                .map_err(|error| anyhow::anyhow!("{what}: {error}"))?;
        answers.push((what, answer));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let signature = crate::deliver::signature("Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(signature, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
