//! The live monitor: the loop that drives the sans-IO engine from JetStream
//! and the wall clock, persists through the store, and publishes incidents.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, consumer::pull::MessagesErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use lifewatch_core::{RejectReason, Rejection, Timestamp};
use lifewatch_store::{Fed, OutboxEntry, Writer};
use tracing::Instrument;

use crate::connect::backoff;
use crate::error::NatsError;
use crate::options::NatsConfig;
use crate::outbox::{FailureKind, Outbox, Ticket};
use crate::publish::{Outgoing, publish_one};
use crate::streams::{self, ConsumerOwner, CreateStreams, Restored};
use crate::validate::{subject_matches, wall_clock};

/// What the monitor needs besides the store and the engine.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// Connection, streams and consumer.
    pub nats: NatsConfig,
    /// Whether missing streams are created.
    pub create: CreateStreams,
    /// How long past a deadline the monitor waits for late events before it
    /// declares an entity stuck (`live.allowed_lateness`).
    pub allowed_lateness: lifewatch_core::Duration,
    /// How far ahead of the wall clock an event may be timed before it is
    /// rejected as `time_in_future` (`live.max_future`).
    pub max_future: lifewatch_core::Duration,
    /// Where the monitor records its metrics and readiness (`/metrics`,
    /// `/readyz`); `None` records nothing.
    pub telemetry: Option<std::sync::Arc<crate::Telemetry>>,
}

/// Counts of one run of the monitor, for the final log line and for tests.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct MonitorTotals {
    /// Messages taken from the events stream (including redeliveries).
    pub messages: u64,
    /// Events applied.
    pub accepted: u64,
    /// Events whose id was seen before.
    pub duplicates: u64,
    /// Messages rejected and kept.
    pub rejected: u64,
    /// Batches committed.
    pub batches: u64,
    /// Incident transitions published and marked delivered.
    pub published: u64,
    /// Incident transitions the server refused for good, set aside (see `lifewatch outbox`).
    pub set_aside: u64,
    /// Incident transitions still waiting to be published when the monitor
    /// stopped (they are published at the next start).
    pub unpublished: u64,
}

/// The inputs of the monitor loop. The set is closed: everything the loop
/// reacts to is one of these, so the whole behaviour of the monitor is the
/// `match` in [`run_monitor`].
enum Input {
    /// Messages (or pull errors) that were ready together, in delivery order.
    Batch(Vec<PullItem>),
    /// The message stream ended (the consumer was deleted, or the server
    /// refused the pull for good): bind the consumer again.
    StreamEnded,
    /// The one deadline timer fired: the wall clock passed the engine's next
    /// deadline plus the allowed lateness.
    Deadline,
    /// The periodic tick: report progress, retry an outbox that could not be published.
    Tick,
    /// Look for operator requests (`lifewatch ack|resolve|note`, the API).
    Operator,
    /// An incident publish was acknowledged, or failed.
    Published(Option<Settled>),
    /// The shutdown future completed.
    Shutdown,
}

/// Runs the live monitor until `shutdown` completes or an unrecoverable error
/// (the store failed) happens.
///
/// The loop, in mini-redis style: each turn waits for exactly one [`Input`] —
/// a batch of messages, the deadline timer, the periodic tick or shutdown —
/// and handles it to completion before waiting again, so there is never a
/// half-processed batch when shutdown is noticed, and the engine, the store
/// and the acknowledgements always agree:
///
/// 1. **Batch**: validate each message against its subject and the wall
///    clock, feed the accepted ones to the engine, and commit the raw events,
///    the rejected messages and the engine's changes (with their outbox rows)
///    in one store transaction. Only then republish the rejected messages to
///    `lifewatch.rejected.<reason>`, acknowledge every message of the batch,
///    and publish the outbox. A crash before the commit loses nothing (the
///    messages are redelivered); a crash after it re-sends at most a few
///    acknowledgements and outbox messages, which JetStream deduplicates by
///    `Nats-Msg-Id`, and redelivered events are duplicates to the engine.
/// 2. **Deadline**: move the engine's clock to the wall clock minus the
///    allowed lateness, which makes the visits past their deadline stuck, and
///    commit that clock tick with its changes like a batch.
/// 3. **Published**: an incident publish was acknowledged or failed; the
///    outbox publisher ([`Outbox`]) hands out what may go next (the next
///    message of the same subject goes at once, at the server's ack rate).
///    This branch is enabled whenever a publish is in flight.
/// 4. **Tick**: log lag, throughput and latency; retry the outbox after a failure.
/// 5. **Shutdown**: stop fetching (the message stream is dropped), wait up
///    to `outbox_drain` for the outbox to be published (saying how many
///    entries remain if it was not), flush the acknowledgements, return.
///
/// After every input the single deadline timer is re-armed from
/// [`Writer::next_deadline`]: the monitor never scans entities to find due work.
pub async fn run_monitor(
    client: async_nats::Client,
    options: &MonitorOptions,
    writer: &mut Writer,
    shutdown: impl Future<Output = ()>,
) -> Result<MonitorTotals, NatsError> {
    let settings = &options.nats.streams;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(65_536)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let telemetry = options.telemetry.clone();
    if let Some(telemetry) = &telemetry {
        telemetry.attach(&client);
    }
    let streams = streams::ensure_streams(&jetstream, settings, options.create).await?;
    streams.check_subjects()?;
    let lateness = options.allowed_lateness;
    let owner = ConsumerOwner::this_process(writer.path());
    let max_future = options.max_future;

    let mut monitor = Monitor {
        jetstream,
        writer,
        rejected_config: streams.rejected.cached_info().config.clone(),
        lifecycle_stream: settings.lifecycle_stream.clone(),
        incidents_config: streams.incidents.cached_info().config.clone(),
        create: options.create,
        incidents_missing: false,
        totals: MonitorTotals::default(),
        report: Report::new(),
        telemetry,
        checkpoint_name: format!("nats:{}", settings.lifecycle_stream),
        next_sequence: 0,
        fresh_consumer: true,
        owner,
        outbox: Outbox::new(OUTBOX_CHUNK, OUTBOX_IN_FLIGHT),
        in_flight: futures_util::stream::FuturesUnordered::new(),
        acking: std::collections::VecDeque::new(),
    };
    monitor.pump_outbox().await?;

    let checkpoint = monitor.writer.checkpoint(&monitor.checkpoint_name)?;
    monitor.next_sequence = checkpoint.map_or(0, |sequence| sequence.max(0) as u64 + 1);
    let start = (monitor.next_sequence > 0).then_some(monitor.next_sequence);
    let mut lifecycle = Lifecycle { stream: streams.lifecycle, missing: false };
    let mut messages = open_messages(&lifecycle.stream, settings, start, &mut monitor.owner).await?;
    monitor.with_telemetry(|telemetry| telemetry.consumer_bound(true));
    let mut ticker = tokio::time::interval(settings.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut operator_poll = tokio::time::interval(OPERATOR_POLL);
    operator_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(deadline_timer);
    tokio::pin!(shutdown);
    let mut deadline_armed = monitor.arm_deadline(deadline_timer.as_mut(), lateness)?;

    tracing::info!(
        stream = %settings.lifecycle_stream,
        consumer = %settings.consumer,
        lateness_ms = lateness.as_nanos() / 1_000_000,
        "monitor running"
    );
    loop {
        let input = tokio::select! {
            biased;
            () = &mut shutdown => Input::Shutdown,
            () = &mut deadline_timer, if deadline_armed => Input::Deadline,
            batch = messages.next() => match batch {
                Some(batch) => Input::Batch(batch),
                None => Input::StreamEnded,
            },
            _ = ticker.tick() => Input::Tick,
            _ = operator_poll.tick() => Input::Operator,
            // Always enabled while a publish is in flight, so that the
            // messages held back behind it go at the server's ack rate.
            settled = monitor.in_flight.next(), if !monitor.in_flight.is_empty() => Input::Published(settled),
        };
        // Whether the consumer is to be bound again from the next sequence
        // the monitor wants.
        let rebind = match input {
            Input::Batch(mut batch) => {
                fill_batch(&mut batch, &mut messages, settings.batch_size).await;
                let gap = monitor.handle_batch(batch, max_future).await? == Continuity::Gap;
                if gap {
                    tracing::warn!(
                        start = monitor.next_sequence,
                        "messages arrived out of order; binding the consumer again from the first missing one"
                    );
                }
                gap
            }
            Input::StreamEnded => {
                tracing::warn!("message stream ended; binding the consumer again");
                true
            }
            Input::Deadline => {
                let now = wall_clock().ok_or(NatsError::Clock)?;
                monitor.handle_clock(now.saturating_sub(lateness)).await?;
                false
            }
            Input::Published(settled) => {
                if let Some(settled) = settled {
                    monitor.settle(settled).await;
                }
                monitor.collect_settled().await;
                monitor.pump_outbox().await?;
                false
            }
            Input::Tick => {
                monitor.report_progress();
                monitor.note_ack_pending(settings).await;
                monitor.collect_settled().await;
                monitor.outbox.tick();
                monitor.pump_outbox().await?;
                monitor.flush_outbox_marks(1)?;
                false
            }
            Input::Operator => {
                monitor.handle_operator_requests().await?;
                false
            }
            Input::Shutdown => {
                drop(messages);
                return monitor.stop(&client, settings).await;
            }
        };
        monitor.note_outbox();
        if rebind {
            let start = monitor.next_sequence;
            drop(messages);
            monitor.with_telemetry(|telemetry| telemetry.consumer_bound(false));
            match monitor.rebind(&mut lifecycle, settings, start, shutdown.as_mut()).await {
                Ok(Some(rebound)) => {
                    messages = rebound;
                    monitor.with_telemetry(|telemetry| telemetry.consumer_bound(true));
                }
                Ok(None) => return monitor.stop(&client, settings).await,
                Err(error) => return monitor.stop(&client, settings).await.and(Err(error)),
            }
        }
        deadline_armed = monitor.arm_deadline(deadline_timer.as_mut(), lateness)?;
    }
}

/// How often the monitor looks for operator requests: an index lookup
/// that finds nothing nearly always, and a person waits at most this long.
const OPERATOR_POLL: Duration = Duration::from_millis(500);

/// How long a stop waits for the last acknowledgements to be handed over
/// and flushed before it gives up on a server that does not answer.
const STOP_FLUSH_WAIT: Duration = Duration::from_secs(3);

type Messages = futures_util::stream::ReadyChunks<jetstream::consumer::pull::Stream>;
/// A message of a pull, or why the pull failed.
type PullItem = Result<jetstream::Message, jetstream::consumer::pull::MessagesError>;

/// How long a batch waits for more messages when the stream has a backlog.
const FILL_WAIT: Duration = Duration::from_millis(2);

/// Under a backlog (the consumer reports more messages pending), tops the
/// batch up to `batch_size` with what arrives within [`FILL_WAIT`] of each
/// chunk: the pull requests deliver a backlog in chunks smaller than a
/// batch, and every commit costs a sync and rewrites the pages of the
/// entities it touches, so fewer, fuller commits drain a backlog faster. A
/// monitor that keeps up (nothing pending) never waits.
async fn fill_batch(batch: &mut Vec<PullItem>, messages: &mut Messages, batch_size: usize) {
    while batch.len() < batch_size {
        let backlog = match batch.last() {
            Some(Ok(message)) => message.info().is_ok_and(|info| info.pending > 0),
            _ => false,
        };
        if !backlog {
            return;
        }
        match tokio::time::timeout(FILL_WAIT, messages.next()).await {
            Ok(Some(more)) => batch.extend(more),
            Ok(None) | Err(_) => return,
        }
    }
}

async fn open_messages(
    lifecycle: &jetstream::stream::Stream,
    settings: &crate::options::StreamSettings,
    start: Option<u64>,
    owner: &mut ConsumerOwner,
) -> Result<Messages, NatsError> {
    let consumer =
        streams::bind_consumer(lifecycle, &settings.lifecycle_stream, settings, start, owner).await?;
    let stream = consumer
        .stream()
        .max_messages_per_batch(settings.batch_size)
        .heartbeat(settings.heartbeat)
        .expires(streams::PULL_EXPIRY)
        .messages()
        .await
        .map_err(|error| NatsError::Consumer {
            stream: settings.lifecycle_stream.clone(),
            consumer: settings.consumer.clone(),
            source: Box::new(error),
        })?;
    Ok(stream.ready_chunks(settings.batch_size))
}

/// The events stream as the monitor knows it: the handle it consumes from,
/// whose cached information (configuration, creation time) tells a stream
/// deleted and created again apart from the one bound.
struct Lifecycle {
    stream: jetstream::stream::Stream,
    /// Whether the stream was found missing and that was logged.
    missing: bool,
}

struct Monitor<'a> {
    jetstream: jetstream::Context,
    writer: &'a mut Writer,
    /// The rejected stream's configuration when bound, to create it again if it is deleted.
    rejected_config: jetstream::stream::Config,
    lifecycle_stream: String,
    /// The incidents stream's configuration when bound, to create it again if it is deleted.
    incidents_config: jetstream::stream::Config,
    /// Whether deleted streams may be created again.
    create: CreateStreams,
    /// Whether the incidents stream was found missing and that was logged,
    /// so that retrying does not log it again until it is back.
    incidents_missing: bool,
    totals: MonitorTotals,
    report: Report,
    /// Metrics and readiness, when kept.
    telemetry: Option<std::sync::Arc<crate::Telemetry>>,
    /// The store checkpoint that holds the last committed stream sequence.
    checkpoint_name: String,
    /// The stream sequence the engine must see next (0: any, nothing committed yet).
    next_sequence: u64,
    /// Whether the consumer was just bound: its first message may skip
    /// sequences that no longer exist (retention removed them).
    fresh_consumer: bool,
    /// This monitor as the owner of the durable consumer.
    owner: ConsumerOwner,
    /// The outbox publisher: what to read, send, mark delivered or set aside
    /// (at most one message per incident subject in flight, see [`Outbox`]).
    outbox: Outbox,
    /// Incident publishes waiting for JetStream's answer, settled as they come.
    in_flight: futures_util::stream::FuturesUnordered<PublishInFlight>,
    /// Tasks sending the acknowledgements of committed batches, oldest first.
    acking: std::collections::VecDeque<tokio::task::JoinHandle<()>>,
}

/// An incident publish's answer: the hand-out and what the server said.
type Settled = (Ticket, Result<(), PublishError>);
/// An incident publish awaiting its answer.
type PublishInFlight = std::pin::Pin<Box<dyn Future<Output = Settled> + Send>>;

/// Batches whose acknowledgements may be on their way at once.
const ACK_TASKS: usize = 4;
/// Outbox entries read and published at a time.
const OUTBOX_CHUNK: usize = 1_000;
/// Incident publishes in flight at most: well under the JetStream context's
/// `max_ack_inflight` (65,536), whose permits only answers read here free.
const OUTBOX_IN_FLIGHT: usize = 16_384;
/// Acknowledged outbox entries marked delivered in one transaction.
const MARK_EVERY: usize = 5_000;

/// Whether a batch continued the stream without a hole.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Continuity {
    /// Every message was the next sequence, or an old one again.
    InOrder,
    /// A message skipped ahead: earlier ones are still due (redelivery after
    /// a lost connection). The messages from the hole on were left unprocessed.
    Gap,
}

/// A message of the batch that was rejected, waiting to be republished.
struct RejectedMessage {
    reason: RejectReason,
    detail: String,
    subject: String,
    sequence: u64,
    payload: Bytes,
}

/// The last line of a monitor's log: its totals, at info when every incident
/// transition was published and at warn when some wait for the next start
/// (the outbox could not be drained within `outbox_drain`).
fn log_stopped(totals: &MonitorTotals, outbox_drain: Duration) {
    // `tracing` fixes an event's level where it is written, so the two
    // levels need two call sites; the macro writes the shared fields once.
    macro_rules! stopped {
        ($level:expr, $($rest:tt)*) => {
            tracing::event!(
                $level,
                accepted = totals.accepted,
                duplicates = totals.duplicates,
                rejected = totals.rejected,
                published = totals.published,
                set_aside = totals.set_aside,
                $($rest)*
            )
        };
    }
    if totals.unpublished == 0 {
        stopped!(tracing::Level::INFO, "monitor stopped cleanly; every incident transition was published");
    } else {
        stopped!(
            tracing::Level::WARN,
            unpublished = totals.unpublished,
            drain_ms = outbox_drain.as_millis() as u64,
            "monitor stopped with incident transitions not yet published; \
             they are published at the next start"
        );
    }
}

impl Monitor<'_> {
    /// Shutdown, once fetching stopped: waits up to `outbox_drain` for the
    /// outbox to be published (saying how many entries remain if it was
    /// not), flushes the acknowledgements, and returns the totals.
    async fn stop(
        &mut self,
        client: &async_nats::Client,
        settings: &crate::options::StreamSettings,
    ) -> Result<MonitorTotals, NatsError> {
        tracing::info!("shutting down: fetching stopped");
        let unpublished = self.drain_outbox(settings.outbox_drain).await?;
        self.totals.unpublished = unpublished;
        // Bounded: with the server gone, the client holds acknowledgements
        // and a flush until it reconnects, and a stop must not wait for that
        // (the messages not acknowledged are redelivered as duplicates).
        if tokio::time::timeout(STOP_FLUSH_WAIT, self.finish_acks()).await.is_err() {
            tracing::warn!(
                "acknowledgements not handed over in time; their messages will be redelivered as duplicates"
            );
        }
        match tokio::time::timeout(STOP_FLUSH_WAIT, client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not flush the last acknowledgements"),
            Err(_) => tracing::warn!(
                wait_ms = STOP_FLUSH_WAIT.as_millis() as u64,
                "could not flush the last acknowledgements: the server does not answer"
            ),
        }
        streams::release_consumer(&self.jetstream, &self.lifecycle_stream, &settings.consumer, &self.owner)
            .await;
        self.report_progress();
        let totals = self.totals;
        log_stopped(&totals, settings.outbox_drain);
        Ok(totals)
    }

    /// Binds the consumer again from stream sequence `start` (0: from the
    /// beginning), with backoff, until it works, and marks the consumer
    /// fresh; `None` when `shutdown` completes first, an error when the
    /// consumer now belongs to another running monitor (which took it over
    /// while this one was cut off for longer than
    /// [`streams::OWNER_IDLE_LIMIT`]): taking it back would disrupt that
    /// one, so this monitor stops instead (cleanly: the caller acknowledges
    /// and publishes what was committed, then returns the error).
    ///
    /// When binding fails because the events stream is gone (deleted under
    /// the monitor), it is created again with the configuration it had,
    /// unless `--no-create`, in which case the monitor logs why once and
    /// keeps trying with backoff. A stream created again — by the monitor or
    /// anyone else, told by its creation time — numbers its messages from 1,
    /// so the monitor then reads it from its beginning: the sequences it
    /// committed belong to the stream that was deleted.
    async fn rebind(
        &mut self,
        lifecycle: &mut Lifecycle,
        settings: &crate::options::StreamSettings,
        start: u64,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Option<Messages>, NatsError> {
        let mut start = start;
        let mut attempt = 0;
        self.fresh_consumer = true;
        loop {
            attempt += 1;
            if self.follow_new_lifecycle(lifecycle).await {
                start = 0;
            }
            match open_messages(&lifecycle.stream, settings, (start > 0).then_some(start), &mut self.owner)
                .await
            {
                Ok(messages) => {
                    lifecycle.missing = false;
                    if start == 0 {
                        self.next_sequence = 0;
                    }
                    return Ok(Some(messages));
                }
                Err(error @ NatsError::ConsumerInUse { .. }) => return Err(error),
                Err(error) => {
                    let config = lifecycle.stream.cached_info().config.clone();
                    match streams::restore_stream(&self.jetstream, &config, self.create).await {
                        Restored::Recreated => {
                            tracing::warn!(
                                stream = %config.name,
                                "events stream was deleted while the monitor ran; created it again \
                                 with the configuration it had, and reading it from its beginning"
                            );
                            continue;
                        }
                        Restored::Missing(reason) if !lifecycle.missing => {
                            lifecycle.missing = true;
                            tracing::error!(
                                stream = %config.name,
                                %reason,
                                "events stream is missing; no events are read until it exists again"
                            );
                        }
                        _ => {}
                    }
                    let pause = backoff(attempt);
                    tracing::warn!(%error, attempt, retry_in_ms = pause.as_millis() as u64, "cannot bind the consumer");
                    tokio::select! {
                        () = shutdown.as_mut() => return Ok(None),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Whether the events stream now on the server is another one than the
    /// one bound (deleted and created again); if so, binds to it instead.
    async fn follow_new_lifecycle(&self, lifecycle: &mut Lifecycle) -> bool {
        let name = lifecycle.stream.cached_info().config.name.clone();
        let Ok(current) = self.jetstream.get_stream(&name).await else { return false };
        if current.cached_info().created == lifecycle.stream.cached_info().created {
            return false;
        }
        lifecycle.stream = current;
        true
    }

    /// After an incident publish found no stream: whether the incidents
    /// stream itself is gone, and if so creates it again (unless
    /// `--no-create`). Logs a re-creation once, and a stream that stays
    /// missing once until it is back.
    async fn restore_incidents(&mut self) -> Restored {
        let restored = streams::restore_stream(&self.jetstream, &self.incidents_config, self.create).await;
        let stream = &self.incidents_config.name;
        match &restored {
            Restored::Present => self.incidents_missing = false,
            Restored::Recreated => {
                self.incidents_missing = false;
                tracing::warn!(
                    %stream,
                    "incidents stream was deleted while the monitor ran; created it again \
                     with the configuration it had"
                );
            }
            Restored::Missing(reason) => {
                if !self.incidents_missing {
                    tracing::error!(
                        %stream,
                        %reason,
                        "incidents stream is missing; incident transitions wait in the outbox \
                         and are retried until it exists again"
                    );
                }
                self.incidents_missing = true;
            }
            Restored::Unknown(_) => {}
        }
        restored
    }

    async fn handle_batch(
        &mut self,
        batch: Vec<PullItem>,
        max_future: lifewatch_core::Duration,
    ) -> Result<Continuity, NatsError> {
        let now = wall_clock().ok_or(NatsError::Clock)?;
        let received = Instant::now();
        let mut messages = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(message) => messages.push(message),
                Err(error) => log_pull_error(&error),
            }
        }
        if messages.is_empty() {
            return Ok(Continuity::InOrder);
        }
        // `instrument` rather than a guard held across the awaits below: the
        // span must not stay entered on the thread while this task is parked.
        let span = tracing::debug_span!("batch", size = messages.len());
        self.process_batch(messages, now, received, max_future).instrument(span).await
    }

    async fn process_batch(
        &mut self,
        mut messages: Vec<jetstream::Message>,
        now: Timestamp,
        received: Instant,
        max_future: lifewatch_core::Duration,
    ) -> Result<Continuity, NatsError> {
        let mut rejected: Vec<RejectedMessage> = Vec::new();
        let mut duplicates = 0u64;
        let mut lag = None;
        // Per event type, summed over the batch, only when metrics are kept.
        let mut accepted_types: Vec<(&'static str, u64)> = Vec::new();
        let counting = self.telemetry.is_some();
        let mut oldest_published: Option<i128> = None;
        let mut continuity = Continuity::InOrder;
        let mut processed = 0;
        for message in &messages {
            let (sequence, pending, published) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending, Some(info.published.unix_timestamp_nanos())),
                Err(_) => (0, 0, None),
            };
            if self.next_sequence > 0 && sequence < self.next_sequence {
                // Committed before (its acknowledgement was lost): acknowledge again, change nothing.
                duplicates += 1;
                processed += 1;
                continue;
            }
            if self.next_sequence > 0 && sequence > self.next_sequence && !self.fresh_consumer {
                continuity = Continuity::Gap;
                break;
            }
            self.fresh_consumer = false;
            self.next_sequence = sequence + 1;
            processed += 1;
            lag = Some(pending);
            if let Some(published) = published {
                self.report.latency(now, published);
                oldest_published = Some(oldest_published.map_or(published, |oldest| oldest.min(published)));
            }
            // Parsed here rather than by `Writer::feed_checked`, so that the
            // origin string is only formatted for a rejected message.
            let fed = match lifewatch_core::parse_event(&message.payload)
                .and_then(|event| check_message(&message.subject, &event, now, max_future).map(|()| event))
            {
                Ok(event) => {
                    let fed = self.writer.feed_event(&message.payload, &event);
                    if counting && fed == Fed::Accepted {
                        let name = event.event_type.as_str();
                        match accepted_types.iter_mut().find(|(known, _)| *known == name) {
                            Some((_, count)) => *count += 1,
                            None => accepted_types.push((name, 1)),
                        }
                    }
                    fed
                }
                Err(rejection) => {
                    let origin = format!("nats:{}:{sequence}:{}", self.lifecycle_stream, message.subject);
                    self.writer.reject(&message.payload, &rejection, &origin);
                    Fed::Rejected(rejection)
                }
            };
            match fed {
                Fed::Accepted => {}
                Fed::Duplicate => duplicates += 1,
                Fed::Rejected(rejection) => {
                    tracing::debug!(subject = %message.subject, sequence, reason = %rejection.reason, "message rejected");
                    rejected.push(RejectedMessage {
                        reason: rejection.reason,
                        detail: rejection.detail,
                        subject: message.subject.to_string(),
                        sequence,
                        payload: message.payload.clone(),
                    })
                }
            }
        }
        if self.next_sequence > 0 {
            let committed_through = i64::try_from(self.next_sequence - 1).unwrap_or(i64::MAX);
            self.writer.set_checkpoint(&self.checkpoint_name, committed_through);
        }
        let fed = Instant::now();
        let committed = tokio::task::block_in_place(|| self.writer.commit());
        if committed.is_err() {
            self.with_telemetry(|telemetry| telemetry.commit_result(false));
        }
        let committed = committed?;
        if let Some(telemetry) = &self.telemetry {
            let mut by_reason: Vec<(RejectReason, u64)> = Vec::new();
            for message in &rejected {
                match by_reason.iter_mut().find(|(reason, _)| *reason == message.reason) {
                    Some((_, count)) => *count += 1,
                    None => by_reason.push((message.reason, 1)),
                }
            }
            let receipt_to_commit = oldest_published.and_then(|published| {
                let nanos = i128::from(wall_clock()?.unix_nanos()) - published;
                u64::try_from(nanos.max(0)).ok().map(Duration::from_nanos)
            });
            let figures = crate::BatchFigures {
                accepted: accepted_types,
                rejected: by_reason,
                duplicates,
                consumer_pending: lag,
                commit: fed.elapsed(),
                receipt_to_commit,
            };
            telemetry.batch(&figures, &committed);
        }
        self.report.phases[0] += fed.duration_since(received);
        self.report.phases[1] += fed.elapsed();
        let acking = Instant::now();

        // Committed: now the rejected messages go to their stream, and only
        // then is every message of the batch acknowledged (on a task of their own).
        messages.truncate(processed);
        let count = messages.len() as u64;
        let rejected_count = rejected.len() as u64;
        self.acknowledge(messages, rejected).await;

        self.totals.messages += count;
        self.totals.accepted += count - duplicates - rejected_count;
        self.totals.duplicates += duplicates;
        self.totals.rejected += rejected_count;
        self.totals.batches += 1;
        self.report.phases[2] += acking.elapsed();
        self.report.batch(count, received.elapsed(), lag);
        let publishing = Instant::now();
        if committed.transitions > 0 {
            self.outbox.committed();
        }
        // Acknowledgements that arrived meanwhile are collected here too:
        // under a backlog the batch branch of the loop is always ready first.
        self.collect_settled().await;
        self.pump_outbox().await?;
        self.report.phases[3] += publishing.elapsed();
        Ok(continuity)
    }

    /// Acknowledges the messages of a committed batch on a task of their own,
    /// so that the next batch is fed and committed meanwhile. Acknowledging is
    /// fire-and-forget: a lost one only makes JetStream redeliver a message
    /// that is then a duplicate. [`Monitor::finish_acks`] waits for them.
    /// The batch's rejected messages are republished first, all at once.
    async fn acknowledge(&mut self, messages: Vec<jetstream::Message>, rejected: Vec<RejectedMessage>) {
        while self.acking.len() >= ACK_TASKS {
            self.finish_oldest_ack().await;
        }
        let jetstream = self.jetstream.clone();
        let lifecycle_stream = self.lifecycle_stream.clone();
        let rejected_config = self.rejected_config.clone();
        let create = self.create;
        self.acking.push_back(tokio::spawn(async move {
            if !rejected.is_empty() {
                republish_all_rejected(&jetstream, &lifecycle_stream, &rejected_config, create, &rejected).await;
            }
            for message in &messages {
                if let Err(error) = message.ack().await {
                    tracing::warn!(%error, "acknowledgement not sent; the message will be redelivered as a duplicate");
                }
            }
        }));
    }

    async fn finish_oldest_ack(&mut self) {
        if let Some(task) = self.acking.pop_front()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "acknowledging task failed; its messages will be redelivered as duplicates");
        }
    }

    /// Waits until every acknowledgement has been handed to the client.
    async fn finish_acks(&mut self) {
        while !self.acking.is_empty() {
            self.finish_oldest_ack().await;
        }
    }

    /// Moves the engine's clock to `watermark` and commits the tick with its changes.
    /// Applies the operator requests waiting in the store and commits
    /// their transitions, which go out like any other.
    async fn handle_operator_requests(&mut self) -> Result<(), NatsError> {
        let decided = tokio::task::block_in_place(|| self.writer.apply_operator_requests())?;
        if decided.is_empty() {
            return Ok(());
        }
        let committed = tokio::task::block_in_place(|| self.writer.commit());
        self.with_telemetry(|telemetry| telemetry.commit_result(committed.is_ok()));
        let committed = committed?;
        for action in &decided {
            tracing::info!(
                id = action.id,
                incident = %action.incident_id,
                action = action.action.as_str(),
                by = %action.by,
                state = %action.state,
                refusal = action.refusal.as_deref().unwrap_or(""),
                "operator action"
            );
        }
        if committed.transitions > 0 {
            self.outbox.committed();
            self.pump_outbox().await?;
        }
        Ok(())
    }

    async fn handle_clock(&mut self, watermark: Timestamp) -> Result<(), NatsError> {
        self.writer.tick(watermark);
        let committed = tokio::task::block_in_place(|| self.writer.commit());
        self.with_telemetry(|telemetry| telemetry.commit_result(committed.is_ok()));
        let committed = committed?;
        self.with_telemetry(|telemetry| telemetry.incidents(&committed, None));
        tracing::debug!(transitions = committed.transitions, %watermark, "clock moved");
        if committed.transitions > 0 {
            self.outbox.committed();
            self.pump_outbox().await?;
        }
        Ok(())
    }

    /// Does what the outbox publisher asks until it asks for nothing more:
    /// sends what it hands out and reads the store when it wants more
    /// entries; then writes the entries set aside, and the delivered ones
    /// once [`MARK_EVERY`] wait.
    ///
    /// Delivered entries are marked in bulk (at least every [`MARK_EVERY`],
    /// on every tick and at shutdown) rather than once per batch, which
    /// would cost a second synced transaction per batch. A crash before the
    /// mark re-sends those entries, which JetStream drops as duplicates of
    /// their `Nats-Msg-Id`.
    async fn pump_outbox(&mut self) -> Result<(), NatsError> {
        loop {
            while let Some((ticket, row)) = self.outbox.next_message() {
                self.publish(ticket, row).await;
            }
            // What is taken from the publisher is written before the store
            // is read again, as its contract asks.
            self.flush_outbox_marks(MARK_EVERY)?;
            let Some(after) = self.outbox.read_request() else { break };
            let rows = tokio::task::block_in_place(|| self.writer.pending_outbox(after, OUTBOX_CHUNK))?;
            self.outbox.rows_read(rows);
        }
        Ok(())
    }

    /// Publishes one outbox entry; its answer comes back as [`Input::Published`].
    async fn publish(&mut self, ticket: Ticket, row: OutboxEntry) {
        // The outbox id is stable across restarts, so a re-send after
        // a crash carries the same Nats-Msg-Id and is dropped as a duplicate.
        let message = Outgoing {
            message_id: Some(format!("{}:{}", row.incident_id, row.id)),
            subject: row.subject,
            payload: Bytes::from(row.payload),
        };
        match publish_one(&self.jetstream, &message).await {
            Ok(ack) => {
                self.in_flight.push(Box::pin(async move { (ticket, ack.await.map(drop)) }));
            }
            Err(error) => {
                let kind = classify(&error, None);
                self.note_failure(ticket, &message.subject, &error, kind);
            }
        }
    }

    /// Notes the answer to one incident publish.
    async fn settle(&mut self, (ticket, result): Settled) {
        let error = match result {
            Ok(()) => {
                self.outbox.acked(ticket);
                self.with_telemetry(crate::Telemetry::outbox_progressed);
                return;
            }
            Err(error) => error,
        };
        let Some(subject) = self.outbox.subject(ticket).map(str::to_string) else {
            // A publish from before a rewind: the entry was handed out again.
            return;
        };
        // No stream answered. Either the incidents stream is gone (deleted
        // under the monitor), which must not set every entry aside: it is
        // created again and the entry retried; or it exists but does not
        // take this subject, which retrying cannot fix.
        let (stream, recreated) = match error.kind() {
            PublishErrorKind::StreamNotFound => match self.restore_incidents().await {
                Restored::Present => (self.stream_for(&subject).await, false),
                Restored::Recreated => (None, true),
                Restored::Missing(_) | Restored::Unknown(_) => (None, false),
            },
            _ => (None, false),
        };
        let kind = classify(&error, stream);
        self.note_failure(ticket, &subject, &error, kind);
        if recreated {
            // The stream is back: resend at once rather than at the next tick.
            self.outbox.tick();
        }
    }

    /// Whether a stream takes `subject`: `Some(false)` only when the server
    /// said that none does (no responders also means JetStream is not
    /// answering yet, after a restart, which retrying fixes).
    async fn stream_for(&self, subject: &str) -> Option<bool> {
        use async_nats::jetstream::context::GetStreamByNameErrorKind;
        match self.jetstream.stream_by_subject(subject).await {
            Ok(_) => Some(true),
            Err(error) => match error.kind() {
                GetStreamByNameErrorKind::NotFound | GetStreamByNameErrorKind::InvalidSubject => Some(false),
                _ => None,
            },
        }
    }

    /// Hands a failed publish to the outbox publisher, and logs it once.
    fn note_failure(&mut self, ticket: Ticket, subject: &str, error: &PublishError, kind: FailureKind) {
        let permanent = matches!(kind, FailureKind::Permanent(_));
        if !self.outbox.failed(ticket, kind) {
            return;
        }
        if permanent {
            tracing::error!(
                id = ticket.id,
                %subject,
                %error,
                "incident transition refused by the server for good; set aside (see `lifewatch outbox`)"
            );
        } else {
            tracing::warn!(
                id = ticket.id,
                %subject,
                stream = %self.incidents_config.name,
                %error,
                "incident not published yet; will retry"
            );
        }
    }

    /// Notes the answers to incident publishes that already arrived, without waiting.
    async fn collect_settled(&mut self) {
        use futures_util::FutureExt;
        while let Some(Some(settled)) = self.in_flight.next().now_or_never() {
            self.settle(settled).await;
        }
    }

    /// Writes the entries set aside at once, and the delivered ones once at
    /// least `at_least` wait.
    fn flush_outbox_marks(&mut self, at_least: usize) -> Result<(), NatsError> {
        let set_aside = self.outbox.take_set_aside();
        if !set_aside.is_empty() {
            tokio::task::block_in_place(|| self.writer.set_aside(&set_aside))?;
            self.totals.set_aside += set_aside.len() as u64;
        }
        let waiting = self.outbox.delivered_waiting();
        if waiting == 0 || waiting < at_least {
            return Ok(());
        }
        let ids = self.outbox.take_delivered();
        tokio::task::block_in_place(|| self.writer.mark_delivered(&ids))?;
        self.totals.published += ids.len() as u64;
        Ok(())
    }

    /// At shutdown: publishes the outbox for at most `limit`, retrying after
    /// failures with backoff, and returns how many entries still wait.
    async fn drain_outbox(&mut self, limit: Duration) -> Result<u64, NatsError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut attempt = 0;
        loop {
            self.pump_outbox().await?;
            if self.outbox.is_idle() || tokio::time::Instant::now() >= deadline {
                break;
            }
            if self.in_flight.is_empty() {
                if !self.outbox.paused() {
                    break;
                }
                attempt += 1;
                if tokio::time::timeout_at(deadline, tokio::time::sleep(backoff(attempt))).await.is_err() {
                    break;
                }
                self.outbox.tick();
                continue;
            }
            match tokio::time::timeout_at(deadline, self.in_flight.next()).await {
                Ok(Some(settled)) => self.settle(settled).await,
                Ok(None) => {}
                Err(_) => break,
            }
        }
        self.flush_outbox_marks(1)?;
        let remaining = tokio::task::block_in_place(|| self.writer.pending_outbox_count())?;
        Ok(remaining)
    }

    /// Sets the deadline timer to the wall-clock instant at which the engine's
    /// next deadline plus the allowed lateness has passed; returns whether it is armed.
    fn arm_deadline(
        &mut self,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
        lateness: lifewatch_core::Duration,
    ) -> Result<bool, NatsError> {
        let Some(deadline) = self.writer.next_deadline() else { return Ok(false) };
        // The engine makes a visit stuck when its deadline is strictly before
        // the clock, so fire one millisecond after deadline + lateness.
        let due =
            deadline.saturating_add(lateness).saturating_add(lifewatch_core::Duration::from_nanos(1_000_000));
        let now = wall_clock().ok_or(NatsError::Clock)?;
        let wait = due.since(now).as_nanos().max(0) as u64;
        timer.reset(tokio::time::Instant::now() + Duration::from_nanos(wait));
        Ok(true)
    }

    /// Runs `record` on the telemetry, when metrics are kept.
    fn with_telemetry(&self, record: impl FnOnce(&crate::Telemetry)) {
        if let Some(telemetry) = &self.telemetry {
            record(telemetry);
        }
    }

    /// Tells the telemetry whether the outbox has transitions waiting.
    fn note_outbox(&self) {
        self.with_telemetry(|telemetry| telemetry.note_outbox(usize::from(!self.outbox.is_idle())));
    }

    /// Asks the server how many delivered messages wait for their
    /// acknowledgement (bounded: a slow answer is skipped).
    async fn note_ack_pending(&self, settings: &crate::options::StreamSettings) {
        let Some(telemetry) = &self.telemetry else { return };
        let ask = async {
            let stream = self.jetstream.get_stream(&self.lifecycle_stream).await.ok()?;
            stream.consumer_info(&settings.consumer).await.ok()
        };
        if let Ok(Some(info)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
            telemetry.ack_pending(info.num_ack_pending as u64);
            telemetry.consumer_pending(info.num_pending);
        }
    }

    fn report_progress(&mut self) {
        self.report.log(&self.totals);
    }
}

/// Whether retrying a failed incident publish can help. Refusals that
/// retrying cannot fix are permanent: a message over the server's
/// `max_payload` or the stream's `max_msg_size`, an invalid subject, and no
/// stream for the subject (`stream_exists`: what the server said when asked,
/// `None` when it could not be asked). Timeouts, lost connections and
/// anything else are retried.
fn classify(error: &PublishError, stream_exists: Option<bool>) -> FailureKind {
    use std::error::Error as _;
    let permanent = match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => true,
        PublishErrorKind::StreamNotFound => stream_exists == Some(false),
        PublishErrorKind::Other => error.source().is_some_and(|source| {
            source.downcast_ref::<async_nats::subject::SubjectError>().is_some()
                || source.downcast_ref::<async_nats::jetstream::Error>().is_some_and(|error| {
                    error.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
                })
        }),
        _ => false,
    };
    if permanent { FailureKind::Permanent(error.to_string()) } else { FailureKind::Retryable }
}

/// The monitor's own checks of a parsed event: its subject agrees with the
/// payload, and it is not timed more than `max_future` ahead of the wall clock.
fn check_message(
    subject: &str,
    event: &lifewatch_core::Event<'_>,
    now: Timestamp,
    max_future: lifewatch_core::Duration,
) -> Result<(), Rejection> {
    if !subject_matches(subject, event) {
        return Err(Rejection::new(
            RejectReason::SubjectMismatch,
            format!("arrived on {subject:?} but the event belongs on {:?}", event.nats_subject()),
        ));
    }
    crate::validate::check_future(event, now, max_future)
}

/// Publishes the rejected messages of a batch, all at once, to their
/// stream. When no stream answered because the rejected stream itself is
/// gone (deleted under the monitor), it is created again (unless
/// `--no-create`) and those messages are sent once more. Failures are
/// logged: the messages are kept in the store either way.
async fn republish_all_rejected(
    jetstream: &jetstream::Context,
    lifecycle_stream: &str,
    rejected_config: &jetstream::stream::Config,
    create: CreateStreams,
    messages: &[RejectedMessage],
) {
    let send = |message| republish_rejected(jetstream, lifecycle_stream, message);
    let results = futures_util::future::join_all(messages.iter().map(send)).await;
    let mut failed: Vec<(&RejectedMessage, PublishError)> = messages
        .iter()
        .zip(results)
        .filter_map(|(message, result)| result.err().map(|error| (message, error)))
        .collect();
    if failed.iter().any(|(_, error)| error.kind() == PublishErrorKind::StreamNotFound) {
        match streams::restore_stream(jetstream, rejected_config, create).await {
            Restored::Recreated => {
                tracing::warn!(
                    stream = %rejected_config.name,
                    "rejected-messages stream was deleted while the monitor ran; created it again \
                     with the configuration it had"
                );
                let again =
                    futures_util::future::join_all(failed.iter().map(|(message, _)| send(message))).await;
                failed = failed
                    .into_iter()
                    .zip(again)
                    .filter_map(|((message, _), result)| result.err().map(|error| (message, error)))
                    .collect();
            }
            Restored::Missing(reason) => {
                tracing::error!(stream = %rejected_config.name, %reason, "rejected-messages stream is missing");
            }
            Restored::Present | Restored::Unknown(_) => {}
        }
    }
    for (message, error) in failed {
        tracing::warn!(
            subject = %streams::rejected_subject(message.reason),
            stream = %rejected_config.name,
            %error,
            "rejected message kept in the store but not republished"
        );
    }
}

/// Publishes a rejected message unchanged to `lifewatch.rejected.<reason>`,
/// with where it came from in headers.
async fn republish_rejected(
    jetstream: &jetstream::Context,
    lifecycle_stream: &str,
    message: &RejectedMessage,
) -> Result<(), PublishError> {
    let mut headers = HeaderMap::new();
    let id = format!("{}:{}", lifecycle_stream, message.sequence);
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(streams::ORIGINAL_SUBJECT_HEADER, message.subject.as_str());
    headers.insert(streams::REJECT_REASON_HEADER, message.reason.as_str());
    headers.insert(streams::REJECT_DETAIL_HEADER, header_safe(&message.detail).as_str());
    headers.insert(streams::ORIGINAL_SEQUENCE_HEADER, message.sequence.to_string().as_str());
    let subject = streams::rejected_subject(message.reason);
    jetstream.publish_with_headers(subject, headers, message.payload.clone()).await?.await.map(drop)
}

fn log_pull_error(error: &jetstream::consumer::pull::MessagesError) {
    match error.kind() {
        MessagesErrorKind::MissingHeartbeat => {
            tracing::warn!("missed idle heartbeat from the server; waiting for the connection to recover")
        }
        MessagesErrorKind::NoResponders => tracing::warn!("JetStream not responding; retrying"),
        _ => tracing::warn!(%error, "pull request failed; retrying"),
    }
}

/// Header values cannot hold line breaks.
fn header_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect()
}

/// Throughput, lag and latency since the last report.
struct Report {
    since: Instant,
    messages: u64,
    lag: Option<u64>,
    latencies_ms: Vec<u32>,
    seen: u64,
    /// Time spent validating and feeding, committing, acknowledging and publishing the outbox.
    phases: [Duration; 4],
    batch_time: Duration,
    batches: u64,
}

impl Report {
    fn new() -> Report {
        Report {
            since: Instant::now(),
            messages: 0,
            lag: None,
            latencies_ms: Vec::new(),
            seen: 0,
            phases: [Duration::ZERO; 4],
            batch_time: Duration::ZERO,
            batches: 0,
        }
    }

    /// Notes the delay from the message's arrival in the stream to its processing.
    fn latency(&mut self, now: Timestamp, published_nanos: i128) {
        // Keep one sample in 16 once many are held: enough for percentiles.
        self.seen += 1;
        if self.latencies_ms.len() >= 65_536 && !self.seen.is_multiple_of(16) {
            return;
        }
        let delay_ms = (i128::from(now.unix_nanos()) - published_nanos).max(0) / 1_000_000;
        self.latencies_ms.push(delay_ms.min(i128::from(u32::MAX)) as u32);
    }

    fn batch(&mut self, messages: u64, took: Duration, lag: Option<u64>) {
        self.messages += messages;
        self.batches += 1;
        self.batch_time += took;
        if lag.is_some() {
            self.lag = lag;
        }
    }

    fn log(&mut self, totals: &MonitorTotals) {
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-9);
        self.latencies_ms.sort_unstable();
        let percentile = |p: usize| -> u32 {
            if self.latencies_ms.is_empty() {
                0
            } else {
                self.latencies_ms[(self.latencies_ms.len() - 1) * p / 100]
            }
        };
        tracing::info!(
            consumer_lag = self.lag.unwrap_or(0),
            events_per_s = (self.messages as f64 / elapsed).round() as u64,
            latency_p50_ms = percentile(50),
            latency_p99_ms = percentile(99),
            batches = self.batches,
            batch_ms_mean = (self.batch_time.as_millis() as u64).checked_div(self.batches).unwrap_or(0),
            feed_ms = self.phases[0].as_millis() as u64,
            commit_ms = self.phases[1].as_millis() as u64,
            ack_ms = self.phases[2].as_millis() as u64,
            outbox_ms = self.phases[3].as_millis() as u64,
            accepted_total = totals.accepted,
            duplicates_total = totals.duplicates,
            rejected_total = totals.rejected,
            incidents_published_total = totals.published,
            incidents_set_aside_total = totals.set_aside,
            "progress"
        );
        *self = Report::new();
    }
}
