//! Connecting to NATS: client options from [`ConnectSettings`], the first
//! connection with backoff (but no retry of refused credentials), and
//! reconnection with backoff afterwards, which async-nats does by itself.

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};

use crate::error::NatsError;
use crate::options::{Auth, ConnectSettings};

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pause before reconnection attempt `attempt` (1-based): 100 ms doubling
/// up to [`MAX_BACKOFF`].
pub fn backoff(attempt: usize) -> Duration {
    let exponent = attempt.saturating_sub(1).min(10) as u32;
    Duration::from_millis(100u64.saturating_mul(1 << exponent)).min(MAX_BACKOFF)
}

/// The URL with any `user:password@` removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|server| match (server.find("://"), server.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}<redacted>@{}", &server[..scheme + 3], &server[at + 1..])
            }
            (None, Some(at)) => format!("<redacted>@{}", &server[at + 1..]),
            _ => server.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects with `settings`. Transient failures (no server listening yet, a
/// timeout) are retried with backoff for up to `patience`; refused
/// credentials, bad TLS files and a refused TLS handshake fail at once with
/// a clear error.
pub async fn connect(
    settings: &ConnectSettings,
    patience: Duration,
) -> Result<async_nats::Client, NatsError> {
    let url = redact_url(&settings.url);
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let options = client_options(settings).await?;
        match options.connect(settings.url.as_str()).await {
            Ok(client) => {
                tracing::info!(url = %url, "connected to NATS");
                return Ok(client);
            }
            Err(error) => match error.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    return Err(NatsError::Unauthorized { url });
                }
                ConnectErrorKind::ServerParse | ConnectErrorKind::Tls => {
                    return Err(NatsError::Connect { url, source: error });
                }
                ConnectErrorKind::Io if tls_refused(&error) => {
                    return Err(NatsError::Connect { url, source: error });
                }
                _ if started.elapsed() >= patience => return Err(NatsError::Connect { url, source: error }),
                _ => {
                    let pause = backoff(attempt);
                    tracing::warn!(url = %url, %error, attempt, retry_in_ms = pause.as_millis() as u64, "cannot connect to NATS yet");
                    tokio::time::sleep(pause).await;
                }
            },
        }
    }
}

/// Whether a connection failed in the TLS handshake (the server refused the
/// client's certificate, or the client does not trust the server's): async-nats
/// reports it as an I/O error, which the TLS layer marks `InvalidData`;
/// retrying cannot help.
fn tls_refused(error: &async_nats::ConnectError) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        source = cause.source();
    }
    false
}

async fn client_options(settings: &ConnectSettings) -> Result<ConnectOptions, NatsError> {
    let mut options = match &settings.auth {
        Auth::None => ConnectOptions::new(),
        Auth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.expose().to_string())
        }
        Auth::Token(token) => ConnectOptions::with_token(token.expose().to_string()),
        Auth::NkeySeed(seed) => ConnectOptions::with_nkey(seed.expose().to_string()),
        Auth::CredentialsFile(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsError::ReadFile { path: path.clone(), source })?,
    };
    if settings.tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca_file) = &settings.tls.ca_file {
        check_readable(ca_file)?;
        options = options.add_root_certificates(ca_file.clone());
    }
    if let Some((cert, key)) = &settings.tls.client_cert {
        check_readable(cert)?;
        check_readable(key)?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let url = redact_url(&settings.url);
    Ok(options
        .name(&settings.name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .max_reconnects(None)
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            let url = url.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(url = %url, "NATS connection (re)established")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(url = %url, "NATS connection lost; reconnecting with backoff")
                    }
                    async_nats::Event::Closed | async_nats::Event::Draining => {
                        tracing::debug!(url = %url, event = %event, "NATS connection closing")
                    }
                    other => tracing::warn!(url = %url, event = %other, "NATS client event"),
                }
            }
        }))
}

fn check_readable(path: &std::path::Path) -> Result<(), NatsError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|source| NatsError::ReadFile { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("nats://u:secret@h:4222"), "nats://<redacted>@h:4222");
        assert_eq!(redact_url("nats://h:4222,u:p@k:1"), "nats://h:4222,<redacted>@k:1");
        assert_eq!(redact_url("tls://h"), "tls://h");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}
