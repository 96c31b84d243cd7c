//! The JSON API (what the pages use, usable by scripts), `/metrics` and the
//! health probes. Every answer is a typed value of the read side
//! (`lifewatch_store::query`) serialised as it is, so the API says exactly
//! what the CLI prints.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lifewatch_core::{IncidentKind, IncidentRecord, Status};
use lifewatch_store::query::{self, IncidentQuery, Order};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::params::{IncidentParams, parse_query, parse_status, parse_time, wall_clock};

/// The API's routes (mounted behind the token check).
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/incidents", get(incidents))
        .route("/api/incidents/{id}", get(incident))
        .route("/api/incidents/{id}/comms", get(comms))
        .route("/api/incidents/{id}/ack", axum::routing::post(crate::actions::ack))
        .route("/api/incidents/{id}/resolve", axum::routing::post(crate::actions::resolve))
        .route("/api/incidents/{id}/notes", axum::routing::post(crate::actions::notes))
        .route("/api/entities/{id}", get(entity))
        .route("/api/report/stuck", get(stuck))
        .route("/api/outages", get(outages))
        .route("/api/changes", get(changes))
        .route("/api/openapi.json", get(openapi))
}

/// A page of incidents, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentPageBody {
    /// Incident records (`schemas/incident.schema.json`).
    #[schema(value_type = Vec<Object>)]
    incidents: Vec<IncidentRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(value_type = Option<String>)]
    next_cursor: Option<String>,
}

/// Incidents, newest first, keyset-paginated.
#[utoipa::path(get, path = "/api/incidents", params(IncidentParams),
    responses((status = 200, body = IncidentPageBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn incidents(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: IncidentParams = parse_query(raw.as_deref())?;
    let query = params.to_query(wall_clock())?;
    let page = state.pool.read(move |store| query::incidents(store, &query).map_err(ApiError::store)).await?;
    let body = IncidentPageBody {
        incidents: page.incidents,
        next_cursor: page.next_cursor.map(|cursor| cursor.to_string()),
    };
    Ok(Json(body).into_response())
}

/// An incident with its transitions.
#[utoipa::path(get, path = "/api/incidents/{id}", params(("id" = String, Path, description = "The incident id")),
    responses((status = 200, description = "`{record, transitions: [{transition, after_seq}]}`", body = Object),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let detail = state.pool.read(move |store| query::incident(store, &id).map_err(ApiError::store)).await?;
    match detail {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError::not_found(format!("no incident {}", crate::pages::bounded(&shown)))),
    }
}

/// The incident's communication templates (`ops/comms/<kind>.md`: status-page
/// updates, support macro, follow-up email), filled from its record.
#[utoipa::path(get, path = "/api/incidents/{id}/comms", params(("id" = String, Path, description = "The incident id")),
    responses((status = 200, description = "`[{name, text}]`, in the file's order", body = Object),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn comms(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let root = state.runbook_root.clone();
    let rendered = state
        .pool
        .read(move |store| {
            let read = || -> Result<_, lifewatch_store::StoreError> {
                let Some(detail) = query::incident(store, &id)? else { return Ok(None) };
                crate::comms::render(&root, store, &detail.record).map(Some)
            };
            read().map_err(ApiError::store)
        })
        .await?;
    match rendered {
        Some(rendered) => Ok(Json(rendered).into_response()),
        None => Err(ApiError::not_found(format!("no incident {}", crate::pages::bounded(&shown)))),
    }
}

/// An entity (every entity with this id: ids are per type) with its timeline,
/// incidents and the rejected events that name it.
#[utoipa::path(get, path = "/api/entities/{id}", params(("id" = String, Path, description = "The entity id")),
    responses((status = 200, description = "`{entities, timeline, incidents, rejected, clock}`", body = Object),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn entity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let detail = state.pool.read(move |store| query::entity(store, &id).map_err(ApiError::store)).await?;
    match detail {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError::not_found(format!("no entity {}", crate::pages::bounded(&shown)))),
    }
}

/// `?now=` of the stuck report.
#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StuckParams {
    /// Judge at this time (RFC 3339, `now`, `-1h`); default: the store's clock.
    now: Option<String>,
}

/// What is stuck: the entities of `report stuck --format jsonl`, with the
/// instant they are judged at.
#[utoipa::path(get, path = "/api/report/stuck", params(StuckParams),
    responses((status = 200, description = "`{now, judged_at, entities}`; `now` is null and `entities` empty while the store holds no events", body = Object),
        (status = 400, body = ErrorBody)))]
pub(crate) async fn stuck(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: StuckParams = parse_query(raw.as_deref())?;
    let now = params.now.as_deref().map(|text| parse_time("now", text, wall_clock())).transpose()?;
    let engine = state.engine.clone();
    let report = state
        .pool
        .read(move |store| query::stuck_report(store, &engine, now).map_err(ApiError::store))
        .await?;
    Ok(match report {
        Some(report) => Json(report).into_response(),
        None => Json(serde_json::json!({"now": null, "judged_at": null, "entities": []})).into_response(),
    })
}

/// `?status=` of the outages.
#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OutageParams {
    /// `open` or `resolved`; default: both.
    status: Option<String>,
}

/// Regional outages.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct OutagesBody {
    /// Their incident records, newest first.
    #[schema(value_type = Vec<Object>)]
    outages: Vec<IncidentRecord>,
}

/// Regional outages, newest first (at most 1000).
#[utoipa::path(get, path = "/api/outages", params(OutageParams),
    responses((status = 200, body = OutagesBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn outages(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: OutageParams = parse_query(raw.as_deref())?;
    let status = params.status.as_deref().filter(|s| !s.is_empty()).map(parse_status).transpose()?;
    let outages = state.pool.read(move |store| open_outages(store, status)).await?;
    Ok(Json(OutagesBody { outages }).into_response())
}

pub(crate) fn open_outages(
    store: &lifewatch_store::Store,
    status: Option<Status>,
) -> Result<Vec<IncidentRecord>, ApiError> {
    let query = IncidentQuery {
        status,
        kind: Some(IncidentKind::RegionalOutage),
        limit: Some(crate::params::MAX_LIMIT),
        order: Order::NewestFirst,
        ..Default::default()
    };
    Ok(query::incidents(store, &query).map_err(ApiError::store)?.incidents)
}

/// Where the store is: changes whenever a batch is committed.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ChangesBody {
    /// An opaque version; a page reloads when it differs from the one it was rendered at.
    pub(crate) version: String,
}

/// The store's version, for pages that refresh themselves: cheap (two index lookups).
#[utoipa::path(get, path = "/api/changes", responses((status = 200, body = ChangesBody)))]
pub(crate) async fn changes(State(state): State<AppState>) -> Result<Response, ApiError> {
    let version = state.pool.read(|store| store.version().map_err(ApiError::store)).await?;
    Ok(Json(ChangesBody { version }).into_response())
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub(crate) async fn openapi() -> Response {
    Json(crate::openapi::openapi_document()).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let probe = state.probe.clone();
    let (text, content_type) = state
        .pool
        .read(move |store| match &probe {
            Some(probe) => probe.metrics(store).map_err(ApiError::store),
            None => Ok((String::new(), "text/plain; version=0.0.4; charset=utf-8")),
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`ok`", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to do its work: for `run`, NATS connected, consumer bound, database
/// writable, outbox moving; for `serve`, the database readable.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "`ready`", body = String),
    (status = 503, description = "the reason, one line", body = String)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(probe) = &state.probe
        && let Err(reason) = probe.ready()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response();
    }
    match state.pool.read(|store| store.version().map_err(ApiError::store)).await {
        Ok(_) => "ready\n".into_response(),
        Err(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", error.message)).into_response()
        }
    }
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
