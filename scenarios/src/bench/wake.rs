//! The machine's thread wake-up round trip: two threads, each asleep in a blocking read, pass one
//! byte there and back over a socket pair, once every [`GAP`] (long enough for an idle CPU to go
//! into its idle state), on one CPU and on two.
//!
//! A userspace switch puts at least one such wake-up on the path of every frame that arrives
//! while it sleeps, and the sender's own reply wait becomes a second; the Linux bridge forwards
//! inside the sender's system call. So this is the floor under the idle-RTT difference between
//! any userspace forwarder and the bridge on this machine, measured in the same run.

#![allow(unsafe_code)]

use crate::stats::median_of;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Time between two round trips.
pub const GAP: Duration = Duration::from_millis(50);

/// Median round trips, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WakeProbe {
    /// Both threads pinned to CPU 0.
    pub same_cpu_us: Option<f64>,
    /// The threads pinned to CPUs 0 and 1 (None on a one-CPU machine).
    pub cross_cpu_us: Option<f64>,
    /// Round trips per median.
    pub samples: usize,
}

/// Measures both placements, `samples` round trips each. Errors (no CPU 1, affinity refused)
/// leave the value `None`.
pub fn measure(samples: usize) -> WakeProbe {
    let med = |a, b| {
        round_trips(a, b, samples)
            .ok()
            .and_then(|v| median_of(v.into_iter().map(Some)))
    };
    WakeProbe {
        same_cpu_us: med(0, 0),
        cross_cpu_us: if crate::procfs::n_cpus() > 1 {
            med(0, 1)
        } else {
            None
        },
        samples,
    }
}

/// `samples` round trips, µs, between a thread on `cpu_a` and one on `cpu_b`.
fn round_trips(cpu_a: usize, cpu_b: usize, samples: usize) -> io::Result<Vec<f64>> {
    let (mut a, mut b) = UnixStream::pair()?;
    let echo =
        std::thread::Builder::new()
            .name("wake-echo".into())
            .spawn(move || -> io::Result<()> {
                pin_to_cpu(cpu_b)?;
                let mut byte = [0u8; 1];
                // Until the other end closes (read returns 0 bytes).
                while b.read(&mut byte)? == 1 {
                    b.write_all(&byte)?;
                }
                Ok(())
            })?;
    // The measuring thread is a fresh one too, so the caller's affinity is never changed. It
    // owns `a`: when it ends, the echo thread reads end-of-stream and ends.
    let measuring = std::thread::Builder::new()
        .name("wake-probe".into())
        .spawn(move || -> io::Result<Vec<f64>> {
            pin_to_cpu(cpu_a)?;
            let mut out = Vec::with_capacity(samples);
            let mut byte = [7u8; 1];
            for _ in 0..samples {
                std::thread::sleep(GAP);
                let t0 = Instant::now();
                a.write_all(&byte)?;
                a.read_exact(&mut byte)?;
                out.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            Ok(out)
        })?;
    let measured = measuring
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("wake probe thread panicked")));
    let echoed = echo
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("echo thread panicked")));
    let out = measured?;
    echoed?;
    Ok(out)
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::other(format!("CPU {cpu} out of range")));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked above), so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_measured_on_one_cpu() {
        let v = round_trips(0, 0, 3).expect("CPU 0 exists");
        assert_eq!(v.len(), 3);
        // A wake-up round trip takes some time and far less than a second.
        assert!(v.iter().all(|&us| us > 0.0 && us < 1e6), "{v:?}");
    }

    #[test]
    fn a_cpu_that_does_not_exist_is_an_error() {
        assert!(round_trips(0, libc::CPU_SETSIZE as usize, 1).is_err());
    }
}
