//! The `[nats]` section of the configuration file and the command-line
//! overrides: where the server is, how to authenticate, and how the streams
//! and the consumer are set up.
//!
//! Two stages, as for the rest of the configuration: [`RawNatsConfig`] is
//! what the file says (serde, unknown keys refused), [`NatsConfig`] the
//! validated form (durations parsed, conflicting credentials refused).
//! Secrets are kept in [`Secret`], whose `Debug` and `Display` print
//! `<redacted>`, so that logging a configuration never leaks them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::NatsError;

/// A password, token or nkey seed: printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself; only for handing to the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The connection keys of the `[nats]` table: where the server is, how to
/// authenticate and TLS. The command line can give each of them
/// (`--nats`, `--user`, ...), and a key given there overrides the file's.
/// Every key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConnectKeys {
    /// Server URL(s), comma-separated (`nats://host:4222`); `--nats`.
    pub url: Option<String>,
    /// User for user/password authentication; `--user`.
    pub user: Option<String>,
    /// Password for user/password authentication; `--password`.
    pub password: Option<Secret>,
    /// Token authentication; `--token`.
    pub token: Option<Secret>,
    /// A `.creds` file (JWT and nkey seed), as issued by `nsc`; `--creds`.
    pub credentials: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`), for nkey authentication; `--nkey-seed-file`.
    pub nkey_seed_file: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign the server's certificate; implies TLS;
    /// `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `tls_key`); `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`; `--tls-key`.
    pub tls_key: Option<PathBuf>,
}

impl ConnectKeys {
    /// These keys, each replaced by the one of `overrides` where that is given.
    fn overridden_by(self, overrides: &ConnectKeys) -> ConnectKeys {
        let overrides = overrides.clone();
        ConnectKeys {
            url: overrides.url.or(self.url),
            user: overrides.user.or(self.user),
            password: overrides.password.or(self.password),
            token: overrides.token.or(self.token),
            credentials: overrides.credentials.or(self.credentials),
            nkey_seed_file: overrides.nkey_seed_file.or(self.nkey_seed_file),
            tls_ca: overrides.tls_ca.or(self.tls_ca),
            tls_cert: overrides.tls_cert.or(self.tls_cert),
            tls_key: overrides.tls_key.or(self.tls_key),
        }
    }
}

/// The `[nats]` table as written. Every key is optional; an unknown one is
/// refused and named (without the list of known keys, which serde gives only
/// for a struct without `flatten`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNatsConfig {
    /// The connection keys, written in the table itself.
    #[serde(flatten)]
    pub connect: ConnectKeys,
    /// Client name shown by the server (default `lifewatch`).
    pub name: Option<String>,
    /// Require TLS even without a CA file (default false).
    pub tls_required: Option<bool>,
    /// Name of the events stream (default `LIFECYCLE`).
    pub lifecycle_stream: Option<String>,
    /// Name of the incidents stream (default `INCIDENTS`).
    pub incidents_stream: Option<String>,
    /// Name of the stream that keeps rejected messages on `lifewatch.rejected.>`
    /// (default `LIFEWATCH_REJECTED`).
    pub rejected_stream: Option<String>,
    /// Durable consumer name of the monitor (default `lifewatch`).
    pub consumer: Option<String>,
    /// JetStream duplicate window of the streams lifewatch creates (default `2m`).
    pub duplicate_window: Option<String>,
    /// How long the streams lifewatch creates keep messages (default `30d`; `0s` keeps them forever).
    pub max_age: Option<String>,
    /// Byte limit of each stream lifewatch creates (default: none).
    pub max_bytes: Option<i64>,
    /// How long the server waits for an acknowledgement before redelivering (default `30s`).
    pub ack_wait: Option<String>,
    /// Unacknowledged messages the consumer may have out at once (default 60000: two full batches and more).
    pub max_ack_pending: Option<i64>,
    /// Messages asked for per pull request, and the largest batch committed at once (default 25000).
    pub batch_size: Option<usize>,
    /// Idle heartbeat of pull requests, to notice a dead connection (default `5s`).
    pub heartbeat: Option<String>,
    /// How often the monitor logs lag, throughput and latency (default `10s`).
    pub report_interval: Option<String>,
    /// How long a clean stop waits for the incident outbox to be published
    /// (default `10s`; `0s`: not at all).
    pub outbox_drain: Option<String>,
}

/// How the client authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token.
    Token(Secret),
    /// A credentials (`.creds`) file.
    CredentialsFile(PathBuf),
    /// An nkey seed.
    NkeySeed(Secret),
}

/// TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Whether TLS is required.
    pub required: bool,
    /// Extra root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Connection settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSettings {
    /// Server URL(s).
    pub url: String,
    /// Client name.
    pub name: String,
    /// Authentication.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
}

/// Stream and consumer settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// Events stream name.
    pub lifecycle_stream: String,
    /// Incidents stream name.
    pub incidents_stream: String,
    /// Rejected-messages stream name.
    pub rejected_stream: String,
    /// Durable consumer name.
    pub consumer: String,
    /// Duplicate window of created streams.
    pub duplicate_window: Duration,
    /// Retention by age of created streams (zero: unlimited).
    pub max_age: Duration,
    /// Retention by size of created streams (-1: unlimited).
    pub max_bytes: i64,
    /// Redelivery delay.
    pub ack_wait: Duration,
    /// Outstanding unacknowledged messages.
    pub max_ack_pending: i64,
    /// Messages per pull request and per committed batch.
    pub batch_size: usize,
    /// Pull request idle heartbeat.
    pub heartbeat: Duration,
    /// Period of the progress report.
    pub report_interval: Duration,
    /// How long a clean stop waits for the outbox to be published.
    pub outbox_drain: Duration,
}

/// The whole validated `[nats]` configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// How to connect.
    pub connect: ConnectSettings,
    /// Streams and consumer.
    pub streams: StreamSettings,
}

impl NatsConfig {
    /// Validates the `[nats]` table of a configuration, with command-line overrides.
    pub fn from_table(table: &toml::Table, overrides: &ConnectKeys) -> Result<NatsConfig, NatsError> {
        let raw: RawNatsConfig = table
            .clone()
            .try_into()
            .map_err(|error: toml::de::Error| NatsError::Config(format!("[nats]: {}", error.message())))?;
        NatsConfig::from_raw(raw, overrides)
    }

    /// Validates a raw `[nats]` table, with command-line overrides.
    pub fn from_raw(raw: RawNatsConfig, overrides: &ConnectKeys) -> Result<NatsConfig, NatsError> {
        let ConnectKeys {
            url,
            user,
            password,
            token,
            credentials,
            nkey_seed_file,
            tls_ca,
            tls_cert,
            tls_key,
        } = raw.connect.overridden_by(overrides);
        let url = url.ok_or_else(|| {
            NatsError::Config("no NATS server: give --nats URL or set `nats.url` in the configuration".into())
        })?;
        check_schemes(&url)?;
        // Credentials in the URL are taken out of it here, so that the URL
        // handed to async-nats (whose debug logs print it) and kept in the
        // settings never holds them; they are used as explicit ones.
        let (url, url_auth) = take_url_credentials(&url)?;
        let auth = match url_auth {
            Some(url_auth) => {
                let explicit = [
                    ("`nats.user` (--user)", user.is_some()),
                    ("`nats.password` (--password)", password.is_some()),
                    ("`nats.token` (--token)", token.is_some()),
                    ("`nats.credentials` (--creds)", credentials.is_some()),
                    ("`nats.nkey_seed_file` (--nkey-seed-file)", nkey_seed_file.is_some()),
                ];
                if let Some((name, _)) = explicit.iter().find(|(_, given)| *given) {
                    return Err(NatsError::Config(format!(
                        "the server URL (--nats, `nats.url`) holds credentials and {name} is given too: \
                         choose one"
                    )));
                }
                url_auth
            }
            None => choose_auth(user, password, token, credentials, nkey_seed_file)?,
        };

        let client_cert = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(NatsError::Config(
                    "`nats.tls_cert` and `nats.tls_key` (--tls-cert, --tls-key) go together".into(),
                ));
            }
        };
        let tls = Tls {
            required: raw.tls_required.unwrap_or(false) || tls_ca.is_some() || client_cert.is_some(),
            ca_file: tls_ca,
            client_cert,
        };

        let name = raw.name.unwrap_or_else(|| "lifewatch".to_string());
        let streams = StreamSettings {
            lifecycle_stream: stream_name("lifecycle_stream", raw.lifecycle_stream, "LIFECYCLE")?,
            incidents_stream: stream_name("incidents_stream", raw.incidents_stream, "INCIDENTS")?,
            rejected_stream: stream_name("rejected_stream", raw.rejected_stream, "LIFEWATCH_REJECTED")?,
            consumer: stream_name("consumer", raw.consumer, "lifewatch")?,
            duplicate_window: duration("duplicate_window", raw.duplicate_window, "2m", false)?,
            max_age: duration("max_age", raw.max_age, "30d", true)?,
            max_bytes: match raw.max_bytes {
                None => -1,
                Some(bytes) if bytes > 0 => bytes,
                Some(_) => return Err(NatsError::Config("`nats.max_bytes`: must be positive".into())),
            },
            ack_wait: duration("ack_wait", raw.ack_wait, "30s", false)?,
            max_ack_pending: match raw.max_ack_pending {
                None => 60_000,
                Some(count) if count > 0 => count,
                Some(_) => return Err(NatsError::Config("`nats.max_ack_pending`: must be positive".into())),
            },
            batch_size: match raw.batch_size {
                None => 25_000,
                Some(size) if (1..=100_000).contains(&size) => size,
                Some(_) => {
                    return Err(NatsError::Config("`nats.batch_size`: must be from 1 to 100000".into()));
                }
            },
            heartbeat: duration("heartbeat", raw.heartbeat, "5s", false)?,
            report_interval: duration("report_interval", raw.report_interval, "10s", false)?,
            outbox_drain: duration("outbox_drain", raw.outbox_drain, "10s", true)?,
        };
        if streams.heartbeat * 2 >= Duration::from_secs(30) {
            return Err(NatsError::Config("`nats.heartbeat`: must be shorter than 15s".into()));
        }
        Ok(NatsConfig { connect: ConnectSettings { url, name, auth, tls }, streams })
    }
}

/// The URL schemes the client speaks.
const SCHEMES: [&str; 4] = ["nats", "tls", "ws", "wss"];

/// Refuses a server URL whose scheme the client cannot speak (`http://…`, a
/// common slip for the monitoring port), so that the command stops before it
/// does anything rather than retrying a connection that can never work.
fn check_schemes(url: &str) -> Result<(), NatsError> {
    for server in url.split(',') {
        if let Some((scheme, _)) = server.trim().split_once("://")
            && !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
        {
            return Err(NatsError::Config(format!(
                "the server URL {} has scheme {scheme}://; NATS URLs are nats://, tls://, ws:// or wss:// \
                 (the client port, 4222 by default)",
                crate::connect::redact_url(server)
            )));
        }
    }
    Ok(())
}

fn choose_auth(
    user: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    credentials: Option<PathBuf>,
    nkey_seed_file: Option<PathBuf>,
) -> Result<Auth, NatsError> {
    let mut chosen = Vec::new();
    match (user, password) {
        (Some(user), Some(password)) => chosen.push(Auth::UserPassword { user, password }),
        (None, None) => {}
        _ => {
            return Err(NatsError::Config(
                "a user needs a password and a password needs a user (`nats.user`, `nats.password`)".into(),
            ));
        }
    }
    if let Some(token) = token {
        chosen.push(Auth::Token(token));
    }
    if let Some(path) = credentials {
        // Read at each connection; a file that cannot be read or parsed is a
        // configuration error now rather than a connection failure later,
        // which would look like the server refusing the credentials.
        let text = std::fs::read_to_string(&path)
            .map_err(|source| NatsError::ReadFile { path: path.clone(), source })?;
        if let Err(error) = async_nats::ConnectOptions::with_credentials(&text) {
            // async-nats' messages name what is missing or which nkey error
            // it hit, never the content.
            return Err(NatsError::Config(format!(
                "{}: not a valid credentials file: {error}",
                path.display()
            )));
        }
        chosen.push(Auth::CredentialsFile(path));
    }
    if let Some(path) = nkey_seed_file {
        let seed = read_secret_file(&path)?;
        // A malformed seed would only fail when the client signs the
        // server's nonce, reported as an authorization failure.
        if nkeys::KeyPair::from_seed(seed.expose()).is_err() {
            return Err(NatsError::Config(format!(
                "{}: not a valid nkey seed (a seed starts with S and has 58 characters)",
                path.display()
            )));
        }
        chosen.push(Auth::NkeySeed(seed));
    }
    match chosen.len() {
        0 => Ok(Auth::None),
        1 => Ok(chosen.remove(0)),
        _ => Err(NatsError::Config(
            "choose one way to authenticate: user and password, token, credentials file or nkey seed".into(),
        )),
    }
}

/// Splits `user:password@` or `token@` out of each server of a
/// comma-separated URL list: the list without them, and the credentials they
/// give (percent-decoded, as the nats CLI does). Servers that carry different
/// credentials are refused: one connection authenticates one way.
fn take_url_credentials(url: &str) -> Result<(String, Option<Auth>), NatsError> {
    let mut servers = Vec::new();
    let mut found: Option<Auth> = None;
    for server in url.split(',') {
        let authority_start = server.find("://").map_or(0, |scheme| scheme + 3);
        let authority_end =
            server[authority_start..].find(['/', '?', '#']).map_or(server.len(), |end| authority_start + end);
        let Some(at) = server[authority_start..authority_end].rfind('@').map(|at| authority_start + at)
        else {
            servers.push(server.to_string());
            continue;
        };
        let auth = url_auth(&server[authority_start..at])?;
        match &found {
            Some(previous) if *previous != auth => {
                return Err(NatsError::Config(
                    "the servers of the URL (--nats, `nats.url`) hold different credentials".into(),
                ));
            }
            _ => found = Some(auth),
        }
        servers.push(format!("{}{}", &server[..authority_start], &server[at + 1..]));
    }
    Ok((servers.join(","), found))
}

/// The credentials of a URL's userinfo: `user:password` or a token.
fn url_auth(userinfo: &str) -> Result<Auth, NatsError> {
    let decode = |text: &str, what: &str| {
        percent_encoding::percent_decode_str(text).decode_utf8().map(|text| text.into_owned()).map_err(|_| {
            NatsError::Config(format!("the {what} in the server URL (--nats, `nats.url`) is not UTF-8"))
        })
    };
    match userinfo.split_once(':') {
        Some((user, password)) => {
            let user = decode(user, "user")?;
            let password = decode(password, "password")?;
            if user.is_empty() || password.is_empty() {
                return Err(NatsError::Config(
                    "the server URL (--nats, `nats.url`) holds an empty user or password".into(),
                ));
            }
            Ok(Auth::UserPassword { user, password: Secret::new(password) })
        }
        None => {
            let token = decode(userinfo, "token")?;
            if token.is_empty() {
                return Err(NatsError::Config(
                    "the server URL (--nats, `nats.url`) holds an empty token".into(),
                ));
            }
            Ok(Auth::Token(Secret::new(token)))
        }
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, NatsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| NatsError::ReadFile { path: path.to_path_buf(), source })?;
    let seed = text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#'));
    match seed {
        Some(seed) => Ok(Secret::new(seed)),
        None => Err(NatsError::Config(format!("{}: holds no nkey seed", path.display()))),
    }
}

fn stream_name(key: &str, value: Option<String>, default: &str) -> Result<String, NatsError> {
    let name = value.unwrap_or_else(|| default.to_string());
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(name)
    } else {
        Err(NatsError::Config(format!("`nats.{key}`: {name:?} is not a valid name (A-Z a-z 0-9 _ -)")))
    }
}

fn duration(
    key: &str,
    value: Option<String>,
    default: &str,
    zero_allowed: bool,
) -> Result<Duration, NatsError> {
    let text = value.unwrap_or_else(|| default.to_string());
    let parsed = lifewatch_core::Duration::parse_human(&text)
        .map_err(|message| NatsError::Config(format!("`nats.{key}`: {message}")))?;
    let nanos = parsed.as_nanos();
    if nanos < 0 || (nanos == 0 && !zero_allowed) {
        return Err(NatsError::Config(format!("`nats.{key}`: must be longer than zero")));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_schemes_the_client_speaks_are_taken() {
        for url in ["nats://h:4222", "tls://h", "ws://h:8080", "WSS://h", "h:4222", "nats://a,tls://b"] {
            assert!(check_schemes(url).is_ok(), "{url}");
        }
        for url in ["http://h:8222", "nats://a,https://u:secret@b"] {
            let message = check_schemes(url).unwrap_err().to_string();
            assert!(message.contains("nats://, tls://, ws:// or wss://"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    fn parse(text: &str, overrides: &ConnectKeys) -> Result<NatsConfig, NatsError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|error| NatsError::Config(error.to_string()))?;
        NatsConfig::from_table(&table, overrides)
    }

    #[test]
    fn defaults_and_overrides() {
        let overrides = ConnectKeys { url: Some("nats://b:4222".into()), ..Default::default() };
        let config = parse("url = \"nats://a:4222\"\nuser = \"u\"\npassword = \"p\"", &overrides).unwrap();
        assert_eq!(config.connect.url, "nats://b:4222");
        assert_eq!(config.streams.lifecycle_stream, "LIFECYCLE");
        assert_eq!(config.streams.duplicate_window, Duration::from_secs(120));
        assert!(matches!(config.connect.auth, Auth::UserPassword { ref user, .. } if user == "u"));
    }

    #[test]
    fn each_connection_key_comes_from_the_file_unless_the_command_line_gives_it() {
        let file = "url = \"nats://a\"\ntoken = \"from-file\"\ntls_ca = \"ca.pem\"\n\
                    tls_cert = \"file.pem\"\ntls_key = \"file.key\"";
        let config = parse(file, &ConnectKeys::default()).unwrap();
        assert_eq!(config.connect.url, "nats://a");
        assert_eq!(config.connect.auth, Auth::Token(Secret::new("from-file")));
        assert_eq!(config.connect.tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            config.connect.tls.client_cert,
            Some((PathBuf::from("file.pem"), PathBuf::from("file.key")))
        );
        assert!(config.connect.tls.required);

        let overrides = ConnectKeys {
            token: Some(Secret::new("from-flag")),
            tls_cert: Some(PathBuf::from("flag.pem")),
            ..Default::default()
        };
        let config = parse(file, &overrides).unwrap();
        assert_eq!(config.connect.url, "nats://a");
        assert_eq!(config.connect.auth, Auth::Token(Secret::new("from-flag")));
        assert_eq!(
            config.connect.tls.client_cert,
            Some((PathBuf::from("flag.pem"), PathBuf::from("file.key")))
        );
    }

    #[test]
    fn refuses_unknown_keys_and_conflicts() {
        let overrides = ConnectKeys::default();
        let error = parse("url = \"nats://a\"\npasword = \"p\"", &overrides).unwrap_err();
        assert!(error.to_string().contains("pasword"), "{error}");
        let error = parse("url = \"nats://a\"\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\"", &overrides)
            .unwrap_err();
        assert!(error.to_string().contains("choose one"), "{error}");
        let error = parse("user = \"u\"\npassword = \"p\"", &overrides).unwrap_err();
        assert!(error.to_string().contains("--nats"), "{error}");
    }

    #[test]
    fn url_credentials_are_taken_out_of_the_url() {
        let with_url = |url: &str| ConnectKeys { url: Some(url.into()), ..Default::default() };
        let config = parse("", &with_url("nats://u:p%40ss@a:4222,nats://u:p%40ss@b:4222/")).unwrap();
        assert_eq!(config.connect.url, "nats://a:4222,nats://b:4222/");
        assert_eq!(
            config.connect.auth,
            Auth::UserPassword { user: "u".into(), password: Secret::new("p@ss") }
        );
        let config = parse("", &with_url("t0k@a:4222")).unwrap();
        assert_eq!(config.connect.url, "a:4222");
        assert_eq!(config.connect.auth, Auth::Token(Secret::new("t0k")));
        let config = parse("", &with_url("nats://a:4222")).unwrap();
        assert_eq!(config.connect.url, "nats://a:4222");
        assert_eq!(config.connect.auth, Auth::None);

        let error = parse("user = \"u\"\npassword = \"p\"", &with_url("nats://u:p@a")).unwrap_err();
        assert!(error.to_string().contains("--nats") && error.to_string().contains("--user"), "{error}");
        let error = parse("", &with_url("nats://u:p@a,nats://v:p@b")).unwrap_err();
        assert!(error.to_string().contains("different credentials"), "{error}");
        let error = parse("", &with_url("nats://u:@a")).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let overrides = ConnectKeys {
            url: Some("nats://a".into()),
            token: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        let config = parse("", &overrides).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
