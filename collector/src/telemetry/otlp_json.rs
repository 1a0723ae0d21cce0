//! The `otlp-json` exporter: a file of OTLP JSON export requests, one per line, as the
//! OpenTelemetry Collector's file exporter writes them. The JSON encoding is
//! `opentelemetry-proto`'s (hex ids, camelCase fields, 64-bit integers as strings).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open OTLP JSON file.
pub struct OtlpJsonFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl OtlpJsonFile {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<OtlpJsonFile> {
        let f = File::create(path)?;
        Ok(OtlpJsonFile {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(f)),
        })
    }

    fn write_line<T: serde::Serialize>(&self, request: &T) -> Result<(), String> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| "the otlp-json writer panicked".to_string())?;
        let r = serde_json::to_writer(&mut *out, request)
            .map_err(|e| e.to_string())
            .and_then(|_| out.write_all(b"\n").map_err(|e| e.to_string()))
            .and_then(|_| out.flush().map_err(|e| e.to_string()));
        r.map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    pub fn export_spans(&self, request: &ExportTraceServiceRequest) -> Result<(), String> {
        self.write_line(request)
    }

    pub fn export_metrics(&self, rm: &ResourceMetrics) -> Result<(), String> {
        self.write_line(&ExportMetricsServiceRequest::from(rm))
    }
}
