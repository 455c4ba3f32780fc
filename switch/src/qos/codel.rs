//! CoDel (RFC 8289): the sojourn-time AQM of one queue, as a pure state machine.
//!
//! The scheduler asks [`Codel::on_dequeue`] about every frame it takes from the queue's head,
//! with the frame's sojourn time, the time, and the bytes still queued behind it. While the
//! sojourn time stayed above [`TARGET`] for at least [`INTERVAL`], CoDel enters its dropping
//! state: it answers [`Verdict::Drop`] for that frame, then for one frame every
//! `INTERVAL / sqrt(count)` (the control law), until a frame's sojourn falls below the target
//! (or the queue holds at most one full frame). The caller turns a `Drop` into a CE mark for an
//! ECN-capable frame (and sends it), or drops it and asks again about the next frame, as
//! Linux's `codel_dequeue` loop does. Entering the dropping state again soon after leaving it
//! resumes near the previous drop rate (the `count - lastcount` rule of RFC 8289 § 5.6).
//!
//! Never reads a clock: `now` is the caller's monotonic time in nanoseconds.

/// Acceptable standing queue delay (5 ms).
pub const TARGET: u64 = 5_000_000;
/// How long the delay must stay above target before CoDel acts, and the base drop spacing
/// (100 ms, a worst-case RTT).
pub const INTERVAL: u64 = 100_000_000;
/// A queue holding at most this many bytes behind the head is never dropped from (one MTU
/// frame: dropping it cannot shorten the queue meaningfully).
pub const MIN_BACKLOG: usize = 1514;

/// What to do with the frame at the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Congestion signal: CE-mark it if ECN-capable (and send), else drop it.
    Drop,
}

/// CoDel state of one queue; see the module docs.
#[derive(Debug, Clone)]
pub struct Codel {
    target: u64,
    interval: u64,
    /// When the sojourn time will have been above target for a whole interval (None: it
    /// is below target now).
    first_above_time: Option<u64>,
    /// When the next drop is due in the dropping state.
    drop_next: u64,
    /// Drops (and marks) since entering the dropping state, as the control law counts them.
    count: u32,
    lastcount: u32,
    dropping: bool,
}

impl Default for Codel {
    fn default() -> Codel {
        Codel::new(TARGET, INTERVAL)
    }
}

impl Codel {
    /// CoDel with the given target and interval (nanoseconds); [`Codel::default`] uses the
    /// RFC's 5 ms / 100 ms.
    pub fn new(target: u64, interval: u64) -> Codel {
        Codel {
            target,
            interval: interval.max(1),
            first_above_time: None,
            drop_next: 0,
            count: 0,
            lastcount: 0,
            dropping: false,
        }
    }

    /// Whether CoDel is in its dropping state.
    pub fn dropping(&self) -> bool {
        self.dropping
    }

    /// The control law's drop count.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// `t + interval / sqrt(count)`.
    fn control_law(&self, t: u64, count: u32) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "interval / sqrt(count >= 1) is positive and at most interval"
        )]
        let step = (self.interval as f64 / f64::from(count.max(1)).sqrt()) as u64;
        t.saturating_add(step)
    }

    /// RFC 8289's `dodequeue` test: has the delay been above target for an interval?
    fn ok_to_drop(&mut self, sojourn: u64, now: u64, backlog_bytes: usize) -> bool {
        if sojourn < self.target || backlog_bytes <= MIN_BACKLOG {
            self.first_above_time = None;
            return false;
        }
        match self.first_above_time {
            None => {
                self.first_above_time = Some(now.saturating_add(self.interval));
                false
            }
            Some(t) => now >= t,
        }
    }

    /// The verdict for the frame just taken from the head: `sojourn` is how long it waited,
    /// `backlog_bytes` what is still queued behind it.
    pub fn on_dequeue(&mut self, sojourn: u64, now: u64, backlog_bytes: usize) -> Verdict {
        let ok = self.ok_to_drop(sojourn, now, backlog_bytes);
        if self.dropping {
            if !ok {
                self.dropping = false;
                return Verdict::Send;
            }
            if now >= self.drop_next {
                self.count = self.count.saturating_add(1);
                self.drop_next = self.control_law(self.drop_next, self.count);
                return Verdict::Drop;
            }
            return Verdict::Send;
        }
        if !ok {
            return Verdict::Send;
        }
        self.dropping = true;
        // Resume near the last drop rate if we were dropping recently.
        let delta = self.count.saturating_sub(self.lastcount);
        self.count = if delta > 1 && now.saturating_sub(self.drop_next) < 16 * self.interval {
            delta
        } else {
            1
        };
        self.lastcount = self.count;
        self.drop_next = self.control_law(now, self.count);
        Verdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds a frame every `step` with the given sojourn; returns the drop times.
    fn run(c: &mut Codel, from: u64, to: u64, step: u64, sojourn: u64) -> Vec<u64> {
        let mut drops = Vec::new();
        let mut t = from;
        while t < to {
            if c.on_dequeue(sojourn, t, 100_000) == Verdict::Drop {
                drops.push(t);
            }
            t += step;
        }
        drops
    }

    #[test]
    fn below_target_never_drops() {
        let mut c = Codel::default();
        assert!(run(&mut c, 0, 2_000 * MS, MS, 4 * MS).is_empty());
        assert!(!c.dropping());
    }

    #[test]
    fn waits_one_interval_then_spaces_drops_by_interval_over_sqrt_count() {
        let mut c = Codel::default();
        let step = 100_000; // 0.1 ms between frames
        let drops = run(&mut c, 0, 3_000 * MS, step, 20 * MS);
        assert_eq!(
            drops[0], INTERVAL,
            "first drop one interval after the delay rose"
        );
        assert!(drops.len() > 10, "{drops:?}");
        // Drop k+1 is due interval/sqrt(k) after drop k was due (the control law runs on
        // the schedule, not on when a frame happened to come).
        let mut due = drops[0];
        for (k, &t) in drops.iter().enumerate().skip(1) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let gap = (INTERVAL as f64 / (k as f64).sqrt()) as u64;
            due += gap;
            assert!(
                t >= due && t < due + step,
                "drop {}: at {t}, due {due}",
                k + 1
            );
        }
        assert_eq!(c.count() as usize, drops.len());
    }

    #[test]
    fn small_backlog_is_never_dropped() {
        let mut c = Codel::default();
        let mut t = 0;
        while t < 1_000 * MS {
            assert_eq!(c.on_dequeue(50 * MS, t, MIN_BACKLOG), Verdict::Send);
            t += MS;
        }
    }

    #[test]
    fn leaves_dropping_state_when_delay_falls_and_resumes_rate_soon_after() {
        let mut c = Codel::default();
        let drops = run(&mut c, 0, 1_000 * MS, MS, 20 * MS);
        assert!(c.dropping());
        let count = c.count();
        assert!(count >= 5, "{drops:?}");
        // Delay drops below target: leave the dropping state at once.
        assert_eq!(c.on_dequeue(MS, 1_000 * MS, 100_000), Verdict::Send);
        assert!(!c.dropping());
        // High again shortly after: after one interval above target, CoDel re-enters with
        // count = the drops of the last episode (delta > 1), not 1.
        // (lastcount was 1 at the first entry, so count - lastcount = count - 1.)
        let again = run(&mut c, 1_001 * MS, 1_102 * MS, MS, 20 * MS);
        assert_eq!(again, vec![1_101 * MS]);
        assert_eq!(c.count(), count - 1);
        // Long after: starts from 1.
        let mut c2 = Codel::default();
        run(&mut c2, 0, 1_000 * MS, MS, 20 * MS);
        c2.on_dequeue(MS, 1_000 * MS, 100_000);
        run(&mut c2, 10_000 * MS, 10_101 * MS, MS, 20 * MS);
        assert_eq!(c2.count(), 1);
    }
}
