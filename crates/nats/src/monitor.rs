//! The live monitor: the loop that drives the sans-IO engine from JetStream
//! and the wall clock, persists through the store, and publishes incidents.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull::MessagesErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use lifewatch_core::{RejectReason, Rejection, Timestamp};
use lifewatch_store::{Fed, OutboxEntry, Writer};

use crate::connect::backoff;
use crate::error::NatsError;
use crate::options::NatsConfig;
use crate::publish::{Outgoing, publish_one};
use crate::streams::{self, CreateStreams};
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
    /// An incident publish was acknowledged (or failed) while outbox rows
    /// wait for it.
    Published(Option<(i64, String, bool)>),
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
/// 3. **Tick**: log lag, throughput and latency; retry the outbox.
/// 4. **Shutdown**: stop fetching (the message stream is dropped), publish
///    the outbox, flush the acknowledgements, return.
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
    let streams = streams::ensure_streams(&jetstream, settings, options.create).await?;
    let lateness = options.allowed_lateness;
    let max_future = options.max_future;

    let mut monitor = Monitor {
        jetstream,
        writer,
        rejected_stream: settings.rejected_stream.clone(),
        lifecycle_stream: settings.lifecycle_stream.clone(),
        totals: MonitorTotals::default(),
        report: Report::new(),
        outbox_backlog: true,
        checkpoint_name: format!("nats:{}", settings.lifecycle_stream),
        next_sequence: 0,
        fresh_consumer: true,
        acknowledged: Vec::new(),
        sent_through: 0,
        in_flight: futures_util::stream::FuturesOrdered::new(),
        in_flight_subjects: std::collections::HashMap::new(),
        deferred: std::collections::VecDeque::new(),
        acking: std::collections::VecDeque::new(),
    };
    monitor.deliver_outbox().await?;

    let checkpoint = monitor.writer.checkpoint(&monitor.checkpoint_name)?;
    monitor.next_sequence = checkpoint.map_or(0, |sequence| sequence.max(0) as u64 + 1);
    let start = (monitor.next_sequence > 0).then_some(monitor.next_sequence);
    let mut messages = open_messages(&streams.lifecycle, settings, start).await?;
    let mut ticker = tokio::time::interval(settings.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            settled = monitor.in_flight.next(), if !monitor.deferred.is_empty() && !monitor.in_flight.is_empty() => {
                Input::Published(settled)
            }
        };
        match input {
            Input::Batch(mut batch) => {
                fill_batch(&mut batch, &mut messages, settings.batch_size).await;
                if monitor.handle_batch(batch, max_future).await? == Continuity::Gap {
                    let start = monitor.next_sequence;
                    tracing::warn!(
                        start,
                        "messages arrived out of order; binding the consumer again from the first missing one"
                    );
                    messages = rebind(&streams.lifecycle, settings, start).await;
                    monitor.fresh_consumer = true;
                }
            }
            Input::StreamEnded => {
                tracing::warn!("message stream ended; binding the consumer again");
                messages = rebind(&streams.lifecycle, settings, monitor.next_sequence).await;
                monitor.fresh_consumer = true;
            }
            Input::Deadline => {
                let now = wall_clock().ok_or(NatsError::Clock)?;
                monitor.handle_clock(now.saturating_sub(lateness)).await?;
            }
            Input::Published(settled) => {
                if settled.is_none_or(|settled| monitor.settle_one(settled)) {
                    monitor.deliver_outbox().await?;
                }
            }
            Input::Tick => {
                monitor.report_progress();
                monitor.settle_publishes(true).await;
                if monitor.outbox_backlog {
                    monitor.deliver_outbox().await?;
                    monitor.settle_publishes(true).await;
                }
                monitor.mark_delivered(1).await?;
            }
            Input::Shutdown => {
                tracing::info!("shutting down: fetching stopped");
                drop(messages);
                monitor.deliver_outbox().await?;
                monitor.settle_publishes(true).await;
                monitor.mark_delivered(1).await?;
                monitor.finish_acks().await;
                if let Err(error) = client.flush().await {
                    tracing::warn!(%error, "could not flush the last acknowledgements");
                }
                monitor.report_progress();
                tracing::info!(
                    accepted = monitor.totals.accepted,
                    duplicates = monitor.totals.duplicates,
                    rejected = monitor.totals.rejected,
                    published = monitor.totals.published,
                    "monitor stopped cleanly"
                );
                return Ok(monitor.totals);
            }
        }
        deadline_armed = monitor.arm_deadline(deadline_timer.as_mut(), lateness)?;
    }
}

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
) -> Result<Messages, NatsError> {
    let consumer = streams::bind_consumer(lifecycle, &settings.lifecycle_stream, settings, start).await?;
    let stream = consumer
        .stream()
        .max_messages_per_batch(settings.batch_size)
        .heartbeat(settings.heartbeat)
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|error| NatsError::Consumer {
            stream: settings.lifecycle_stream.clone(),
            consumer: settings.consumer.clone(),
            source: Box::new(error),
        })?;
    Ok(stream.ready_chunks(settings.batch_size))
}

/// Binds the consumer again from stream sequence `start` (0: from the
/// beginning), with backoff, until it works.
async fn rebind(
    lifecycle: &jetstream::stream::Stream,
    settings: &crate::options::StreamSettings,
    start: u64,
) -> Messages {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match open_messages(lifecycle, settings, (start > 0).then_some(start)).await {
            Ok(messages) => return messages,
            Err(error) => {
                let pause = backoff(attempt);
                tracing::warn!(%error, attempt, retry_in_ms = pause.as_millis() as u64, "cannot bind the consumer");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

struct Monitor<'a> {
    jetstream: jetstream::Context,
    writer: &'a mut Writer,
    rejected_stream: String,
    lifecycle_stream: String,
    totals: MonitorTotals,
    report: Report,
    /// Whether the outbox may hold undelivered rows (a publish failed, or a
    /// commit added rows).
    outbox_backlog: bool,
    /// The store checkpoint that holds the last committed stream sequence.
    checkpoint_name: String,
    /// The stream sequence the engine must see next (0: any, nothing committed yet).
    next_sequence: u64,
    /// Whether the consumer was just bound: its first message may skip
    /// sequences that no longer exist (retention removed them).
    fresh_consumer: bool,
    /// Outbox entries JetStream acknowledged, not yet marked delivered.
    acknowledged: Vec<i64>,
    /// The highest outbox id published in this run (acknowledged or in flight).
    sent_through: i64,
    /// Incident publishes waiting for JetStream's acknowledgement, in outbox order.
    in_flight: futures_util::stream::FuturesOrdered<PublishInFlight>,
    /// The subjects of the publishes in flight, with the outbox id of each:
    /// at most one per subject, so that a lost publish re-sent later cannot
    /// land after a newer message of the same incident (consumers read the
    /// latest message per subject).
    in_flight_subjects: std::collections::HashMap<String, i64>,
    /// Outbox rows read but held back, in outbox order, until the message of
    /// the same subject in flight is acknowledged.
    deferred: std::collections::VecDeque<OutboxEntry>,
    /// Tasks sending the acknowledgements of committed batches, oldest first.
    acking: std::collections::VecDeque<tokio::task::JoinHandle<()>>,
}

/// An incident publish awaiting its acknowledgement: outbox id, subject, stored.
type PublishInFlight = std::pin::Pin<Box<dyn Future<Output = (i64, String, bool)> + Send>>;

/// Batches whose acknowledgements may be on their way at once.
const ACK_TASKS: usize = 4;
/// Outbox entries read and published at a time.
const OUTBOX_CHUNK: usize = 1_000;
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

impl Monitor<'_> {
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
        let span = tracing::debug_span!("batch", size = messages.len());
        let _entered = span.enter();

        let mut rejected: Vec<RejectedMessage> = Vec::new();
        let mut duplicates = 0u64;
        let mut lag = None;
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
            }
            // Parsed here rather than by `Writer::feed_checked`, so that the
            // origin string is only formatted for a rejected message.
            let fed = match lifewatch_core::parse_event(&message.payload)
                .and_then(|event| check_message(&message.subject, &event, now, max_future).map(|()| event))
            {
                Ok(event) => self.writer.feed_event(&message.payload, &event),
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
        let committed = tokio::task::block_in_place(|| self.writer.commit())?;
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
        if committed.transitions > 0 {
            self.outbox_backlog = true;
            let publishing = Instant::now();
            self.deliver_outbox().await?;
            self.report.phases[3] += publishing.elapsed();
        }
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
        let rejected_stream = self.rejected_stream.clone();
        self.acking.push_back(tokio::spawn(async move {
            futures_util::future::join_all(rejected.iter().map(|message| {
                republish_rejected(&jetstream, &lifecycle_stream, &rejected_stream, message)
            }))
            .await;
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
    async fn handle_clock(&mut self, watermark: Timestamp) -> Result<(), NatsError> {
        self.writer.tick(watermark);
        let committed = tokio::task::block_in_place(|| self.writer.commit())?;
        tracing::debug!(transitions = committed.transitions, %watermark, "clock moved");
        if committed.transitions > 0 {
            self.outbox_backlog = true;
            self.deliver_outbox().await?;
        }
        Ok(())
    }

    /// Publishes every outbox entry not published yet and notes the
    /// acknowledged ones. An entry whose publish fails is tried again later.
    ///
    /// Acknowledged entries are marked delivered in the store in bulk
    /// ([`Monitor::mark_delivered`]: at least every [`MARK_EVERY`] entries,
    /// on every tick and at shutdown) rather than once per batch, which would
    /// cost a second synced transaction per batch. A crash before the mark
    /// re-sends those entries, which JetStream drops as duplicates of their
    /// `Nats-Msg-Id`.
    async fn deliver_outbox(&mut self) -> Result<(), NatsError> {
        let sent = self.send_outbox().await?;
        self.outbox_backlog = !sent || !self.in_flight.is_empty() || !self.deferred.is_empty();
        self.mark_delivered(MARK_EVERY).await
    }

    /// Publishes the held-back rows that are free to go and the outbox rows
    /// past `sent_through`; false when a publish failed (the rest is sent at
    /// the next attempt, from where it failed).
    async fn send_outbox(&mut self) -> Result<bool, NatsError> {
        if !self.settle_publishes(false).await || !self.publish_deferred().await {
            return Ok(false);
        }
        // Rows held back are not read past without bound: the acknowledgements
        // that free them come first.
        while self.deferred.len() < OUTBOX_CHUNK {
            let after = self.sent_through;
            let rows = tokio::task::block_in_place(|| self.writer.pending_outbox(after, OUTBOX_CHUNK))?;
            let full = rows.len() == OUTBOX_CHUNK;
            for row in rows {
                // One message per incident subject in flight: a later one of
                // the same incident is held back until the earlier one is
                // acknowledged (see `publish_deferred`).
                if self.in_flight_subjects.contains_key(&row.subject) {
                    self.sent_through = row.id;
                    self.deferred.push_back(row);
                    continue;
                }
                if !self.publish(&row).await {
                    // Read again from this row at the next attempt.
                    self.sent_through = row.id - 1;
                    return Ok(false);
                }
            }
            // Acknowledgements are collected as they come, without waiting
            // for them here: the next batch goes on meanwhile.
            if !self.settle_publishes(false).await || !self.publish_deferred().await {
                return Ok(false);
            }
            if !full {
                break;
            }
        }
        Ok(true)
    }

    /// Publishes one outbox row; false when the client refused it.
    async fn publish(&mut self, row: &OutboxEntry) -> bool {
        // The outbox id is stable across restarts, so a re-send after
        // a crash carries the same Nats-Msg-Id and is dropped as a duplicate.
        let message = Outgoing {
            subject: row.subject.clone(),
            message_id: Some(format!("{}:{}", row.incident_id, row.id)),
            payload: Bytes::from(row.payload.clone()),
        };
        match publish_one(&self.jetstream, &message).await {
            Ok(ack) => {
                let id = row.id;
                let subject = message.subject;
                self.in_flight_subjects.insert(subject.clone(), id);
                self.in_flight.push_back(Box::pin(async move { (id, subject, ack.await.is_ok()) }));
                self.sent_through = self.sent_through.max(id);
                true
            }
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "incident not published yet; will retry");
                false
            }
        }
    }

    /// Publishes the held-back rows whose subject has nothing in flight any
    /// more, in outbox order; false when the client refused one.
    async fn publish_deferred(&mut self) -> bool {
        let mut held = std::collections::VecDeque::new();
        let mut blocked = std::collections::HashSet::new();
        while let Some(row) = self.deferred.pop_front() {
            if self.in_flight_subjects.contains_key(&row.subject) || blocked.contains(&row.subject) {
                blocked.insert(row.subject.clone());
                held.push_back(row);
                continue;
            }
            if !self.publish(&row).await {
                // Held back again, in order, for the next attempt.
                self.deferred.push_front(row);
                held.append(&mut self.deferred);
                self.deferred = held;
                return false;
            }
        }
        self.deferred = held;
        true
    }

    /// Forgets every publish in flight or held back from outbox id `from`
    /// on: the outbox is read and sent again from there, in order. Entries
    /// JetStream had stored are dropped as duplicates of their `Nats-Msg-Id`.
    fn rewind(&mut self, from: i64) {
        let held = self.deferred.iter().map(|row| row.id);
        let from = self.in_flight_subjects.values().copied().chain(held).fold(from, i64::min);
        self.in_flight.clear();
        self.in_flight_subjects.clear();
        self.deferred.clear();
        self.sent_through = from - 1;
        self.outbox_backlog = true;
    }

    /// Notes one incident publish acknowledged (or not: then the outbox is
    /// sent again from it, and false is returned).
    fn settle_one(&mut self, (id, subject, acknowledged): (i64, String, bool)) -> bool {
        if self.in_flight_subjects.get(&subject) == Some(&id) {
            self.in_flight_subjects.remove(&subject);
        }
        if acknowledged {
            self.acknowledged.push(id);
            true
        } else {
            tracing::warn!(id, "incident publish not acknowledged; will retry");
            self.rewind(id);
            false
        }
    }

    /// Collects the acknowledgements of incident publishes that arrived
    /// (all of them, waiting, if `wait`). A failed one makes every later
    /// entry count as unsent, so the outbox is sent again from it, in order;
    /// returns false then.
    async fn settle_publishes(&mut self, wait: bool) -> bool {
        use futures_util::FutureExt;
        loop {
            let next = if wait {
                self.in_flight.next().await
            } else {
                match self.in_flight.next().now_or_never() {
                    Some(next) => next,
                    None => return true,
                }
            };
            let Some(settled) = next else { return true };
            if !self.settle_one(settled) {
                return false;
            }
        }
    }

    /// Marks the acknowledged outbox entries delivered once at least `at_least` wait.
    async fn mark_delivered(&mut self, at_least: usize) -> Result<(), NatsError> {
        if self.acknowledged.is_empty() || self.acknowledged.len() < at_least {
            return Ok(());
        }
        let ids = std::mem::take(&mut self.acknowledged);
        tokio::task::block_in_place(|| self.writer.mark_delivered(&ids))?;
        self.totals.published += ids.len() as u64;
        Ok(())
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

    fn report_progress(&mut self) {
        self.report.log(&self.totals);
    }
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

/// Publishes a rejected message unchanged to `lifewatch.rejected.<reason>`,
/// with where it came from in headers. Failures are logged: the message
/// is kept in the store either way.
async fn republish_rejected(
    jetstream: &jetstream::Context,
    lifecycle_stream: &str,
    rejected_stream: &str,
    message: &RejectedMessage,
) {
    let mut headers = HeaderMap::new();
    let id = format!("{}:{}", lifecycle_stream, message.sequence);
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(streams::ORIGINAL_SUBJECT_HEADER, message.subject.as_str());
    headers.insert(streams::REJECT_REASON_HEADER, message.reason.as_str());
    headers.insert(streams::REJECT_DETAIL_HEADER, header_safe(&message.detail).as_str());
    headers.insert(streams::ORIGINAL_SEQUENCE_HEADER, message.sequence.to_string().as_str());
    let subject = streams::rejected_subject(message.reason);
    let result = match jetstream.publish_with_headers(subject.clone(), headers, message.payload.clone()).await
    {
        Ok(ack) => ack.await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::warn!(
            %subject,
            stream = %rejected_stream,
            %error,
            "rejected message kept in the store but not republished"
        );
    }
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
            "progress"
        );
        *self = Report::new();
    }
}
