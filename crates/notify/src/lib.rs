//! Notifications: getting every incident transition to the team that owns
//! it. This crate holds the protocol, without IO: [`schedule`] decides which
//! delivery goes next, when a failure is retried and when one is given up;
//! [`digest`] keeps a channel within its rate limit, summarising the rest.
//! The worker that sends (HTTP, SMTP, NATS) and the store rows that make
//! deliveries durable are built around it.

pub mod config;
pub mod digest;
pub mod payload;
pub mod schedule;

pub use config::{
    Channel, ChannelKind, EmailTls, Names, Notifications, NotifyConfigError, Route, Secret, SecretUnset, Team,
};
pub use digest::{Admission, Digest};
pub use schedule::{AfterFailure, DeliveryId, RetryPolicy, Schedule};
