//! The binary's typed errors: what decides the exit status.
//!
//! Commands return `anyhow::Error`; a [`UsageError`] anywhere in its chain
//! means the command line or the configuration is wrong (exit 2), anything
//! else means the work failed (exit 1).

use std::path::PathBuf;

use crate::config::ConfigError;

/// Bad usage or a bad configuration: the command cannot start as asked.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The configuration file cannot be read or is invalid.
    #[error("bad configuration: {origin}")]
    Config {
        /// The file, or "built-in configuration".
        origin: String,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// The `[nats]` section with the command-line flags applied is not usable
    /// (a missing credentials file, an empty seed file, a bad URL…).
    #[error("bad NATS options")]
    Nats(#[source] lifewatch_nats::NatsError),
    /// An option has a value that cannot work.
    #[error("{option}: {message}")]
    Option {
        /// The option, as written on the command line.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The risk register (`ops/risks.toml`) is wrong, naming the risk and key.
    #[error(transparent)]
    Risks(Box<crate::risks::RiskError>),
    /// A drill file (`ops/drills/*.toml`) is wrong, naming the file and key.
    #[error(transparent)]
    Drill(Box<crate::drill::DrillError>),
}

impl UsageError {
    /// A configuration file that cannot be read.
    pub fn unreadable(path: PathBuf, source: std::io::Error) -> UsageError {
        UsageError::Config { origin: path.display().to_string(), source: ConfigError::Read(source) }
    }
}
