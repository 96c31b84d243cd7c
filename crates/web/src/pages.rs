//! The dashboard: server-rendered HTML (maud escapes every interpolated
//! value), one stylesheet, one small script that reloads a page when the
//! store changed. Every page works with JavaScript off.
//!
//! Every string that came from an event (ids, sources, regions, summaries)
//! is shown as text: maud escapes it in content and attributes, and it goes
//! into a URL only percent-encoded.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lifewatch_core::{Duration, IncidentKind, IncidentRecord, Severity, Status, Timestamp};
use lifewatch_store::query::{self, EntityDetail, IncidentDetail, IncidentQuery, Order};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::AppState;
use crate::error::ApiError;
use crate::params::{IncidentParams, parse_query, wall_clock};

/// How many incidents the home page lists before it offers the next page.
const HOME_LIMIT: u32 = 100;
/// How many stuck entities it lists (oldest first); `?kind=stuck` lists them all, page by page.
const STUCK_LIMIT: u32 = 50;
/// The most characters of an event-supplied string a page shows in a list.
const SHOWN: usize = 200;

const STYLESHEET: &str = include_str!("../static/app.css");
const SCRIPT: &str = include_str!("../static/app.js");

pub(crate) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], STYLESHEET)
        .into_response()
}

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        SCRIPT,
    )
        .into_response()
}

/// `text` cut to [`SHOWN`] characters with an ellipsis: for messages and
/// list cells; the full value is on the record's page and in the API.
pub(crate) fn bounded(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// What a path segment of a link encodes: every byte but letters, digits,
/// `-`, `_` and `~` (`.` too, so that an id `..` stays a segment).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// A path segment for a link.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

pub(crate) fn incident_href(id: &str) -> String {
    format!("/incidents/{}", segment(id))
}

fn entity_href(id: &str) -> String {
    format!("/entities/{}", segment(id))
}

fn filter_href(pairs: &[(&str, &str)]) -> String {
    match serde_urlencoded::to_string(pairs) {
        Ok(query) if !query.is_empty() => format!("/?{query}"),
        _ => "/".to_string(),
    }
}

/// "12m ago", "in 3h": how far `time` is from `now`, in its largest unit.
fn relative(time: Timestamp, now: Timestamp) -> String {
    let nanos = now.since(time).as_nanos();
    let (seconds, future) =
        if nanos < 0 { (-nanos / 1_000_000_000, true) } else { (nanos / 1_000_000_000, false) };
    let amount = match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    };
    if future { format!("in {amount}") } else { format!("{amount} ago") }
}

/// A duration as people say it: `1h 5m`, `3d 2h`, `45s`.
fn spoken(duration: Duration) -> String {
    let seconds = duration.as_nanos().max(0) / 1_000_000_000;
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// A time in UTC with how long ago it was.
fn when(time: Timestamp, now: Timestamp) -> Markup {
    html! { time datetime=(time) title=(time) { (time) } " " span.ago { "(" (relative(time, now)) ")" } }
}

/// The severity as a word, with a class for its colour: never colour alone.
fn severity(severity: Severity) -> Markup {
    html! { span class={ "sev sev-" (severity.as_str()) } { (severity.as_str().to_uppercase()) } }
}

fn status(status: Status) -> Markup {
    html! { span class={ "status status-" (status.as_str()) } { (status.as_str()) } }
}

fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 0,
        Severity::Error => 1,
        Severity::Warning => 2,
        Severity::Info => 3,
    }
}

/// The page around `body`: `version` is the store's when it was rendered;
/// the script reloads the page when the store moves past it.
fn layout(title: &str, version: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · lifewatch" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-version=(version) {
                header.top {
                    a.brand href="/" { "lifewatch" }
                    nav {
                        a href="/" { "Dashboard" }
                        a href="/api/openapi.json" { "API" }
                        a href="/metrics" { "Metrics" }
                    }
                    span #live.live { noscript { a href="" { "Refresh" } } }
                }
                main { (body) }
            }
        }
    }
}

/// Everything the home page shows, read in one snapshot.
struct Home {
    version: String,
    clock: Option<Timestamp>,
    outages: Vec<IncidentRecord>,
    incidents: Vec<IncidentRecord>,
    next_cursor: Option<String>,
    stuck: Vec<IncidentRecord>,
    counts: Vec<(IncidentKind, u64)>,
    /// Notifications given up.
    dead_notifications: u64,
}

/// `/`: outage banners, open incidents by owner then severity, the stuck
/// entities oldest first, counts by kind, and the filters (in the URL).
pub(crate) async fn home(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: IncidentParams = parse_query(raw.as_deref())?;
    let now = wall_clock();
    let mut query = params.to_query(now)?;
    // The dashboard shows what is open unless asked otherwise.
    if params.status.is_none() {
        query.status = Some(Status::Open);
    }
    if params.limit.is_none() {
        query.limit = Some(HOME_LIMIT);
    }
    let cache_key = raw.clone().unwrap_or_default();
    if let Some(page) = state.home_cache.get(&cache_key) {
        return Ok(page.into_response());
    }
    let home = state
        .pool
        .read(move |store| {
            store
                .snapshot(|store| {
                    let counts = query::open_counts(store)?;
                    let open = |kind: IncidentKind| counts.iter().any(|&(counted, _)| counted == kind);
                    let page = query::incidents(store, &query)?;
                    // The open ones of a kind, when there are any (the counts say).
                    let open_of = |kind: IncidentKind, limit: u32, order: Order| {
                        if !open(kind) {
                            return Ok(Vec::new());
                        }
                        let query = IncidentQuery {
                            status: Some(Status::Open),
                            kind: Some(kind),
                            limit: Some(limit),
                            order,
                            ..Default::default()
                        };
                        Ok::<_, lifewatch_store::StoreError>(query::incidents(store, &query)?.incidents)
                    };
                    Ok(Home {
                        version: store.version()?,
                        clock: store.clock()?,
                        outages: open_of(IncidentKind::RegionalOutage, 50, Order::NewestFirst)?,
                        incidents: page.incidents,
                        next_cursor: page.next_cursor.map(|cursor| cursor.to_string()),
                        stuck: open_of(IncidentKind::Stuck, STUCK_LIMIT, Order::OldestFirst)?,
                        counts,
                        dead_notifications: store.delivery_counts()?.1,
                    })
                })
                .map_err(ApiError::store)
        })
        .await?;
    let page = render_home(&params, &home, now);
    state.home_cache.put(cache_key, page.clone());
    Ok(page.into_response())
}

fn render_home(params: &IncidentParams, home: &Home, now: Timestamp) -> Markup {
    // Owner, then severity, then newest first.
    let mut groups: BTreeMap<(&str, u8), Vec<&IncidentRecord>> = BTreeMap::new();
    for record in &home.incidents {
        groups.entry((record.owner.as_str(), severity_rank(record.severity))).or_default().push(record);
    }
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    let shown_status = params.status.clone().unwrap_or_else(|| "open".to_string());
    let stuck_count =
        home.counts.iter().find(|&&(kind, _)| kind == IncidentKind::Stuck).map_or(0, |&(_, count)| count);
    let body = html! {
        @for outage in &home.outages {
            div.banner role="alert" {
                (severity(outage.severity)) " "
                strong { "Regional outage in " (bounded(outage.region.as_deref().unwrap_or(&outage.entity.id))) }
                " — " (bounded(&outage.summary)) " · since " (when(outage.opened_at, now)) " · "
                a href=(incident_href(&outage.id)) { "details and runbook" }
            }
        }
        @if home.dead_notifications > 0 {
            div.banner role="alert" {
                strong { (home.dead_notifications) " notification" @if home.dead_notifications != 1 { "s" } " could not be delivered" }
                " — a team was not told. See " code { "lifewatch deliveries --state dead" } " and the incident pages; "
                code { "lifewatch deliveries retry --all" } " sends them again."
            }
        }
        p.clock {
            "Store clock: "
            @match home.clock { Some(clock) => (when(clock, now)), None => "not set yet" }
            " · times in UTC"
        }
        section.counts {
            h2 { "Open incidents by kind" }
            @if home.counts.is_empty() { p.none { "No open incidents." } }
            ul {
                @for (kind, count) in &home.counts {
                    li { a href=(filter_href(&[("kind", kind.as_str())])) { span.count { (count) } " " (kind.as_str()) } }
                }
            }
        }
        form.filters method="get" action="/" {
            label { "Owner " input type="text" name="owner" value=(value(&params.owner)); }
            label { "Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for kind in IncidentKind::ALL {
                        option value=(kind.as_str()) selected[params.kind.as_deref() == Some(kind.as_str())] { (kind.as_str()) }
                    }
                }
            }
            label { "Severity "
                select name="severity" {
                    option value="" { "any" }
                    @for level in Severity::ALL {
                        option value=(level.as_str()) selected[params.severity.as_deref() == Some(level.as_str())] { (level.as_str()) }
                    }
                }
            }
            label { "Status "
                select name="status" {
                    @for choice in ["open", "resolved", ""] {
                        option value=(choice) selected[shown_status == choice] { @if choice.is_empty() { "any" } @else { (choice) } }
                    }
                }
            }
            label { "Since " input type="text" name="since" placeholder="-24h or 2026-12-01T00:00:00Z" value=(value(&params.since)); }
            button type="submit" { "Filter" }
            " " a href="/" { "clear" }
        }
        section.incidents {
            h2 { "Incidents (" (if shown_status.is_empty() { "any status" } else { shown_status.as_str() }) ")" }
            @if home.incidents.is_empty() { p.none { "No incidents match." } }
            @for ((owner, _), records) in &groups {
                h3 { (bounded(owner)) " — " (severity(records[0].severity)) " (" (records.len()) ")" }
                (incident_table(records, now))
            }
            @if let Some(cursor) = &home.next_cursor {
                p { a href=(next_page(params, cursor)) { "More incidents →" } }
            }
        }
        section.stuck {
            h2 { "Stuck entities, oldest first (" (stuck_count) ")" }
            @if home.stuck.is_empty() { p.none { "Nothing is stuck." } }
            @else {
                table {
                    thead { tr { th { "Entity" } th { "State" } th { "Past deadline" } th { "Owner" } th { "Region" } th { "Incident" } } }
                    tbody {
                        @for record in &home.stuck {
                            tr {
                                td { a href=(entity_href(&record.entity.id)) { (record.entity.entity_type.as_str()) " " (bounded(&record.entity.id)) } }
                                td { (record.state.as_deref().unwrap_or("")) }
                                td { (spoken(now.since(record.opened_at))) }
                                td { (bounded(&record.owner)) }
                                td { (bounded(record.region.as_deref().unwrap_or(""))) }
                                td { a href=(incident_href(&record.id)) { (severity(record.severity)) } }
                            }
                        }
                    }
                }
            }
            @if stuck_count > home.stuck.len() as u64 {
                p { a href=(filter_href(&[("kind", "stuck")])) { "All " (stuck_count) " stuck →" } }
            }
            p.hint { "The full report, judged at any instant: " a href="/api/report/stuck" { "/api/report/stuck" } }
        }
    };
    layout("Dashboard", &home.version, body)
}

fn next_page(params: &IncidentParams, cursor: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("status", &params.status),
        ("owner", &params.owner),
        ("kind", &params.kind),
        ("severity", &params.severity),
        ("entity", &params.entity),
        ("region", &params.region),
        ("since", &params.since),
        ("limit", &params.limit),
    ] {
        if let Some(value) = value {
            pairs.push((name, value));
        }
    }
    pairs.push(("cursor", cursor));
    filter_href(&pairs)
}

fn incident_table(records: &[&IncidentRecord], now: Timestamp) -> Markup {
    html! {
        table {
            thead { tr { th { "Severity" } th { "Kind" } th { "Entity" } th { "Summary" } th { "Opened" } th { "Status" } } }
            tbody {
                @for record in records {
                    tr {
                        td { (severity(record.severity)) }
                        td { (record.kind.as_str()) }
                        td { a href=(entity_href(&record.entity.id)) { (record.entity.entity_type.as_str()) " " (bounded(&record.entity.id)) } }
                        td { a href=(incident_href(&record.id)) { (bounded(&record.summary)) } }
                        td { (when(record.opened_at, now)) }
                        td { (status(record.status)) }
                    }
                }
            }
        }
    }
}

/// `/incidents/{id}`: the record, its transitions, its runbook.
pub(crate) async fn incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let root = state.runbook_root.clone();
    let (detail, timeline, notifications, comms, version) = state
        .pool
        .read(move |store| {
            // Each query reads one committed state of its own; the version
            // is read first, so a change in between reloads the page again.
            let read = || -> Result<_, lifewatch_store::StoreError> {
                let version = store.version()?;
                let Some(detail) = query::incident(store, &id)? else {
                    return Ok((None, None, Vec::new(), Vec::new(), version));
                };
                let entity = query::entity(store, &detail.record.entity.id)?;
                let notifications = query::notifications_of(store, &id)?;
                let comms = crate::comms::render(&root, store, &detail.record)?;
                Ok((Some(detail), entity, notifications, comms, version))
            };
            read().map_err(ApiError::store)
        })
        .await?;
    let Some(detail) = detail else {
        return Err(ApiError::not_found(format!("no incident {}", bounded(&shown))));
    };
    let runbook = crate::runbook::render(&state.runbook_root, &detail.record.runbook);
    let actions_enabled = state.token.is_some();
    Ok(render_incident(
        &detail,
        timeline.as_ref(),
        &notifications,
        &Guides { runbook: &runbook, comms: &comms },
        &version,
        wall_clock(),
        actions_enabled,
    )
    .into_response())
}

/// What the incident page shows people to do and say.
struct Guides<'a> {
    /// The runbook, as HTML.
    runbook: &'a Markup,
    /// The communication templates, filled in.
    comms: &'a [lifewatch_core::comms::Rendered],
}

fn render_incident(
    detail: &IncidentDetail,
    entity: Option<&EntityDetail>,
    notifications: &[query::NotificationState],
    guides: &Guides<'_>,
    version: &str,
    now: Timestamp,
    actions_enabled: bool,
) -> Markup {
    let record = &detail.record;
    let acknowledged = detail
        .actions
        .iter()
        .find(|action| action.action == lifewatch_store::ActionKind::Ack && action.state == "applied");
    let open = record.status == Status::Open;
    let resolvable =
        open && matches!(record.kind, IncidentKind::IllegalTransition | IncidentKind::InvariantViolation);
    let act = format!("{}/act", incident_href(&record.id));
    // The time of the event each transition came after, where that event is
    // one of the entity's own (the log's other events are not read here).
    let time_of = |seq: i64| {
        entity
            .and_then(|entity| entity.timeline.iter().find(|entry| entry.seq == seq))
            .map(|entry| entry.time)
    };
    let is_region = record.entity.entity_type.as_str() == "region";
    let body = html! {
        h1 { (severity(record.severity)) " " (record.kind.as_str()) " — " (bounded(&record.entity.id)) }
        p.summary { (record.summary) }
        dl.record {
            dt { "Status" } dd { (status(record.status)) }
            dt { "Owner" } dd { a href=(filter_href(&[("owner", &record.owner)])) { (record.owner) } }
            dt { "Entity" } dd {
                @if is_region { a href=(filter_href(&[("region", &record.entity.id), ("status", "")])) { "region " (record.entity.id) } }
                @else { a href=(entity_href(&record.entity.id)) { (record.entity.entity_type.as_str()) " " (record.entity.id) } }
            }
            @if let Some(account) = &record.account_id { dt { "Account" } dd { a href=(entity_href(account)) { (account) } } }
            @if let Some(region) = &record.region { dt { "Region" } dd { a href=(filter_href(&[("region", region), ("status", "")])) { (region) } } }
            @if let Some(state) = &record.state { dt { "State" } dd { (state) } }
            dt { "Opened" } dd { (when(record.opened_at, now)) }
            @if let Some(resolved) = record.resolved_at { dt { "Resolved" } dd { (when(resolved, now)) " after " (spoken(resolved.since(record.opened_at))) } }
            dt { "Count" } dd { (record.count) }
            dt { "Key" } dd { code { (record.key) } }
            dt { "Id" } dd { code { (record.id) } }
            dt { "Events" } dd { @for (i, event) in record.events.iter().enumerate() { @if i > 0 { ", " } code { (event) } } }
            @if let Some(ack) = acknowledged { dt { "Acknowledged" } dd { "by " (bounded(&ack.by)) ", " (when(ack.requested_at, now)) } }
        }
        h2 { "People" }
        @if !detail.actions.is_empty() {
            table.actions {
                thead { tr { th { "When" } th { "Action" } th { "By" } th { "Outcome" } th { "Note" } } }
                tbody {
                    @for action in &detail.actions {
                        tr {
                            td { (when(action.requested_at, now)) }
                            td { (action.action.as_str()) }
                            td { (bounded(&action.by)) }
                            td { (action.state) @if let Some(refusal) = &action.refusal { ": " (refusal) } }
                            td { (bounded(action.note.as_deref().unwrap_or(""))) }
                        }
                    }
                }
            }
        }
        @if actions_enabled {
            div.act {
                @if open && acknowledged.is_none() {
                    form method="post" action=(act) {
                        input type="hidden" name="action" value="ack";
                        input type="text" name="by" placeholder="your name" maxlength="200" aria-label="your name";
                        button type="submit" { "Acknowledge" }
                    }
                }
                @if resolvable {
                    form method="post" action=(act) {
                        input type="hidden" name="action" value="resolve";
                        input type="text" name="by" placeholder="your name" maxlength="200" aria-label="your name";
                        button type="submit" { "Resolve" }
                    }
                }
                form method="post" action=(act) {
                    input type="hidden" name="action" value="note";
                    input type="text" name="by" placeholder="your name" maxlength="200" aria-label="your name";
                    input type="text" name="note" placeholder="a note for the timeline" maxlength="2000" aria-label="note" required;
                    button type="submit" { "Add note" }
                }
            }
        } @else {
            p.hint {
                "Acknowledge, resolve and add notes here once the server has a token (LIFEWATCH_WEB_TOKEN); or run "
                code { "lifewatch ack " (record.id) " --db …" } "."
            }
        }
        h2 { "Transitions" }
        table {
            thead { tr { th { "Transition" } th { "Time" } th { "After event" } } }
            tbody {
                @for change in &detail.transitions {
                    @let kind = change.transition.as_str();
                    tr {
                        td { (kind) }
                        td {
                            @match (kind, time_of(change.after_seq)) {
                                ("opened", _) => (when(record.opened_at, now)),
                                ("resolved", _) if record.resolved_at.is_some() => {
                                    @if let Some(resolved) = record.resolved_at { (when(resolved, now)) }
                                }
                                (_, Some(time)) => (when(time, now)),
                                _ => "—",
                            }
                        }
                        td { "#" (change.after_seq) }
                    }
                }
            }
        }
        @if !notifications.is_empty() {
            h2 { "Notifications" }
            table {
                thead { tr { th { "Channel" } th { "Transition" } th { "State" } th { "Attempts" } th { "Last error" } } }
                tbody {
                    @for notification in notifications {
                        tr {
                            td { (notification.channel) }
                            td { (notification.transition) }
                            td { span class={ "delivery delivery-" (notification.state) } { (notification.state) } }
                            td { (notification.attempts) }
                            td { (bounded(notification.last_error.as_deref().unwrap_or(""))) }
                        }
                    }
                }
            }
        }
        p.hint { "JSON: " a href=(format!("/api{}", incident_href(&record.id))) { "this incident" } }
        nav.tabs { a href="#runbook" { "Runbook" } " · " a href="#comms" { "Communication" } }
        h2 id="runbook" { "Runbook" }
        article.runbook { (guides.runbook) }
        h2 id="comms" { "Communication" }
        @if guides.comms.is_empty() {
            p.none { "No communication templates for this kind (ops/comms/" (record.kind.as_str()) ".md)." }
        } @else {
            p.hint { "Filled from this incident: copy, check the wording, post. JSON: "
                a href=(format!("/api{}/comms", incident_href(&record.id))) { "templates" } }
            @for template in guides.comms {
                details.comms {
                    summary { (template.name) }
                    pre { (template.text) }
                }
            }
        }
    };
    layout(&format!("{} {}", record.kind.as_str(), bounded(&record.entity.id)), version, body)
}

/// `/entities/{id}`: state, timeline, incidents, rejected events naming it.
pub(crate) async fn entity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let (detail, version) = state
        .pool
        .read(move |store| {
            let version = store.version().map_err(ApiError::store)?;
            Ok((query::entity(store, &id).map_err(ApiError::store)?, version))
        })
        .await?;
    let Some(detail) = detail else {
        return Err(ApiError::not_found(format!("no entity {}", bounded(&shown))));
    };
    Ok(render_entity(&shown, &detail, &version, wall_clock()).into_response())
}

fn render_entity(id: &str, detail: &EntityDetail, version: &str, now: Timestamp) -> Markup {
    let body = html! {
        h1 { "Entity " (bounded(id)) }
        @for entity in &detail.entities {
            dl.record {
                dt { "Type" } dd { (entity.entity_type.as_str()) }
                dt { "State" } dd { (entity.state.map_or("—", |state| state.as_str())) }
                @if let Some(entered) = entity.entered_at { dt { "In state since" } dd { (when(entered, now)) } }
                @if let Some(account) = &entity.account_id { dt { "Account" } dd { a href=(entity_href(account)) { (account) } } }
                @if let Some(region) = &entity.region { dt { "Region" } dd { a href=(filter_href(&[("region", region), ("status", "")])) { (region) } } }
                @if let Some(plan) = &entity.plan { dt { "Plan" } dd { (plan) " (" (entity.live_projects) " live projects)" } }
            }
        }
        h2 { "Incidents (" (detail.incidents.len()) ")" }
        @if detail.incidents.is_empty() { p.none { "None." } }
        @else { (incident_table(&detail.incidents.iter().collect::<Vec<_>>(), now)) }
        h2 { "Timeline (" (detail.timeline.len()) " events)" }
        table {
            thead { tr { th { "Time" } th { "Event" } th { "State after" } th { "Time in state" } th { "Source" } th { "Event id" } } }
            tbody {
                @for entry in &detail.timeline {
                    tr {
                        td { (when(entry.time, now)) }
                        td { (bounded(&entry.event_type)) }
                        td { @if let Some(state) = entry.state_after { (state.as_str()) } }
                        td {
                            @if let Some(stayed) = entry.stayed { (spoken(stayed)) @if entry.still_there { " (still there)" } }
                        }
                        td { (bounded(&entry.source)) }
                        td { code { (bounded(&entry.event_id)) } }
                    }
                }
            }
        }
        @if !detail.rejected.is_empty() {
            h2 { "Rejected events naming it (" (detail.rejected.len()) ")" }
            table {
                thead { tr { th { "Reason" } th { "Detail" } th { "Origin" } th { "Input" } } }
                tbody {
                    @for rejected in &detail.rejected {
                        tr {
                            td { (rejected.reason) }
                            td { (bounded(&rejected.detail)) }
                            td { (bounded(&rejected.origin)) }
                            td { code { (bounded(&rejected.payload)) } }
                        }
                    }
                }
            }
        }
        p.hint { "JSON: " a href=(format!("/api{}", entity_href(id))) { "this entity" } }
    };
    layout(&format!("Entity {}", bounded(id)), version, body)
}

/// Markup that is already HTML (the rendered runbook).
pub(crate) fn trusted(html: String) -> Markup {
    PreEscaped(html)
}

/// The home page as rendered for each query string, kept for [`HOME_TTL`]:
/// however many people (or scripts) load the dashboard at once, it is
/// rendered at most a few times a second. A page is at most that much older
/// than the store, well inside the 2 s in which pages follow it.
pub(crate) struct HomeCache {
    pages: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Markup)>>,
}

/// How long a rendered home page is served again.
const HOME_TTL: std::time::Duration = std::time::Duration::from_millis(500);

/// At most this many query strings are kept (a full cache is emptied).
const HOME_CACHED: usize = 64;

impl HomeCache {
    pub(crate) fn new() -> HomeCache {
        HomeCache { pages: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    fn get(&self, key: &str) -> Option<Markup> {
        let pages = self.pages.lock().ok()?;
        let (made, page) = pages.get(key)?;
        (made.elapsed() < HOME_TTL).then(|| page.clone())
    }

    fn put(&self, key: String, page: Markup) {
        if let Ok(mut pages) = self.pages.lock() {
            if pages.len() >= HOME_CACHED {
                pages.clear();
            }
            pages.insert(key, (std::time::Instant::now(), page));
        }
    }
}
