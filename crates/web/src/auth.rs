//! The bearer token and the request-size guard.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// The longest query string accepted: filters and a cursor fit many times over.
pub(crate) const MAX_QUERY: usize = 4096;

/// The cookie a browser keeps the token in after `?access_token=` (a browser
/// cannot send an `Authorization` header on a link it follows).
const COOKIE: &str = "lifewatch_token";

/// When a token is configured, a request must carry it: as
/// `Authorization: Bearer <token>`, as the cookie set after a first visit
/// with `?access_token=<token>`, or as that parameter. Compared in constant
/// time.
pub(crate) async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(request).await };
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next();
    let from_query = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_string)
    });
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(token.as_bytes()));
    if bearer.is_some_and(matches) || cookie.is_some_and(matches) {
        return next.run(request).await;
    }
    if let Some(given) = from_query
        && matches(&given)
    {
        // Remember it for the links the page holds, and drop it from the URL
        // so it is not pasted into a chat with the link.
        let path = request.uri().path().to_string();
        let cookie = format!("{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
        return (StatusCode::SEE_OTHER, [(header::LOCATION, path), (header::SET_COOKIE, cookie)])
            .into_response();
    }
    ApiError::unauthorized().into_response()
}

/// Refuses query strings longer than [`MAX_QUERY`] with a 414 (the body
/// limit is a layer of its own).
pub(crate) async fn bounded_query(request: Request, next: Next) -> Response {
    if request.uri().query().is_some_and(|query| query.len() > MAX_QUERY) {
        return ApiError {
            status: StatusCode::URI_TOO_LONG,
            code: "query_too_long",
            message: format!("the query string is longer than {MAX_QUERY} bytes"),
        }
        .into_response();
    }
    next.run(request).await
}
