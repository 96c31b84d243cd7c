//! `lifewatch notify test --channel NAME`: a clearly marked test message
//! through one channel, and what the receiver answered — the first thing to
//! run when setting a channel up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use hmac::{Hmac, Mac};
use lifewatch_notify::payload::{self, Links};
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
    let answers = runtime.block_on(send_test(channel, args.timeout))?;
    let mut ok = true;
    for answer in &answers {
        println!(
            "notify test: {} ({}) {}: HTTP {} in {} ms: {}",
            terminal_safe(&channel.name),
            channel.kind.name(),
            answer.what,
            answer.status,
            answer.took.as_millis(),
            terminal_safe(&payload::bounded(answer.body.trim(), 300))
        );
        ok &= (200..300).contains(&answer.status);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One request and its answer.
struct Answer {
    what: &'static str,
    status: u16,
    took: Duration,
    body: String,
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

async fn send_test(channel: &Channel, timeout: Duration) -> anyhow::Result<Vec<Answer>> {
    let client =
        reqwest::Client::builder().timeout(timeout).build().context("cannot build the HTTP client")?;
    let record = test_record();
    let links = Links { incident: None, runbook: Some("ops/runbooks/stuck.md".into()) };
    let idempotency = format!("test-{}", lifewatch_nats::wall_clock().map_or(0, |now| now.unix_nanos()));
    match &channel.kind {
        ChannelKind::Webhook { url, secret } => {
            let body = serde_json::to_vec(&payload::webhook_body("test", &record))?;
            let mut request = client
                .post(url.expose())
                .header("content-type", "application/json")
                .header("idempotency-key", &idempotency);
            if let Some(secret) = secret {
                request = request.header("x-lifewatch-signature", signature(secret.expose(), &body)?);
            }
            Ok(vec![answer("sent a test", request.body(body)).await?])
        }
        ChannelKind::Slack { url } => {
            let message = payload::slack_message("test", &record, &links);
            Ok(vec![answer("sent a test", client.post(url.expose()).json(&message)).await?])
        }
        ChannelKind::PagerDuty { routing_key, url } => {
            let trigger = payload::pagerduty_event(routing_key.expose(), "opened", &record, &links);
            let resolve = payload::pagerduty_event(routing_key.expose(), "resolved", &record, &links);
            let first = answer("triggered a test alert", client.post(url).json(&trigger)).await?;
            let second = answer("resolved it", client.post(url).json(&resolve)).await?;
            Ok(vec![first, second])
        }
        ChannelKind::Email { .. } | ChannelKind::Nats { .. } => anyhow::bail!(
            "channel {} is of kind {}, which this version cannot send yet (webhook, slack and pagerduty can)",
            terminal_safe(&channel.name),
            channel.kind.name()
        ),
    }
}

async fn answer(what: &'static str, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let started = Instant::now();
    // The error of a failed request may hold the URL, which is a secret for
    // webhooks and Slack: it is left out.
    let response = request.send().await.map_err(|error| {
        let why = if error.is_timeout() {
            "the receiver did not answer in time"
        } else if error.is_connect() {
            "cannot connect to the receiver"
        } else {
            "the request failed"
        };
        anyhow::anyhow!("{what}: {why}")
    })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Answer { what, status, took: started.elapsed(), body })
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `secret`.
fn signature(secret: &str, body: &[u8]) -> anyhow::Result<String> {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).context("the signing key is unusable")?;
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    Ok(format!("sha256={}", digest.iter().map(|byte| format!("{byte:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let signature = signature("Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(signature, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
