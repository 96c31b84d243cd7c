//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! annotations and the types they answer with. A test calls every route it
//! lists, so it cannot name a route that does not exist.

use utoipa::OpenApi;

use crate::{actions, api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lifewatch",
        description = "The read side of lifewatch: incidents, entities, the stuck report, outages, \
                       metrics and health. Incident records are those of the contract \
                       (docs/contract.md, schemas/incident.schema.json). When a token is configured, \
                       every route but /healthz and /readyz requires `Authorization: Bearer <token>`; the \
                       operator actions (POST) always do, and are refused when no token is configured."
    ),
    paths(
        api::incidents,
        api::incident,
        api::comms,
        api::entity,
        api::stuck,
        api::outages,
        api::changes,
        api::openapi,
        api::metrics,
        api::healthz,
        api::readyz,
        actions::ack,
        actions::resolve,
        actions::notes
    )
)]
struct Document;

/// The incident record's JSON Schema, generated from the record type of
/// `lifewatch-core` (its `schema` feature) and kept in the repository.
const INCIDENT_SCHEMA: &str = include_str!("../../../schemas/incident.schema.json");

/// The API's OpenAPI document, with the incident record's schema as the
/// component `IncidentRecord` (its definitions beside it), referenced by
/// every answer that holds records.
pub fn openapi_document() -> serde_json::Value {
    let mut document = serde_json::to_value(Document::openapi()).unwrap_or_default();
    let Ok(mut record) = serde_json::from_str::<serde_json::Value>(INCIDENT_SCHEMA) else { return document };
    // JSON Schema's `$defs` become components; their references follow.
    let text =
        serde_json::to_string(&record).unwrap_or_default().replace("#/$defs/", "#/components/schemas/");
    record = serde_json::from_str(&text).unwrap_or(record);
    let mut components = serde_json::Map::new();
    if let Some(object) = record.as_object_mut() {
        if let Some(serde_json::Value::Object(definitions)) = object.remove("$defs") {
            components.extend(definitions);
        }
        object.remove("$schema");
        object.remove("$id");
    }
    components.insert("IncidentRecord".to_string(), record);
    let schemas = &mut document["components"]["schemas"];
    if !schemas.is_object() {
        *schemas = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.extend(components);
        let reference = serde_json::json!({"$ref": "#/components/schemas/IncidentRecord"});
        for (body, field) in [("IncidentPageBody", "incidents"), ("OutagesBody", "outages")] {
            if let Some(items) =
                schemas.get_mut(body).and_then(|body| body.pointer_mut(&format!("/properties/{field}/items")))
            {
                *items = reference.clone();
            }
        }
    }
    document
}
