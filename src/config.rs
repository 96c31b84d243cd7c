//! The application configuration: one TOML file (`ops/lifewatch.toml` by
//! default) read once, split into the engine's part (core's [`Config`]) and
//! the sections the binary and its adapters own: `[live]` for the live
//! monitor and `[nats]` for the NATS adapter.
//!
//! A `--config` file is overlaid on the built-in configuration: its tables
//! are merged key by key into the built-in ones (an array, such as
//! `[[owners]]`, replaces the built-in array whole), so that a file setting
//! one deadline is enough. Unknown keys are still refused, by the same
//! validation as a complete file.

use std::path::{Path, PathBuf};

use lifewatch_core::{Config, Duration};
use serde::Deserialize;

use crate::error::UsageError;

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The file is not valid TOML.
    #[error("{0}")]
    Syntax(toml::de::Error),
    /// The engine's part is invalid (an unknown key, a bad deadline…).
    #[error(transparent)]
    Engine(#[from] lifewatch_core::ConfigError),
    /// A key of an application section (`[live]`, `[nats]`) is invalid.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Options of the live monitor (`[live]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// Wait this long past a deadline before declaring an entity stuck.
    pub allowed_lateness: Duration,
    /// Reject events timed further than this ahead of the wall clock.
    pub max_future: Duration,
}

/// `[live]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLive {
    allowed_lateness: Option<String>,
    max_future: Option<String>,
}

/// The whole configuration file, validated (except `[nats]`, which is
/// validated with the command-line flags that override it).
#[derive(Debug)]
pub struct AppConfig {
    /// What the engine runs on.
    pub engine: Config,
    /// `[live]`.
    pub live: LiveConfig,
    /// The `[nats]` table, for `lifewatch_nats::NatsConfig::from_table`.
    pub nats: toml::Table,
    /// `[web]`.
    pub web: WebSettings,
    /// `[[channels]]` and `[[teams]]`: where incidents are sent.
    pub notifications: lifewatch_notify::Notifications,
    /// `[delivery]`: how notifications are retried.
    pub delivery: DeliverySettings,
}

/// `[delivery]`: retries of notifications and the links they carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Backoff, limit and giving up.
    pub policy: lifewatch_notify::RetryPolicy,
    /// How long one request may take.
    pub timeout: std::time::Duration,
    /// The dashboard's address as people reach it (`https://lifewatch.example`),
    /// for the links in messages; default: the `--listen` address of `run`.
    pub dashboard_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    retry_base: Option<String>,
    retry_max: Option<String>,
    give_up_after: Option<String>,
    timeout: Option<String>,
    per_channel: Option<usize>,
    dashboard_url: Option<String>,
}

/// `[web]`: the web server of `serve` and `run --listen`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// `web.listen`: the address when `--listen` names none.
    pub listen: std::net::SocketAddr,
    /// `web.token`, overridden by `LIFEWATCH_WEB_TOKEN`: the bearer token.
    pub token: Option<String>,
    /// `web.ready_outbox_stall`: how long the outbox may make no progress
    /// while transitions wait before `/readyz` says unready.
    pub ready_outbox_stall: Duration,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("WebSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ready_outbox_stall", &self.ready_outbox_stall)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Option<String>,
    token: Option<String>,
    ready_outbox_stall: Option<String>,
}

impl AppConfig {
    /// Reads and validates the configuration file overlaid on the built-in
    /// one, or the built-in one alone. Every failure is a [`UsageError`]
    /// naming the file.
    pub fn load(path: Option<&Path>) -> Result<AppConfig, UsageError> {
        let effective = Effective::load(path)?;
        AppConfig::from_table(effective.table)
            .map_err(|source| UsageError::Config { origin: effective.origin, source })
    }

    /// Parses and validates a complete configuration text (not overlaid).
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<AppConfig, ConfigError> {
        AppConfig::from_table(toml::from_str(text).map_err(ConfigError::Syntax)?)
    }

    /// Validates a complete configuration table.
    fn from_table(mut table: toml::Table) -> Result<AppConfig, ConfigError> {
        let live = match table.remove("live") {
            None => RawLive::default(),
            Some(toml::Value::Table(live)) => live.try_into().map_err(|error: toml::de::Error| {
                ConfigError::Invalid { key: "live".into(), message: error.message().to_string() }
            })?,
            Some(_) => {
                return Err(ConfigError::Invalid { key: "live".into(), message: "must be a table".into() });
            }
        };
        let nats = match table.remove("nats") {
            None => toml::Table::new(),
            Some(toml::Value::Table(nats)) => nats,
            Some(_) => {
                return Err(ConfigError::Invalid { key: "nats".into(), message: "must be a table".into() });
            }
        };
        let web = match table.remove("web") {
            None => RawWeb::default(),
            Some(toml::Value::Table(web)) => web.try_into().map_err(|error: toml::de::Error| {
                ConfigError::Invalid { key: "web".into(), message: error.message().to_string() }
            })?,
            Some(_) => {
                return Err(ConfigError::Invalid { key: "web".into(), message: "must be a table".into() });
            }
        };
        let notifications = notifications(table.remove("channels"), table.remove("teams"))?;
        let delivery: RawDelivery = match table.remove("delivery") {
            None => RawDelivery::default(),
            Some(value) => value.try_into().map_err(|error: toml::de::Error| ConfigError::Invalid {
                key: "delivery".into(),
                message: error.message().to_string(),
            })?,
        };
        let mut engine = Config::from_table(table)?;
        // The engine keeps escalation deadlines in event time, as it keeps
        // stuck ones; where each step sends stays the notifier's business.
        for team in notifications.teams.values() {
            let times = lifewatch_core::EscalationTimes {
                steps: team
                    .escalation
                    .iter()
                    .map(|step| Duration::from_seconds(i64::try_from(step.after_seconds).unwrap_or(i64::MAX)))
                    .collect(),
                repeat_last: team.escalation.last().is_some_and(|step| step.repeat),
            };
            engine.set_escalation(&team.name, times)?;
        }
        let duration = |key: &str, value: Option<String>, default: i64| match value {
            None => Ok(Duration::from_seconds(default)),
            Some(text) => Duration::parse_human(&text)
                .map_err(|message| ConfigError::Invalid { key: key.into(), message: message.to_string() }),
        };
        let live = LiveConfig {
            allowed_lateness: duration("live.allowed_lateness", live.allowed_lateness, 30)?,
            max_future: duration("live.max_future", live.max_future, 300)?,
        };
        let listen = match web.listen {
            None => lifewatch_web::DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                key: "web.listen".into(),
                message: "the built-in address does not parse".into(),
            })?,
            Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
                key: "web.listen".into(),
                message: format!("{text:?} is not an address and port such as 127.0.0.1:9464"),
            })?,
        };
        let token = std::env::var("LIFEWATCH_WEB_TOKEN").ok().or(web.token).filter(|token| !token.is_empty());
        let web = WebSettings {
            listen,
            token,
            ready_outbox_stall: duration("web.ready_outbox_stall", web.ready_outbox_stall, 120)?,
        };
        let millis = |key: &str, value: Option<String>, default: i64| -> Result<u64, ConfigError> {
            let duration = duration(key, value, default)?;
            u64::try_from(duration.as_nanos() / 1_000_000)
                .ok()
                .filter(|millis| *millis > 0)
                .ok_or_else(|| ConfigError::Invalid { key: key.into(), message: "must be positive".into() })
        };
        let delivery = DeliverySettings {
            policy: lifewatch_notify::RetryPolicy {
                base_ms: millis("delivery.retry_base", delivery.retry_base, 1)?,
                max_ms: millis("delivery.retry_max", delivery.retry_max, 300)?,
                give_up_after_ms: millis("delivery.give_up_after", delivery.give_up_after, 86_400)?,
                per_channel: delivery.per_channel.unwrap_or(4).max(1),
            },
            timeout: std::time::Duration::from_millis(millis("delivery.timeout", delivery.timeout, 10)?),
            dashboard_url: delivery.dashboard_url.map(|url| url.trim_end_matches('/').to_string()),
        };
        Ok(AppConfig { engine, live, nats, web, notifications, delivery })
    }
}

/// The effective configuration table before validation: the built-in one
/// with the file (if any) overlaid on it.
/// The transitions a route may name: the record's, and those of
/// acknowledgement and escalation.
const ROUTE_TRANSITIONS: [&str; 7] =
    ["opened", "updated", "resolved", "reopened", "retracted", "acknowledged", "escalated"];

/// `[[channels]]` and `[[teams]]`, validated; secrets named by `*_env` are read from the environment.
fn notifications(
    channels: Option<toml::Value>,
    teams: Option<toml::Value>,
) -> Result<lifewatch_notify::Notifications, ConfigError> {
    let severities = lifewatch_core::Severity::ALL.map(|severity| severity.as_str());
    let kinds = lifewatch_core::IncidentKind::ALL.map(|kind| kind.as_str());
    let names =
        lifewatch_notify::Names { severities: &severities, kinds: &kinds, transitions: &ROUTE_TRANSITIONS };
    let seconds = |text: &str| {
        let duration = Duration::parse_human(text)?;
        u64::try_from(duration.as_nanos() / 1_000_000_000).map_err(|_| format!("{text:?} is negative"))
    };
    lifewatch_notify::Notifications::from_toml(
        channels,
        teams,
        &names,
        &|name| std::env::var(name).ok(),
        &seconds,
    )
    .map_err(|error| ConfigError::Invalid { key: error.key, message: error.message })
}

#[derive(Debug)]
pub struct Effective {
    /// The merged table.
    pub table: toml::Table,
    /// The file's name, or "built-in configuration", for messages.
    pub origin: String,
    /// The top-level keys (sections) the file sets; empty without a file.
    pub from_file: Vec<String>,
}

impl Effective {
    /// Reads `path` (if any) and overlays it on the built-in configuration.
    pub fn load(path: Option<&Path>) -> Result<Effective, UsageError> {
        let builtin = "built-in configuration";
        let mut table: toml::Table =
            toml::from_str(lifewatch_core::DEFAULT_CONFIG_TOML).map_err(|error| UsageError::Config {
                origin: builtin.into(),
                source: ConfigError::Syntax(error),
            })?;
        let Some(path) = path else {
            return Ok(Effective { table, origin: builtin.into(), from_file: Vec::new() });
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| UsageError::unreadable(path.to_path_buf(), error))?;
        let overlay: toml::Table = toml::from_str(&text).map_err(|error| UsageError::Config {
            origin: origin.clone(),
            source: ConfigError::Syntax(error),
        })?;
        let from_file = overlay.keys().cloned().collect();
        // Channels given replace the shipped notification setup as a whole:
        // the shipped teams route to the shipped channels, which are gone.
        if overlay.contains_key("channels") && !overlay.contains_key("teams") {
            table.remove("teams");
        }
        merge(&mut table, overlay);
        Ok(Effective { table, origin, from_file })
    }
}

/// Overlays `overlay` on `base`: tables are merged key by key, anything
/// else (values, arrays, arrays of tables) replaces what `base` had.
pub fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The directory runbook paths are relative to, for the configuration at
/// `path` (or the built-in one): the operations package's root.
///
/// For a file, it is the file's directory, except when that directory is
/// named `ops`: that is the layout the repository ships (`ops/lifewatch.toml`
/// beside `ops/runbooks/`, paths written `ops/runbooks/…`), whose root is the
/// directory above. For the built-in configuration it is the repository the
/// binary was built from, which holds the shipped runbooks; an installed
/// binary far from it is told to give `--root`.
pub fn runbook_root(path: Option<&Path>) -> PathBuf {
    let Some(path) = path else { return PathBuf::from(env!("CARGO_MANIFEST_DIR")) };
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = absolute.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    match (directory.file_name(), directory.parent()) {
        (Some(name), Some(parent)) if name == "ops" => parent.to_path_buf(),
        _ => directory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_splits_into_its_parts() {
        let config = AppConfig::from_toml(lifewatch_core::DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(config.live.allowed_lateness, Duration::from_seconds(30));
        assert_eq!(config.live.max_future, Duration::from_seconds(300));
        // The engine's part is core's reading of the same file, plus the
        // escalation chains of its [[teams]], which only the binary reads.
        let fingerprint = config.engine.fingerprint_text();
        let escalation = fingerprint.strip_prefix(&Config::shipped().fingerprint_text()).unwrap();
        assert_eq!(escalation.lines().count(), config.notifications.teams.len(), "{escalation}");
        assert!(escalation.lines().all(|line| line.starts_with("escalation ")), "{escalation}");
    }

    /// The store recomputes every projection when the fingerprint changes:
    /// editing what only the live monitor or the NATS adapter reads must not
    /// cause that, nor may a password reach the fingerprint.
    #[test]
    fn the_fingerprint_covers_the_engine_only() {
        let shipped = lifewatch_core::DEFAULT_CONFIG_TOML;
        let fingerprint = |text: &str| AppConfig::from_toml(text).unwrap().engine.fingerprint_text();
        let base = fingerprint(shipped);
        let with_nats =
            format!("{shipped}\n[nats]\nurl = \"nats://x:4222\"\npassword = \"hunter2-secret\"\n");
        assert_eq!(fingerprint(&with_nats), base);
        assert!(!fingerprint(&with_nats).contains("hunter2"));
        let later = shipped.replace("allowed_lateness = \"30s\"", "allowed_lateness = \"2m\"");
        assert_ne!(later, shipped);
        assert_eq!(fingerprint(&later), base);
        let deadline = shipped.replace("pending = \"15m\"", "pending = \"16m\"");
        assert_ne!(deadline, shipped);
        assert_ne!(fingerprint(&deadline), base);
    }

    #[test]
    fn an_overlay_merges_tables_and_replaces_arrays() {
        let mut base: toml::Table =
            toml::from_str("a = 1\n[t]\nx = 1\ny = 2\n[[list]]\nk = 1\n[[list]]\nk = 2\n").unwrap();
        let overlay: toml::Table = toml::from_str("[t]\ny = 3\nz = 4\n[[list]]\nk = 5\n").unwrap();
        merge(&mut base, overlay);
        let expected: toml::Table =
            toml::from_str("a = 1\n[t]\nx = 1\ny = 3\nz = 4\n[[list]]\nk = 5\n").unwrap();
        assert_eq!(base, expected);
    }

    #[test]
    fn the_runbook_root_of_a_file_in_ops_is_the_directory_above() {
        assert_eq!(runbook_root(Some(Path::new("/srv/pkg/ops/lifewatch.toml"))), Path::new("/srv/pkg"));
        assert_eq!(runbook_root(Some(Path::new("/etc/lifewatch/lw.toml"))), Path::new("/etc/lifewatch"));
        assert!(runbook_root(None).join("ops/runbooks/stuck.md").is_file());
    }

    #[test]
    fn bad_sections_name_the_key() {
        let shipped = lifewatch_core::DEFAULT_CONFIG_TOML;
        let cases = [
            (
                shipped.replace("allowed_lateness = \"30s\"", "allowed_lateness = \"soon\""),
                "live.allowed_lateness",
            ),
            (format!("{shipped}\nmax_futur = \"1m\"\n"), "max_futur"),
            (shipped.replace("outage_threshold = 5", "outage_treshold = 5"), "outage_treshold"),
            (format!("nats = 3\n{shipped}"), "nats"),
        ];
        for (text, key) in cases {
            let message = AppConfig::from_toml(&text).unwrap_err().to_string();
            assert!(message.contains(key), "{key}: {message}");
        }
    }
}
