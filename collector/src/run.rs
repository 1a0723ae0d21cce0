//! `netmon run -- CMD`: runs a program under the interceptor, follows its children, forwards
//! signals, and reports what it did on the network when it exits.

use crate::kernel::{Observer, ObserverOptions};
use crate::report;
use crate::session::{self, Session};
use crate::summary::{self, Retired, RunInfo};
use crate::telemetry::{self, ExportFlags, resource::Workload};
use crate::tracker::Tracker;
use anyhow::{Context, Result};
use netmon_proto::region::Geometry;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::signal::*;
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options of `netmon run`.
pub struct RunOptions {
    pub command: Vec<String>,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub quiet: bool,
    pub lib: Option<PathBuf>,
    pub geometry: Geometry,
    pub poll_interval: Duration,
    pub export: ExportFlags,
    pub observe: ObserverOptions,
}

/// Exit status for invalid flags or configuration.
pub const EXIT_USAGE: i32 = 2;

/// Exit status when the command cannot be started (as shells do).
pub const EXIT_CANNOT_START: i32 = 127;

/// Signals passed on to the child when another process sends them to netmon. Signals from the
/// terminal (Ctrl-C) already reach the child through its process group and are not repeated.
const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

pub fn run(opts: RunOptions) -> Result<i32> {
    // Invalid export settings stop here, before the command runs.
    let mut telemetry = match telemetry::prepare(&opts.export) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("netmon: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    // An HTML report that cannot be written stops here too.
    let html = match &opts.html {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path, f)),
            Err(e) => {
                eprintln!(
                    "netmon: cannot write the HTML report {}: {e}",
                    path.display()
                );
                return Ok(EXIT_USAGE);
            }
        },
        None => None,
    };
    let lib = session::locate_interceptor(opts.lib.as_deref())?;
    let session = Session::create(opts.geometry)?;
    // Counters the run's deltas start from, read before the command starts.
    let mut observer = Observer::start(&opts.observe)?;
    let mut signals =
        SignalsInfo::<WithOrigin>::new(FORWARDED).context("cannot install signal handlers")?;
    let program = &opts.command[0];
    let started = Instant::now();
    let mut child = match Command::new(program)
        .args(&opts.command[1..])
        .env(
            "LD_PRELOAD",
            session::preload_value(&lib, std::env::var_os("LD_PRELOAD").as_deref()),
        )
        .env("NETMON_SHM", &session.path)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netmon: cannot start {program}: {e}");
            return Ok(EXIT_CANNOT_START);
        }
    };
    let child_pid = Pid::from_raw(child.id() as i32);
    observer.watch(child.id());
    let executable = std::path::Path::new(program)
        .file_name()
        .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
    let mut pipeline = telemetry.start(&Workload {
        executable,
        pid: Some(child.id()),
    });

    let forwarder_handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for info in signals.forever() {
            if let (Some(_), Ok(sig)) = (info.process, Signal::try_from(info.signal)) {
                let _ = kill(child_pid, sig);
            }
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let interval = opts.poll_interval;
        std::thread::scope(|scope| {
            let (telemetry, session, stop) = (&telemetry, &session, &stop);
            let observer = &mut observer;
            let handle = scope.spawn(move || {
                let mut tracker = Tracker::new();
                let mut retired = Retired::default();
                while !stop.load(Ordering::Relaxed) {
                    tracker.poll(&session.region);
                    observer.poll(&tracker);
                    if let Some(p) = &mut pipeline {
                        if let Some(points) = observer.monitor.take_metric_points() {
                            p.collect_kernel(points);
                        }
                        p.collect(&tracker, tracker.health(&session.region));
                    }
                    // What every reader is done with goes into the summary's totals, so memory
                    // follows what is open, not everything the run ever opened.
                    let (lookups_read, order_read) = pipeline
                        .as_ref()
                        .map_or((usize::MAX, usize::MAX), |p| p.read_positions());
                    let gone = tracker.retire(
                        |k, s| {
                            !pipeline.as_ref().is_some_and(|p| p.holds_socket(k))
                                && observer.done_with(k, s)
                        },
                        lookups_read,
                        order_read,
                        |l| retired.lookup(l),
                    );
                    for s in &gone {
                        retired.socket(s);
                    }
                    observer.monitor.note_retired(&gone);
                    // Woken early when the command exits (a long --poll-ms must not delay the
                    // report); a spurious wake-up only means an early read.
                    std::thread::park_timeout(interval);
                }
                tracker.finish(&session.region);
                let observed = observer.finish(&tracker);
                if let (Some(p), Some(points)) =
                    (&mut pipeline, observer.monitor.take_metric_points())
                {
                    p.collect_kernel(points);
                }
                let exported = pipeline.map(|p| {
                    let health = tracker.health(&session.region);
                    p.shutdown(&tracker, health, telemetry.flush_deadline())
                });
                (tracker, retired, exported, observed)
            });
            let status = child.wait();
            stop.store(true, Ordering::Relaxed);
            handle.thread().unpark();
            let (tracker, retired, exported, observed) =
                handle.join().expect("reader thread panicked");
            (status, tracker, retired, exported, observed)
        })
    };
    let (status, tracker, retired, exported, observed) = reader;
    forwarder_handle.close();
    let _ = forwarder.join();
    let status = status.context("waiting for the command failed")?;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);

    let health = tracker.health(&session.region);
    let mut summary = summary::build(
        &tracker,
        &retired,
        health,
        RunInfo {
            command: opts.command.clone(),
            pid: child_pid.as_raw() as u32,
            exit_code,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    );
    summary.export = exported.unwrap_or_default();
    observer.complete(&mut summary, &tracker);
    if !opts.quiet && telemetry.console() {
        eprint!("{}", summary::render_text(&summary));
    }
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some((path, mut file)) = html {
        file.write_all(report::render(&summary).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    observed?;
    Ok(exit_code)
}
