//! Facts about the machine and its processes, read from `/proc` (Linux).

use std::process::{Command, Stdio};
use std::time::Instant;

/// The CPU model (first `model name` of `/proc/cpuinfo`).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Number of processors of the machine (not only those this process may use).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| text.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// While held, idle CPUs poll instead of halting: a latency request of 0 µs through
/// `/dev/cpu_dma_latency` (what cyclictest and tuned's latency-performance profile do).
/// In a VM a halted vCPU must be woken by an inter-processor interrupt, a VM exit charged
/// to the CPU that wakes it; a polling one sees the wake-up without. The request ends
/// when this is dropped.
pub struct PollingIdle {
    _request: std::fs::File,
}

impl PollingIdle {
    /// Asks for polling idle CPUs; the error says why not (e.g. not root).
    pub fn request() -> Result<PollingIdle, String> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")
            .map_err(|e| format!("/dev/cpu_dma_latency: {e}"))?;
        f.write_all(&0i32.to_ne_bytes())
            .map_err(|e| format!("/dev/cpu_dma_latency: {e}"))?;
        Ok(PollingIdle { _request: f })
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| parse_cpu_list(v.trim()))
        })
        .unwrap_or_default()
}

/// Parses a CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => {
                if let Ok(n) = part.parse() {
                    cpus.push(n);
                }
            }
        }
    }
    cpus
}

/// Whether the `taskset` command (util-linux) works here.
pub fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` value of `/proc/<pid>/status` (`VmHWM`, `VmRSS`, ...).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The command name of a process, if it is visible.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// User, nice and system time of all CPUs (first line of `/proc/stat`), in clock ticks:
/// what every process used, without interrupts, soft interrupts and steal.
pub fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.len() == 3).then(|| f.iter().sum())
}

/// CPU use of some processes over an interval, in percent of one core.
pub struct CpuMeter {
    ticks_per_sec: u64,
    started: Instant,
    start: Vec<Option<u64>>,
    pids: Vec<Option<u32>>,
    machine: Option<u64>,
}

/// What a [`CpuMeter`] measured, in percent of one core.
pub struct CpuUse {
    /// Each measured process, in the order given.
    pub processes: Vec<Option<f64>>,
    /// Every other process of the machine.
    pub others: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring; a `None` pid is reported as `None`.
    pub fn start(ticks_per_sec: u64, pids: &[Option<u32>]) -> CpuMeter {
        CpuMeter {
            ticks_per_sec,
            started: Instant::now(),
            start: pids.iter().map(|p| p.and_then(cpu_ticks)).collect(),
            pids: pids.to_vec(),
            machine: machine_busy_ticks(),
        }
    }

    /// Percent of one core used by each process, and by the others, since the start.
    pub fn finish(&self) -> CpuUse {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let percent = |ticks: u64| 100.0 * ticks as f64 / self.ticks_per_sec as f64 / secs;
        let processes: Vec<Option<f64>> = self
            .pids
            .iter()
            .zip(&self.start)
            .map(|(pid, start)| {
                let end = pid.and_then(cpu_ticks)?;
                Some(percent(end.saturating_sub((*start)?)))
            })
            .collect();
        let others = machine_busy_ticks()
            .zip(self.machine)
            .map(|(end, start)| percent(end.saturating_sub(start)))
            .map(|all| (all - processes.iter().flatten().sum::<f64>()).max(0.0));
        CpuUse { processes, others }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6,8-9"), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("5"), vec![5]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn own_process_is_visible() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(status_kb(pid, "VmRSS").is_some_and(|kb| kb > 0));
    }
}
