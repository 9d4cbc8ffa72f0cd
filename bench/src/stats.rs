//! Latency percentiles and CPU time, read without `unsafe` (from `/proc`).

use std::time::Duration;

/// What one measured run produced.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Requests completed.
    pub requests: usize,
    /// Wall time from the first request issued to the last reply.
    pub elapsed: Duration,
    /// Per-request latency (call to reply), sorted ascending.
    pub latencies: Vec<Duration>,
    /// CPU time this process used during the run (all threads: client, runtime, reactor).
    pub client_cpu: Option<Duration>,
    /// CPU time the server JVM used during the run, when we know its pid.
    pub server_cpu: Option<Duration>,
}

impl RunStats {
    /// Completed requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`-quantile latency (`q` in 0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    /// Client CPU per request, in microseconds.
    pub fn client_cpu_us_per_op(&self) -> Option<f64> {
        self.client_cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.requests as f64)
    }

    /// Server CPU per request, in microseconds.
    pub fn server_cpu_us_per_op(&self) -> Option<f64> {
        self.server_cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// The run with the median throughput (the lower middle one for an even count).
pub fn median_run(runs: &[RunStats]) -> &RunStats {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|&a, &b| runs[a].ops_per_sec().total_cmp(&runs[b].ops_per_sec()));
    &runs[idx[(idx.len() - 1) / 2]]
}

/// utime + stime of a process (all its threads, live and exited) from `/proc/PID/stat`.
/// Resolution is one clock tick (10 ms with the usual USER_HZ of 100).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of the man page are at 11 and 12 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    const USER_HZ: u64 = 100;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / USER_HZ))
}
