//! Command-line interface: flags, their `NETMON_*` environment equivalents, and dispatch.

use crate::run::{self, RunOptions};
use crate::session;
use crate::telemetry::ExportFlags;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use netmon_proto::region::Geometry;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "netmon",
    version,
    about = "See what a program or a serverless function does on the network",
    long_about = "See what a program or a serverless function does on the network: the names it \
resolves, where it connects, the bytes each way, what fails and how long it takes. No root, no \
eBPF, no code changes."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under netmon and report its network activity when it exits
    Run(Box<RunArgs>),
    /// Run as an AWS Lambda extension (what /opt/extensions/netmon runs)
    Extension,
    /// Build the AWS Lambda layer zip (extension, libnetmon.so, exec wrapper)
    Layer(LayerArgs),
}

#[derive(Args)]
struct LayerArgs {
    /// Where to write the zip
    #[arg(long, value_name = "FILE", default_value = "netmon-layer.zip")]
    out: PathBuf,
    /// Path of libnetmon.so [default: next to the netmon binary]
    #[arg(long, value_name = "PATH", env = "NETMON_LIB")]
    lib: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Also write the summary as JSON to FILE
    #[arg(long, value_name = "FILE", env = "NETMON_JSON")]
    json: Option<PathBuf>,
    /// Also write a self-contained HTML report (topology graph, DNS and flow tables) to FILE
    #[arg(long, value_name = "FILE", env = "NETMON_HTML")]
    html: Option<PathBuf>,
    /// Don't print the summary on stderr
    #[arg(long, short)]
    quiet: bool,
    /// Path of libnetmon.so [default: next to the netmon binary]
    #[arg(long, value_name = "PATH", env = "NETMON_LIB")]
    lib: Option<PathBuf>,
    /// Event rings (one per thread that uses the network at the same time)
    #[arg(long, default_value_t = Geometry::default().rings, env = "NETMON_RINGS",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    rings: u32,
    /// Events each ring holds between two reads
    #[arg(long, default_value_t = Geometry::default().ring_capacity, env = "NETMON_RING_SLOTS",
          value_parser = clap::value_parser!(u32).range(4..=1048576))]
    ring_slots: u32,
    /// Sockets tracked at the same time
    #[arg(long, default_value_t = Geometry::default().sockets, env = "NETMON_SOCKETS",
          value_parser = clap::value_parser!(u32).range(1..=4194304))]
    sockets: u32,
    /// How often the shared memory is read, in milliseconds
    #[arg(long, default_value_t = 20, env = "NETMON_POLL_MS",
          value_parser = clap::value_parser!(u64).range(1..=10000))]
    poll_ms: u64,
    #[command(flatten)]
    export: ExportArgs,
    #[command(flatten)]
    kernel: crate::kernel::KernelArgs,
    /// The program to run, and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Where telemetry goes (OTLP settings come from the standard `OTEL_*` variables).
#[derive(Args)]
struct ExportArgs {
    /// Exporters, comma-separated: console (the summary), otlp, otlp-json [default: console]
    #[arg(long = "exporter", value_name = "LIST", env = "NETMON_EXPORTERS")]
    exporters: Option<String>,
    /// File for the otlp-json exporter: one OTLP JSON export request per line
    #[arg(long, value_name = "FILE", env = "NETMON_OTLP_JSON")]
    otlp_json: Option<PathBuf>,
    /// Also tag netflow metrics with the ephemeral port (many more series)
    #[arg(long, env = "NETMON_SRC_PORT")]
    src_port: bool,
    /// Attribute sets per metric; the rest goes to one otel.metric.overflow data point
    #[arg(long, value_name = "N", env = "NETMON_CARDINALITY_LIMIT",
          default_value_t = crate::telemetry::config::DEFAULT_CARDINALITY_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    cardinality_limit: u64,
    /// The longest netmon waits at exit to deliver queued telemetry, in milliseconds
    #[arg(long, value_name = "MS", env = "NETMON_FLUSH_TIMEOUT_MS",
          default_value_t = crate::telemetry::config::DEFAULT_FLUSH_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    flush_timeout_ms: u64,
}

impl ExportArgs {
    fn flags(self) -> ExportFlags {
        ExportFlags {
            exporters: self.exporters,
            otlp_json: self.otlp_json,
            src_port: self.src_port,
            cardinality_limit: self.cardinality_limit as usize,
            flush_timeout: Duration::from_millis(self.flush_timeout_ms),
        }
    }
}

/// True when this binary sits in an `extensions` directory (Lambda's `/opt/extensions`).
fn started_as_lambda_extension() -> bool {
    std::env::current_exe().is_ok_and(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "extensions")
    })
}

/// Parses the command line and runs the chosen mode; returns the process exit code.
pub fn main() -> Result<i32> {
    // Lambda starts /opt/extensions/netmon with no arguments.
    if std::env::args_os().len() == 1 && started_as_lambda_extension() {
        return crate::lambda::extension::run();
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Ok(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            });
        }
    };
    match cli.command {
        Command::Extension => crate::lambda::extension::run(),
        Command::Layer(a) => {
            let lib = session::locate_interceptor(a.lib.as_deref())?;
            let exe = std::env::current_exe()?;
            let size = crate::lambda::layer::build(&a.out, &exe, &lib)?;
            eprintln!(
                "netmon: wrote {} ({:.1} MiB): extensions/netmon, lib/libnetmon.so, netmon-wrapper",
                a.out.display(),
                size as f64 / (1 << 20) as f64
            );
            Ok(0)
        }
        Command::Run(a) => run::run(RunOptions {
            command: a.command,
            json: a.json,
            html: a.html,
            quiet: a.quiet,
            lib: a.lib,
            geometry: Geometry {
                rings: a.rings,
                ring_capacity: a.ring_slots,
                sockets: a.sockets,
            },
            poll_interval: Duration::from_millis(a.poll_ms),
            export: a.export.flags(),
            observe: a.kernel.options(),
        }),
    }
}
