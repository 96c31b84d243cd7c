//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! annotations and the types they answer with. A test calls every route it
//! lists, so it cannot name a route that does not exist.

use utoipa::OpenApi;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lifewatch",
        description = "The read side of lifewatch: incidents, entities, the stuck report, outages, \
                       metrics and health. Incident records are those of the contract \
                       (docs/contract.md, schemas/incident.schema.json). When a token is configured, \
                       every route but /healthz and /readyz requires `Authorization: Bearer <token>`."
    ),
    paths(
        api::incidents,
        api::incident,
        api::entity,
        api::stuck,
        api::outages,
        api::changes,
        api::openapi,
        api::metrics,
        api::healthz,
        api::readyz
    )
)]
struct Document;

/// The API's OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}
