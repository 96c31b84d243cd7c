//! Operator actions over HTTP: `POST /api/incidents/{id}/ack|resolve|notes`
//! (JSON, `Authorization: Bearer` required) and the incident page's buttons
//! (`POST /incidents/{id}/act`, a form, with the token's cookie from the
//! same origin).
//!
//! Actions are refused unless the server has a token: a dashboard open to
//! anyone on the network may be read, but not acted on. An action is stored
//! as a request (`lifewatch_store::request_operator_action`); the monitor
//! (`lifewatch run --listen`) applies it within half a second, and the
//! answer says what became of it: 200 applied, 409 refused (with the
//! reason), 202 still waiting (no monitor runs: `lifewatch serve`).

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lifewatch_store::{ActionKind, OperatorAction};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// How long an action waits for the monitor to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The body of an action: who acts and an optional note (required for `/notes`).
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// Who acts (default `api`).
    by: Option<String>,
    /// A note kept on the incident's timeline.
    note: Option<String>,
}

/// The incident page's form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionForm {
    action: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    note: String,
}

fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { status: StatusCode::FORBIDDEN, code, message: message.into() }
}

/// The server must have a token, and the request must carry it as a bearer header.
fn bearer_required(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Err(forbidden(
            "actions_disabled",
            "actions need a token: start the server with LIFEWATCH_WEB_TOKEN (or web.token) set",
        ));
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match bearer {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// The page's form: the token (checked by the token layer, here as the
/// cookie) and a same-origin request: a browser sends `Origin` with a form
/// POST, and the cookie is `SameSite=Strict` as well.
fn same_origin_required(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.token.is_none() {
        return Err(forbidden(
            "actions_disabled",
            "actions need a token: start the server with LIFEWATCH_WEB_TOKEN (or web.token) set",
        ));
    }
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    let same = match (origin, host) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(forbidden("cross_origin", "an action must come from the dashboard's own pages"))
    }
}

/// `POST /api/incidents/{id}/ack`.
#[utoipa::path(post, path = "/api/incidents/{id}/ack",
    params(("id" = String, Path, description = "The incident id")),
    request_body(content = ActionBody, description = "Optional: who acts and a note"),
    responses(
        (status = 200, description = "Applied: the operator action as stored", body = Object),
        (status = 202, description = "Stored, not applied yet (no monitor runs)", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Refused, with the reason", body = ErrorBody)))]
pub(crate) async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api_action(&state, id, &headers, &body, ActionKind::Ack).await
}

/// `POST /api/incidents/{id}/resolve`.
#[utoipa::path(post, path = "/api/incidents/{id}/resolve",
    params(("id" = String, Path, description = "The incident id")),
    request_body(content = ActionBody, description = "Optional: who acts and a note"),
    responses(
        (status = 200, description = "Applied: the operator action as stored", body = Object),
        (status = 202, description = "Stored, not applied yet (no monitor runs)", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Refused: only illegal_transition and invariant_violation incidents are resolved by hand", body = ErrorBody)))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api_action(&state, id, &headers, &body, ActionKind::Resolve).await
}

/// `POST /api/incidents/{id}/notes`.
#[utoipa::path(post, path = "/api/incidents/{id}/notes",
    params(("id" = String, Path, description = "The incident id")),
    request_body(content = ActionBody, description = "`note` is required"),
    responses(
        (status = 200, description = "Added: the operator action as stored", body = Object),
        (status = 202, description = "Stored, not applied yet (no monitor runs)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn notes(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api_action(&state, id, &headers, &body, ActionKind::Note).await
}

/// The API's actions: the bearer token, the JSON body (a note is required
/// for a note), then [`perform`].
async fn api_action(
    state: &AppState,
    id: String,
    headers: &HeaderMap,
    body: &Bytes,
    kind: ActionKind,
) -> Result<Response, ApiError> {
    bearer_required(state, headers)?;
    let body = parse_body(body)?;
    if kind == ActionKind::Note && body.note.as_deref().is_none_or(|note| note.trim().is_empty()) {
        return Err(ApiError::bad_parameter("note", "a note is required"));
    }
    perform(state, id, kind, body.by, body.note)
        .await
        .map(|(status, action)| (status, Json(action)).into_response())
}

/// `POST /incidents/{id}/act`: the page's buttons; back to the page.
pub(crate) async fn form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    same_origin_required(&state, &headers)?;
    let axum::Form(form) =
        form.map_err(|rejection| ApiError::bad_parameter("form", rejection.body_text()))?;
    let action = match form.action.as_str() {
        "ack" => ActionKind::Ack,
        "resolve" => ActionKind::Resolve,
        "note" if !form.note.trim().is_empty() => ActionKind::Note,
        "note" => return Err(ApiError::bad_parameter("note", "a note is required")),
        _ => return Err(ApiError::bad_parameter("action", "one of ack, resolve, note")),
    };
    let by = Some(form.by).filter(|by| !by.trim().is_empty()).or_else(|| Some("dashboard".to_string()));
    let note = Some(form.note).filter(|note| !note.trim().is_empty());
    let page = crate::pages::incident_href(&id);
    perform(&state, id, action, by, note).await?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, page)]).into_response())
}

fn parse_body(body: &[u8]) -> Result<ActionBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(body).map_err(|error| ApiError::bad_parameter("body", error))
}

/// Checks the action against the incident, stores the request and waits
/// for the monitor to apply it.
async fn perform(
    state: &AppState,
    id: String,
    action: ActionKind,
    by: Option<String>,
    note: Option<String>,
) -> Result<(StatusCode, OperatorAction), ApiError> {
    let incident = id.clone();
    let detail = state
        .pool
        .read(move |store| lifewatch_store::query::incident(store, &incident).map_err(ApiError::store))
        .await?;
    let Some(detail) = detail else {
        return Err(ApiError::not_found(format!("no incident {}", crate::pages::bounded(&id))));
    };
    if let Some(reason) = lifewatch_store::refusal_before_asking(&detail, action) {
        return Err(ApiError { status: StatusCode::CONFLICT, code: "refused", message: reason });
    }
    let db = state.pool.path().to_path_buf();
    let by = by.unwrap_or_else(|| "api".to_string());
    let now = crate::params::wall_clock();
    let request = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            lifewatch_store::request_operator_action(&db, &id, action, &by, note.as_deref(), now)
        })
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?
    };
    let start = Instant::now();
    loop {
        let db = db.clone();
        let stored = tokio::task::spawn_blocking(move || lifewatch_store::operator_action(&db, request))
            .await
            .map_err(ApiError::store)?
            .map_err(ApiError::store)?;
        let Some(stored) = stored else {
            return Err(ApiError::store(format!("operator request {request} vanished")));
        };
        match stored.state.as_str() {
            "applied" => return Ok((StatusCode::OK, stored)),
            "refused" => {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    code: "refused",
                    message: stored.refusal.unwrap_or_else(|| "refused".to_string()),
                });
            }
            _ if start.elapsed() >= APPLY_WAIT => return Ok((StatusCode::ACCEPTED, stored)),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
