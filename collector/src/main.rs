//! `netmon`: see what a program — or a serverless function — does on the network.
#![forbid(unsafe_code)]

mod cli;
mod flowlog;
#[cfg(test)]
mod hostile_input;
#[cfg(test)]
mod ingest_bench;
mod kernel;
mod lambda;
mod names;
mod report;
mod run;
mod session;
mod summary;
mod telemetry;
mod tracker;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("netmon: {e:#}");
            ExitCode::from(1)
        }
    }
}
