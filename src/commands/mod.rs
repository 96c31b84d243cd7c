//! One module per command over a database: each reads through
//! `lifewatch_store` (the typed answers of `lifewatch_store::query`) and
//! renders with `crate::output`.

pub mod backup;
pub mod incidents;
pub mod outbox;
pub mod rebuild;
pub mod redrive;
pub mod rejected;
pub mod replay_db;
pub mod report;
pub mod show;
pub mod verify;
