//! The baseline's envelope: everything owned, as a naive consumer decodes
//! it. Shared by `benches/engine.rs` and `examples/decode_baseline.rs`, so
//! that the benchmark and the example measure the same baseline.

/// A CloudEvent decoded into owned values.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
pub struct OwnedEnvelope {
    specversion: String,
    pub id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    time: chrono::DateTime<chrono::Utc>,
    datacontenttype: Option<String>,
    data: Option<serde_json::Value>,
}
