//! What the kernel says about a process and the machine: CPU time (`/proc/PID/stat`),
//! resident memory (`/proc/PID/status`), system CPU ticks (`/proc/stat`).
//!
//! The parsers are pure; the readers are thin wrappers that add the path to errors.

use std::io;

/// utime + stime (fields 14 and 15, clock ticks) of a `/proc/PID/stat` line: every thread of
/// the process. The command name (field 2) may contain spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in kB from a `/proc/PID/status` text.
pub fn parse_vmrss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `MemTotal` in kB from `/proc/meminfo`.
pub fn parse_meminfo_total_kb(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (busy, total) ticks summed over all CPUs from the `cpu ` line of `/proc/stat`
/// (busy = user + nice + system + irq + softirq + steal; total adds idle + iowait).
pub fn parse_sys_ticks(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = g(0) + g(1) + g(2) + g(5) + g(6) + g(7);
    Some((busy, busy + g(3) + g(4)))
}

/// CPU ticks used so far by process `pid` (all threads).
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| io::Error::other(format!("{path}: {e}")))?;
    parse_stat_ticks(&s).ok_or_else(|| io::Error::other(format!("{path}: unparsable")))
}

/// Resident set size of process `pid`, kB.
pub fn rss_kb(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| io::Error::other(format!("{path}: {e}")))?;
    parse_vmrss_kb(&s).ok_or_else(|| io::Error::other(format!("{path}: no VmRSS")))
}

/// (busy, total) ticks of the whole machine.
pub fn sys_ticks() -> io::Result<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat")?;
    parse_sys_ticks(&s).ok_or_else(|| io::Error::other("/proc/stat: no cpu line"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, as on every Linux port).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Number of online CPUs (for "% of all cores").
pub fn n_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Percent of one core: `ticks` used over `secs` seconds.
pub fn pct_of_core(ticks: u64, hz: u64, secs: f64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "tick counts are small")]
    let used = ticks as f64 / hz as f64;
    (secs > 0.0 && hz > 0).then(|| used / secs * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_name() {
        let s =
            "4242 (shg (dp) x) S 1 4242 4242 0 -1 4194560 700 0 0 0 1234 566 0 0 20 0 5 0 9 1 2";
        assert_eq!(parse_stat_ticks(s), Some(1800));
        assert_eq!(parse_stat_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn vmrss_and_sys() {
        let st = "Name:\tshg-switch\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_kb(st), Some(4321));
        assert_eq!(parse_vmrss_kb("Name: kthreadd\n"), None);
        let ps = "cpu  10 1 5 100 4 2 3 1 0 0\ncpu0 5 0 2 50 2 1 1 0 0 0\n";
        assert_eq!(parse_sys_ticks(ps), Some((22, 126)));
        assert_eq!(pct_of_core(50, 100, 2.0), Some(25.0));
        assert_eq!(pct_of_core(5, 100, 0.0), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        cpu_ticks(me).unwrap();
        let (busy, total) = sys_ticks().unwrap();
        assert!(total >= busy);
    }
}
