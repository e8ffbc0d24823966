//! What every benchmark reads of the machine and runs on: named tokio runtimes for the server
//! and client sides, the CPU time of their threads (schedstat), the load average, the kernel's
//! listen overflows, and rounding for the reports.

use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Thread name of the server runtime's workers.
pub(super) const SERVER_THREADS: &str = "bench-server";
/// Thread name of the client runtime's workers.
pub(super) const CLIENT_THREADS: &str = "bench-client";

/// A multi-thread runtime of `workers` threads named `name`.
pub(super) fn runtime(name: &str, workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sleeps the calling thread until `t` (at once if it has passed).
pub(super) fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// CPU time of the server and client runtimes' threads.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cpu {
    pub(super) server: Duration,
    pub(super) client: Duration,
}

impl Cpu {
    pub(super) fn now() -> Self {
        Cpu {
            server: thread_cpu(SERVER_THREADS),
            client: thread_cpu(CLIENT_THREADS),
        }
    }

    pub(super) fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(earlier.server),
            client: self.client.saturating_sub(earlier.client),
        }
    }

    pub(super) fn add(&mut self, other: Cpu) {
        self.server += other.server;
        self.client += other.client;
    }
}

/// CPU time used so far by this process's live threads named `name` (from
/// `/proc/self/task/*/schedstat`, nanosecond resolution; zero where unavailable). Unlike
/// wall-clock rates it does not depend on how much of the machine other work leaves us.
pub(super) fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// The kernel's count of connections dropped because an accept queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`; 0 where unavailable).
pub(super) fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The 1-minute load average (other work on the machine), 0 where unavailable.
pub(super) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `v` rounded to `digits` decimals, for the reports.
pub(super) fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}
