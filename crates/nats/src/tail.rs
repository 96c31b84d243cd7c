//! Following the incidents stream as it grows, for `lifewatch tail`: an
//! ordered consumer (ephemeral, unacknowledged, recreated by the client
//! when it misses a message), so that watching never leaves a durable
//! consumer behind, never takes messages from the monitor's, and never
//! creates a stream.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use bytes::Bytes;
use futures_util::StreamExt;
use lifewatch_core::Timestamp;

use crate::error::NatsError;
use crate::options::StreamSettings;
use crate::streams::INCIDENTS_SUBJECTS;

/// Where following the incidents stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailStart {
    /// With the oldest message the stream still holds.
    FromStart,
    /// With the first message stored at or after this time.
    Since(Timestamp),
    /// With the first message stored after the consumer is created.
    Now,
}

/// One message of the incidents stream.
#[derive(Clone, Debug)]
pub struct TailMessage {
    /// Its subject (`incidents.<kind>.<entity type>.<id>`).
    pub subject: String,
    /// Its body: `{"transition": ..., "incident": <record>}`.
    pub payload: Bytes,
}

/// The incidents stream being followed.
pub struct Tail {
    stream_name: String,
    messages: jetstream::consumer::pull::Ordered,
}

impl Tail {
    /// Starts following the incidents stream named in `settings` from `start`.
    /// A missing stream is an error naming it; it is not created.
    pub async fn start(
        client: async_nats::Client,
        settings: &StreamSettings,
        start: TailStart,
    ) -> Result<Tail, NatsError> {
        let stream_name = settings.incidents_stream.clone();
        let failed = |message: String| NatsError::Stream { stream: stream_name.clone(), message };
        let context = jetstream::new(client);
        let stream = context.get_stream(&stream_name).await.map_err(|error| {
            failed(format!("cannot be read ({error}); `lifewatch run` creates it when it starts"))
        })?;
        let deliver_policy = match start {
            TailStart::FromStart => DeliverPolicy::All,
            TailStart::Now => DeliverPolicy::New,
            TailStart::Since(time) => DeliverPolicy::ByStartTime {
                start_time: async_nats::datetime::from_nanos(i128::from(time.unix_nanos()))
                    .map_err(|error| failed(format!("cannot start at {time}: {error}")))?,
            },
        };
        let config = OrderedConfig {
            filter_subject: INCIDENTS_SUBJECTS.to_string(),
            deliver_policy,
            description: Some("lifewatch tail".into()),
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|error| failed(format!("cannot create an ordered consumer: {error}")))?;
        let messages =
            consumer.messages().await.map_err(|error| failed(format!("cannot read messages: {error}")))?;
        Ok(Tail { stream_name, messages })
    }

    /// The next message, waiting for it; `None` if the stream ends (it does
    /// not while the connection lives).
    pub async fn next(&mut self) -> Option<Result<TailMessage, NatsError>> {
        let message = self.messages.next().await?;
        Some(
            message
                .map(|message| TailMessage {
                    subject: message.subject.to_string(),
                    payload: message.payload.clone(),
                })
                .map_err(|error| NatsError::Stream {
                    stream: self.stream_name.clone(),
                    message: format!("reading failed: {error}"),
                }),
        )
    }
}
