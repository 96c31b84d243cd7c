//! Query-string parameters: parsed into the read side's queries, each
//! mistake a 400 naming the parameter.

use lifewatch_core::{IncidentKind, Severity, Status, Timestamp};
use lifewatch_store::query::{Cursor, IncidentQuery, Order};
use serde::Deserialize;

use crate::error::ApiError;

/// The most incidents one page of the API holds.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// A page's size when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: u32 = 100;

/// `?status=&owner=&kind=&severity=&entity=&region=&since=&limit=&cursor=`, as
/// given. Unknown parameters are refused, so a typo is not a silent no-op.
#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct IncidentParams {
    /// `open` or `resolved`.
    pub(crate) status: Option<String>,
    /// The owning team.
    pub(crate) owner: Option<String>,
    /// An incident kind (`stuck`, `regional_outage`, …).
    pub(crate) kind: Option<String>,
    /// `critical`, `error` or `warning`.
    pub(crate) severity: Option<String>,
    /// Incidents about this entity (or region) id.
    pub(crate) entity: Option<String>,
    /// Incidents naming this region.
    pub(crate) region: Option<String>,
    /// Only incidents open at some moment at or after this time: RFC 3339, `now`, or `-1h`, `-2d`.
    pub(crate) since: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub(crate) limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Parses a raw query string into `T`, naming what is wrong.
pub(crate) fn parse_query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(raw) => serde_urlencoded::from_str(raw).map_err(|error| ApiError {
            status: axum::http::StatusCode::BAD_REQUEST,
            code: "bad_parameter",
            message: format!("the query string: {error}"),
        }),
    }
}

/// An empty value means "no filter": `?owner=` is what an HTML form sends
/// for a blank field.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

impl IncidentParams {
    /// The read side's query: newest first.
    pub(crate) fn to_query(&self, now: Timestamp) -> Result<IncidentQuery, ApiError> {
        let status = given(&self.status).map(parse_status).transpose()?;
        let kind = given(&self.kind)
            .map(|text| {
                IncidentKind::parse(text).ok_or_else(|| {
                    ApiError::bad_parameter("kind", one_of(text, IncidentKind::ALL.map(|k| k.as_str())))
                })
            })
            .transpose()?;
        let severity = given(&self.severity)
            .map(|text| {
                Severity::parse(text).ok_or_else(|| {
                    ApiError::bad_parameter("severity", one_of(text, Severity::ALL.map(|s| s.as_str())))
                })
            })
            .transpose()?;
        let since = given(&self.since).map(|text| parse_time("since", text, now)).transpose()?;
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::bad_parameter(
                        "limit",
                        format!("{text:?} is not a number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let cursor = given(&self.cursor)
            .map(|text| text.parse::<Cursor>().map_err(|error| ApiError::bad_parameter("cursor", error)))
            .transpose()?;
        Ok(IncidentQuery {
            status,
            owner: given(&self.owner).map(str::to_string),
            kind,
            severity,
            entity: given(&self.entity).map(str::to_string),
            region: given(&self.region).map(str::to_string),
            since,
            limit: Some(limit),
            cursor,
            order: Order::NewestFirst,
        })
    }
}

pub(crate) fn parse_status(text: &str) -> Result<Status, ApiError> {
    Status::parse(text)
        .ok_or_else(|| ApiError::bad_parameter("status", one_of(text, Status::ALL.map(|s| s.as_str()))))
}

fn one_of<const N: usize>(text: &str, names: [&str; N]) -> String {
    format!("{text:?} is not one of {}", names.join(", "))
}

/// A time as a person gives it: RFC 3339 with an offset, `now`, or a time
/// before now such as `-1h` or `-2d`.
pub(crate) fn parse_time(name: &str, text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = lifewatch_core::Duration::parse_human(ago).map_err(|message| {
            ApiError::bad_parameter(name, format!("{text:?} is not a time before now such as -1h: {message}"))
        })?;
        return Ok(now.saturating_sub(ago));
    }
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        ApiError::bad_parameter(
            name,
            format!("{text:?} is not RFC 3339 with an offset (2026-11-27T12:00:00Z), now, or -1h"),
        )
    })
}

/// The wall clock: the reference of `now` and `-1h`, and of "12m ago".
pub(crate) fn wall_clock() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    Timestamp::from_unix_nanos(nanos)
}
