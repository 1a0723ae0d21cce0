//! OpenTelemetry export: spans for DNS lookups and connection attempts, netflow/dnsflow
//! metrics, over OTLP (gRPC or HTTP/protobuf) or into an OTLP JSON file.
//!
//! `config` validates the settings, `resource` says who the data is about, `spans` and
//! `flows` turn tracker records into OpenTelemetry data (pure functions), `metrics` owns the
//! SDK instruments, `pipeline` keeps the cursors between reads, `export` delivers in the
//! background (trace requests from `otlp_traces`, sent with `otlp_client`). Every name on the
//! wire is in `schema`.

pub mod config;
pub mod export;
pub mod flows;
pub mod metrics;
pub mod otlp_client;
pub mod otlp_json;
pub mod otlp_traces;
pub mod pipeline;
pub mod resource;
pub mod schema;
pub mod spans;

pub use config::{ExportFlags, ProcessEnv, TelemetryConfig};
pub use pipeline::{ExporterReport, Pipeline, PipelineOptions};

use export::Exporters;
use std::time::Instant;

/// Telemetry settings checked and exporters built, before the monitored command starts.
pub struct Prepared {
    pub config: TelemetryConfig,
    exporters: Option<Exporters>,
    traceparent: Option<spans::TraceParent>,
}

/// Reads the configuration (flags and `OTEL_*` variables) and builds the exporters; an error
/// is one line for the user.
pub fn prepare(flags: &ExportFlags) -> Result<Prepared, String> {
    let config = config::resolve(flags, &ProcessEnv).map_err(|e| e.0)?;
    let exporters = if config.exports() {
        Some(Pipeline::exporters(&config).map_err(|e| e.0)?)
    } else {
        None
    };
    let traceparent = match std::env::var("TRACEPARENT") {
        Ok(v) if !v.trim().is_empty() => {
            let parsed = spans::parse_traceparent(&v);
            if parsed.is_none() && exporters.is_some() {
                eprintln!(
                    "netmon: TRACEPARENT={v:?} is not a W3C traceparent; spans start their own traces"
                );
            }
            parsed
        }
        _ => None,
    };
    Ok(Prepared {
        config,
        exporters,
        traceparent,
    })
}

impl Prepared {
    /// Print the human summary.
    pub fn console(&self) -> bool {
        self.config.console()
    }

    /// Starts exporting (if any exporter is configured) for this workload.
    pub fn start(&mut self, workload: &resource::Workload) -> Option<Pipeline> {
        let exporters = self.exporters.take()?;
        let (attrs, warning) =
            resource::attributes(workload, resource::host_name().as_deref(), &ProcessEnv);
        if let Some(w) = warning {
            eprintln!("netmon: {w}");
        }
        Some(Pipeline::start(
            exporters,
            resource::build(attrs),
            self.config.temporality,
            PipelineOptions {
                metric_interval: self.config.batching.metric_interval,
                ephemeral_ports: self.config.src_port,
                cardinality_limit: self.config.cardinality_limit,
                traceparent: self.traceparent,
            },
        ))
    }

    /// When the exit-time flush must end.
    pub fn flush_deadline(&self) -> Instant {
        Instant::now() + self.config.flush_timeout
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench;

/// Prometheus-style names of what netmon exports, and the check of `dashboards/` (tests).
#[cfg(test)]
mod dashboards;
#[cfg(test)]
mod promnames;
