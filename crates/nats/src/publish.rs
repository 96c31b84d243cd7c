//! Publishing events to JetStream with many acknowledgements in flight, as
//! `lifewatch publish` and `lifewatch simulate --nats` do.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, context::PublishError, publish::PublishAck};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::connect::backoff;
use crate::error::NatsError;

/// How many times one message is sent again when its acknowledgement fails
/// (times out, or the connection drops). A re-send with a `Nats-Msg-Id` is
/// deduplicated by the stream, so retrying is safe.
const RETRIES: usize = 8;

/// Counts of one publishing run.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct PublishTotals {
    /// Messages the stream stored.
    pub stored: u64,
    /// Messages the stream dropped as duplicates of a `Nats-Msg-Id` within its window.
    pub duplicates: u64,
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The subject.
    pub subject: String,
    /// The `Nats-Msg-Id`, if any: the event id for a valid event. A message
    /// known to be invalid must not carry the id it names, or the stream
    /// would drop the corrected event with that id inside its duplicate
    /// window (lifewatch accepts it, since a rejected event's id is not taken).
    pub message_id: Option<String>,
    /// The payload.
    pub payload: Bytes,
}

type AckFuture = Pin<Box<dyn Future<Output = (Outgoing, usize, Result<PublishAck, PublishError>)> + Send>>;

/// Publishes messages with up to `max_in_flight` acknowledgements pending,
/// re-sending a message whose acknowledgement fails.
pub struct Publisher {
    jetstream: jetstream::Context,
    in_flight: FuturesUnordered<AckFuture>,
    max_in_flight: usize,
    totals: PublishTotals,
}

impl Publisher {
    /// A publisher on `jetstream` with at most `max_in_flight` pending acknowledgements.
    pub fn new(jetstream: jetstream::Context, max_in_flight: usize) -> Publisher {
        Publisher {
            jetstream,
            in_flight: FuturesUnordered::new(),
            max_in_flight: max_in_flight.max(1),
            totals: PublishTotals::default(),
        }
    }

    /// Sends one message; waits first if too many acknowledgements are pending.
    pub async fn publish(&mut self, message: Outgoing) -> Result<(), NatsError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_one().await?;
        }
        self.send(message, 0).await
    }

    /// Acknowledgements still pending.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Counts so far (of acknowledged messages).
    pub fn totals(&self) -> PublishTotals {
        self.totals
    }

    /// Waits for every pending acknowledgement and returns the counts.
    pub async fn finish(mut self) -> Result<PublishTotals, NatsError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.totals)
    }

    async fn send(&mut self, message: Outgoing, attempt: usize) -> Result<(), NatsError> {
        let mut attempt = attempt;
        loop {
            let result = publish_one(&self.jetstream, &message).await;
            match result {
                Ok(ack) => {
                    self.in_flight.push(Box::pin(async move {
                        let result = ack.into_future().await;
                        (message, attempt, result)
                    }));
                    return Ok(());
                }
                Err(error) if self.no_stream_for(&message.subject, &error).await => {
                    return Err(NatsError::NoStream { subject: message.subject });
                }
                Err(source) if attempt >= RETRIES => {
                    return Err(NatsError::Publish { subject: message.subject, source });
                }
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(subject = %message.subject, %error, attempt, "publish failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    async fn settle_one(&mut self) -> Result<(), NatsError> {
        let Some((message, attempt, result)) = self.in_flight.next().await else { return Ok(()) };
        match result {
            Ok(ack) if ack.duplicate => self.totals.duplicates += 1,
            Ok(_) => self.totals.stored += 1,
            Err(error) if self.no_stream_for(&message.subject, &error).await => {
                return Err(NatsError::NoStream { subject: message.subject });
            }
            Err(source) if attempt >= RETRIES => {
                return Err(NatsError::Publish { subject: message.subject, source });
            }
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, attempt = attempt + 1, "no acknowledgement; re-sending");
                tokio::time::sleep(backoff(attempt + 1)).await;
                self.send(message, attempt + 1).await?;
            }
        }
        Ok(())
    }

    /// Whether `error` means that no stream takes `subject`, which retrying
    /// cannot fix: the first such failure ends the run, naming the subject,
    /// instead of retrying every message with backoff for minutes. No
    /// responders also means JetStream is not answering yet (after a server
    /// restart), so the server is asked which stream takes the subject, and
    /// only a clear "none" counts.
    async fn no_stream_for(&self, subject: &str, error: &PublishError) -> bool {
        if error.kind() != PublishErrorKind::StreamNotFound {
            return false;
        }
        match self.jetstream.stream_by_subject(subject).await {
            Ok(_) => false,
            Err(error) => {
                matches!(
                    error.kind(),
                    GetStreamByNameErrorKind::NotFound | GetStreamByNameErrorKind::InvalidSubject
                )
            }
        }
    }
}

/// Publishes one message and returns the future of its acknowledgement.
pub async fn publish_one(
    jetstream: &jetstream::Context,
    message: &Outgoing,
) -> Result<jetstream::context::PublishAckFuture, PublishError> {
    let mut headers = HeaderMap::new();
    if let Some(id) = &message.message_id {
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    jetstream.publish_with_headers(message.subject.clone(), headers, message.payload.clone()).await
}

/// A JetStream context for publishing: request timeout `timeout`, waiting
/// (not failing) when its own in-flight limit is reached.
pub fn publishing_context(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .max_ack_inflight(65_536)
        .backpressure_on_inflight(true)
        .build(client)
}
