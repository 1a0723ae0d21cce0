//! AWS Lambda: the extension, per-invocation reports, the layer.

pub mod api;
pub mod extension;
pub mod invocation;
pub mod layer;
pub mod telemetry_api;
pub mod xray;
