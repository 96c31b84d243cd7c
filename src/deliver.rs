//! Sending notifications: one request per delivery (webhook, Slack,
//! PagerDuty) over reqwest, and the worker of `lifewatch run` that drives
//! `lifewatch_notify::Schedule` from the delivery rows of the store. The
//! protocol (order per incident and channel, per-channel limit, backoff,
//! `Retry-After`, giving up) is the schedule's; this loop only reads rows,
//! sends, and writes outcomes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hmac::{Hmac, Mac};
use lifewatch_notify::payload::{self, Links};
use lifewatch_notify::{
    Admission, AfterFailure, Channel, ChannelKind, Digest, Notifications, RetryPolicy, Schedule,
};
use lifewatch_store::{Deliveries, Delivery, DeliveryRouter, RouteQuery, Routing};

/// What a receiver answered.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// How long it took.
    pub took: Duration,
    /// The body (for people).
    pub body: String,
    /// `Retry-After`, in ms, when given in seconds.
    pub retry_after_ms: Option<u64>,
}

/// Why a request got no answer. Never holds the URL (a secret for webhooks and Slack).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer in time.
    #[error("the receiver did not answer in time")]
    Timeout,
    /// No connection.
    #[error("cannot connect to the receiver")]
    Connect,
    /// Anything else on the way.
    #[error("the request failed")]
    Request,
    /// The signing key is unusable.
    #[error("the webhook's signing key is unusable")]
    Key,
}

/// What a channel needs besides HTTP: the NATS connection of `nats`
/// channels, once there is one.
#[derive(Clone, Default)]
pub struct Senders {
    /// The monitor's NATS client (`None` until connected, and in `notify test`).
    pub nats: Option<async_nats::Client>,
}

/// Sends one transition of `record` through `channel`. `idempotency` is the
/// webhook's `Idempotency-Key` (the delivery id), so that a re-send after a
/// crash is recognised by the receiver; PagerDuty deduplicates by the
/// incident's key.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    client: &reqwest::Client,
    senders: &Senders,
    channel: &Channel,
    transition: &str,
    record: &serde_json::Value,
    idempotency: &str,
    links: &Links,
    timeout: Duration,
) -> Result<Answer, SendError> {
    // A channel whose secret is not set cannot send: the delivery is given
    // up at once, naming the variable, and `deliveries retry` sends it
    // once the monitor runs with it set.
    if let Some((key, variable)) = channel.unset_secrets().first() {
        return Ok(Answer {
            status: 400,
            took: Duration::ZERO,
            body: format!(
                "not sent: channel {} has no secret: `{key}` names {variable}, which is not set",
                channel.name
            ),
            retry_after_ms: None,
        });
    }
    let request = match &channel.kind {
        ChannelKind::Webhook { url, secret } => {
            let body = serde_json::to_vec(&payload::webhook_body(transition, record, links))
                .map_err(|_| SendError::Request)?;
            let mut request = client
                .post(url.expose().map_err(|_| SendError::Request)?)
                .header("content-type", "application/json")
                .header("idempotency-key", idempotency);
            if let Some(secret) = secret {
                request = request.header(
                    "x-lifewatch-signature",
                    signature(secret.expose().map_err(|_| SendError::Request)?, &body)?,
                );
            }
            request.body(body)
        }
        ChannelKind::Slack { url } => client
            .post(url.expose().map_err(|_| SendError::Request)?)
            .json(&payload::slack_message(transition, record, links)),
        ChannelKind::PagerDuty { routing_key, url } => client.post(url).json(&payload::pagerduty_event(
            routing_key.expose().map_err(|_| SendError::Request)?,
            transition,
            record,
            links,
        )),
        ChannelKind::Email { smtp, tls, from, to, user, password } => {
            let mail = payload::email(transition, record, links);
            let settings =
                SmtpSettings { smtp, tls: *tls, user: user.as_deref(), password: password.as_ref() };
            return send_email(&settings, from, to, mail, timeout).await;
        }
        ChannelKind::Nats { subject } => {
            let body = serde_json::to_vec(&payload::webhook_body(transition, record, links))
                .map_err(|_| SendError::Request)?;
            return send_nats(senders.nats.as_ref(), subject, idempotency, body, timeout).await;
        }
    };
    let started = Instant::now();
    let response = request.send().await.map_err(|error| {
        if error.is_timeout() {
            SendError::Timeout
        } else if error.is_connect() {
            SendError::Connect
        } else {
            SendError::Request
        }
    })?;
    let status = response.status().as_u16();
    let retry_after_ms = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1_000));
    let body = response.text().await.unwrap_or_default();
    Ok(Answer { status, took: started.elapsed(), body, retry_after_ms })
}

/// Where and how an email channel connects.
struct SmtpSettings<'a> {
    smtp: &'a str,
    tls: lifewatch_notify::EmailTls,
    user: Option<&'a str>,
    password: Option<&'a lifewatch_notify::Secret>,
}

/// Sends one email. The SMTP server's answer becomes an [`Answer`] the
/// delivery loop understands: accepted is 200; a permanent refusal (5xx:
/// an unknown recipient, a refused sender) is 400, given up at once; a
/// transient one (4xx: try later) is 503, retried.
async fn send_email(
    settings: &SmtpSettings<'_>,
    from: &str,
    to: &[String],
    mail: payload::Email,
    timeout: Duration,
) -> Result<Answer, SendError> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let refused =
        |what: String| Answer { status: 400, took: Duration::ZERO, body: what, retry_after_ms: None };
    let from: Mailbox = match from.parse() {
        Ok(from) => from,
        Err(error) => return Ok(refused(format!("bad sender address: {error}"))),
    };
    let mut builder = lettre::Message::builder().from(from).subject(mail.subject);
    for recipient in to {
        match recipient.parse::<Mailbox>() {
            Ok(mailbox) => builder = builder.to(mailbox),
            Err(error) => return Ok(refused(format!("bad recipient address: {error}"))),
        }
    }
    let message = match builder.multipart(MultiPart::alternative_plain_html(mail.text, mail.html)) {
        Ok(message) => message,
        Err(error) => return Ok(refused(format!("cannot build the message: {error}"))),
    };
    let (host, port) = match settings.smtp.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
        Some((host, Ok(port))) => (host.to_string(), Some(port)),
        _ => (settings.smtp.to_string(), None),
    };
    let tls_parameters = || TlsParameters::new(host.clone()).map_err(|_| SendError::Request);
    let (tls, default_port) = match settings.tls {
        lifewatch_notify::EmailTls::StartTls => (Tls::Required(tls_parameters()?), 587),
        lifewatch_notify::EmailTls::Tls => (Tls::Wrapper(tls_parameters()?), 465),
        lifewatch_notify::EmailTls::None => (Tls::None, 25),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (settings.user, settings.password) {
        let password = password.expose().map_err(|_| SendError::Request)?;
        transport = transport.credentials(Credentials::new(user.to_string(), password.to_string()));
    }
    let started = Instant::now();
    match transport.build().send(message).await {
        Ok(response) => Ok(Answer {
            status: 200,
            took: started.elapsed(),
            body: format!("SMTP {}: {}", response.code(), response.message().collect::<Vec<_>>().join(" ")),
            retry_after_ms: None,
        }),
        Err(error) if error.is_permanent() => Ok(Answer {
            status: 400,
            took: started.elapsed(),
            body: format!("SMTP refused: {error}"),
            retry_after_ms: None,
        }),
        Err(error) if error.is_transient() => Ok(Answer {
            status: 503,
            took: started.elapsed(),
            body: format!("SMTP asked to try later: {error}"),
            retry_after_ms: None,
        }),
        Err(error) if error.is_timeout() => Err(SendError::Timeout),
        Err(_) => Err(SendError::Connect),
    }
}

/// Publishes one transition to a `nats` channel's subject: through
/// JetStream (with the delivery id as `Nats-Msg-Id`, so a re-send is
/// dropped as a duplicate) when a stream covers the subject, else as a
/// plain message, flushed.
async fn send_nats(
    client: Option<&async_nats::Client>,
    subject: &str,
    idempotency: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, SendError> {
    let Some(client) = client else { return Err(SendError::Connect) };
    let started = Instant::now();
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("delivery-{idempotency}").as_str());
    use async_nats::jetstream::context::PublishErrorKind;
    let stored = tokio::time::timeout(timeout, async {
        let ack = jetstream.publish_with_headers(subject.to_string(), headers, body.clone().into()).await?;
        ack.await
    })
    .await
    .map_err(|_| SendError::Timeout)?;
    let stored = match stored {
        Ok(ack) => format!("stored in stream {} at {}", ack.stream, ack.sequence),
        // No stream covers the subject: a plain publish, flushed.
        Err(error) if matches!(error.kind(), PublishErrorKind::StreamNotFound) => {
            client.publish(subject.to_string(), body.into()).await.map_err(|_| SendError::Request)?;
            tokio::time::timeout(timeout, client.flush())
                .await
                .map_err(|_| SendError::Timeout)?
                .map_err(|_| SendError::Connect)?;
            "published (no stream stores this subject)".to_string()
        }
        Err(error) if matches!(error.kind(), PublishErrorKind::TimedOut) => return Err(SendError::Timeout),
        Err(_) => return Err(SendError::Request),
    };
    Ok(Answer { status: 200, took: started.elapsed(), body: stored, retry_after_ms: None })
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, SendError> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SendError::Key)?;
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    Ok(format!("sha256={}", digest.iter().map(|byte| format!("{byte:02x}")).collect::<String>()))
}

/// The routing the writer uses: the channels of the owning team's routes
/// that this version can send through, and the teams that hold back their
/// region's incidents during an outage (`inhibit_during_outage`, on by default).
pub fn router(notifications: &Notifications) -> Routing {
    let routes = notifications.clone();
    let route: DeliveryRouter = Arc::new(move |query: &RouteQuery<'_>| {
        let mut channels = routes.route(query.owner, query.severity, query.kind, query.transition);
        if query.transition == "escalated" {
            channels.extend(routes.escalation_targets(
                query.owner,
                query.escalation_step,
                query.severity,
                query.kind,
            ));
        }
        let mut seen = std::collections::HashSet::new();
        channels
            .into_iter()
            .filter(|name| seen.insert(*name))
            .filter(|name| routes.channels.contains_key(*name))
            .map(str::to_string)
            .collect()
    });
    let teams = notifications.clone();
    let inhibit =
        Arc::new(move |owner: &str| teams.teams.get(owner).is_some_and(|team| team.inhibit_during_outage));
    Routing { route, inhibit }
}

/// Wall-clock milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The outcome of one send, back to the loop.
struct Sent {
    id: i64,
    result: Result<Answer, SendError>,
    /// For a rate-limit summary: its channel (the deliveries it carried
    /// are the channel's [`Digest`]'s in flight).
    summary_of: Option<String>,
}

/// How long a failed rate-limit summary waits before it is tried again.
const SUMMARY_RETRY: Duration = Duration::from_secs(5);

/// Delivers pending rows until `stop` completes: reads new rows every
/// 250 ms, sends what the schedule hands out (each send on a task of its
/// own, at most `timeout` long), records every outcome.
pub async fn run_worker(
    db: PathBuf,
    notifications: Notifications,
    policy: RetryPolicy,
    timeout: Duration,
    dashboard: Option<String>,
    mut nats: tokio::sync::watch::Receiver<Option<async_nats::Client>>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = tokio::task::block_in_place(|| Deliveries::open(&db))?;
    let client =
        reqwest::Client::builder().timeout(timeout).build().context("cannot build the HTTP client")?;
    let mut schedule = Schedule::new(policy);
    // Channels with a rate limit (`per_minute`).
    let mut digests: HashMap<String, Digest> = notifications
        .channels
        .values()
        .filter_map(|channel| channel.per_minute.map(|limit| (channel.name.clone(), Digest::new(limit))))
        .collect();
    let mut known: HashMap<i64, Delivery> = HashMap::new();
    let mut loaded_through = 0_i64;
    let (results, mut finished) = tokio::sync::mpsc::unbounded_channel::<Sent>();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            _ = tick.tick() => {
                let rows = tokio::task::block_in_place(|| store.pending_after(loaded_through, 1_000))?;
                for row in rows {
                    loaded_through = loaded_through.max(row.id);
                    schedule.add(row.id, &row.channel, &row.incident_id, row.attempts, row.not_before_ms, row.first_try_ms);
                    known.insert(row.id, row);
                }
            }
            Some(sent) = finished.recv() => match sent.summary_of.clone() {
                Some(channel) => settle_summary(&store, &mut digests, &mut known, &channel, sent)?,
                None => settle(&store, &mut schedule, &mut known, sent)?,
            },
        }
        let now = now_ms();
        for id in schedule.due(now) {
            let Some(row) = known.get(&id) else { continue };
            let Some(channel) = notifications.channels.get(&row.channel).cloned() else { continue };
            // Beyond the channel's rate limit: held for its next summary. It
            // leaves the schedule (its lane moves on: the digest keeps the
            // order); its row stays pending until the summary is accepted.
            if let Some(digest) = digests.get_mut(&row.channel)
                && digest.offer(id, now) == Admission::Hold
            {
                schedule.delivered(id);
                continue;
            }
            let record: serde_json::Value = serde_json::from_str(&row.record).unwrap_or_default();
            // An outage's messages list the incidents of its region held back meanwhile.
            let held_back = match (
                record.get("kind").and_then(serde_json::Value::as_str),
                record.pointer("/entity/id"),
            ) {
                (Some("regional_outage"), Some(serde_json::Value::String(region))) => {
                    tokio::task::block_in_place(|| store.held_back(region))?
                }
                _ => Vec::new(),
            };
            let links = Links {
                incident: dashboard.as_ref().map(|base| format!("{base}/incidents/{}", row.incident_id)),
                runbook: record.get("runbook").and_then(serde_json::Value::as_str).map(str::to_string),
                held_back,
                escalation_step: tokio::task::block_in_place(|| store.escalation_step(row))?,
                summarised: Vec::new(),
            };
            let (client, transition, results) = (client.clone(), row.transition.clone(), results.clone());
            let senders = Senders { nats: nats.borrow_and_update().clone() };
            tokio::spawn(async move {
                let result =
                    send(&client, &senders, &channel, &transition, &record, &id.to_string(), &links, timeout)
                        .await;
                let _ = results.send(Sent { id, result, summary_of: None });
            });
        }
        for (name, digest) in &mut digests {
            let Some(carried) = digest.summary_due(now) else { continue };
            let Some(channel) = notifications.channels.get(name).cloned() else { continue };
            let items: Vec<serde_json::Value> = carried
                .iter()
                .filter_map(|id| known.get(id))
                .map(|row| {
                    let record: serde_json::Value = serde_json::from_str(&row.record).unwrap_or_default();
                    payload::summary_item(row.id, &row.transition, &record)
                })
                .collect();
            let record = payload::summary(name, channel.per_minute.unwrap_or(1), &items);
            let links = Links { incident: dashboard.clone(), summarised: items, ..Links::default() };
            let idempotency = format!(
                "summary-{}-{}",
                carried.first().copied().unwrap_or_default(),
                carried.last().copied().unwrap_or_default()
            );
            let (client, results, name) = (client.clone(), results.clone(), name.clone());
            let senders = Senders { nats: nats.borrow_and_update().clone() };
            tokio::spawn(async move {
                let result =
                    send(&client, &senders, &channel, "summary", &record, &idempotency, &links, timeout)
                        .await;
                let _ = results.send(Sent { id: 0, result, summary_of: Some(name) });
            });
        }
    }
}

/// Records the outcome of a rate-limit summary: accepted, the deliveries it
/// carried are `summarised`; else they wait for the next one.
fn settle_summary(
    store: &Deliveries,
    digests: &mut HashMap<String, Digest>,
    known: &mut HashMap<i64, Delivery>,
    channel: &str,
    sent: Sent,
) -> anyhow::Result<()> {
    let Some(digest) = digests.get_mut(channel) else { return Ok(()) };
    let now = now_ms();
    match &sent.result {
        Ok(answer) if (200..300).contains(&answer.status) => {
            for id in digest.summary_sent() {
                known.remove(&id);
                tokio::task::block_in_place(|| store.summarised(id, now))?;
            }
        }
        other => {
            let error = match other {
                Ok(answer) => format!("HTTP {}", answer.status),
                Err(error) => error.to_string(),
            };
            digest.summary_failed(now + SUMMARY_RETRY.as_millis() as u64);
            tracing::warn!(%channel, %error, "a rate-limit summary failed; retrying");
        }
    }
    Ok(())
}

/// Records one outcome in the schedule and the store.
fn settle(
    store: &Deliveries,
    schedule: &mut Schedule,
    known: &mut HashMap<i64, Delivery>,
    sent: Sent,
) -> anyhow::Result<()> {
    let now = now_ms();
    let (retryable, retry_after, error) = match &sent.result {
        Ok(answer) if (200..300).contains(&answer.status) => {
            schedule.delivered(sent.id);
            known.remove(&sent.id);
            tokio::task::block_in_place(|| store.delivered(sent.id, now))?;
            return Ok(());
        }
        // A refusal that retrying cannot fix (a bad payload, a revoked key) is given up at once.
        Ok(answer) => (
            answer.status >= 500 || answer.status == 429 || answer.status == 408,
            answer.retry_after_ms,
            format!("HTTP {}: {}", answer.status, payload::bounded(answer.body.trim(), 200)),
        ),
        Err(SendError::Key) => {
            (false, None, sent.result.as_ref().err().map(ToString::to_string).unwrap_or_default())
        }
        Err(error) => (true, None, error.to_string()),
    };
    let outcome = if retryable { schedule.failed(sent.id, now, retry_after, fastrand::f64()) } else { None };
    match outcome {
        Some(AfterFailure::RetryAt(at)) => {
            let row = known.get_mut(&sent.id);
            let attempts = row.as_ref().map_or(1, |row| row.attempts + 1);
            if let Some(row) = row {
                row.attempts = attempts;
            }
            tokio::task::block_in_place(|| store.retry(sent.id, attempts, at, now, &error))?;
            tracing::warn!(delivery = sent.id, attempts, retry_in_ms = at.saturating_sub(now), %error, "delivery failed; retrying");
        }
        Some(AfterFailure::Dead) | None => {
            if outcome.is_none() {
                // Not retried: out of the schedule too.
                schedule.give_up(sent.id);
            }
            known.remove(&sent.id);
            tokio::task::block_in_place(|| store.dead(sent.id, now, &error))?;
            tracing::error!(delivery = sent.id, %error, "delivery given up (see `lifewatch deliveries --state dead`)");
        }
    }
    Ok(())
}
