//! Restart delays: exponential, capped, jittered. Pure arithmetic; randomness comes in
//! as a number so the curve is testable.

use std::time::Duration;

/// Shape of the restart delay curve for one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first restart of a slot.
    pub initial: Duration,
    /// Upper bound of the delay, whatever the number of attempts.
    pub max: Duration,
    /// Each delay is this many times the previous one.
    pub factor: u32,
    /// Fraction of the delay by which it is randomly shortened or lengthened (0.1 = ±10 %),
    /// so workers that crashed together do not restart in lockstep.
    pub jitter: f64,
}

/// Why restarts start fast: most crashes are one-offs, and a worker is a slot of capacity.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Why 10 s: long enough that a crash loop costs little CPU, short enough that a fixed
/// dependency (database back up) brings the slot back quickly.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            factor: 2,
            jitter: 0.1,
        }
    }
}

/// Where one slot is on its delay curve.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next delay, given `unit`, a uniform random number in [0, 1).
    /// Saturating throughout: no number of attempts overflows.
    pub fn next(&mut self, policy: &BackoffPolicy, unit: f64) -> Duration {
        let mut base = policy.initial;
        for _ in 0..self.attempt {
            base = base.saturating_mul(policy.factor.max(1));
            if base >= policy.max {
                break;
            }
        }
        let base = base.min(policy.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = policy.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        base.mul_f64(scale)
    }

    /// Back to the start of the curve, after a worker has run stably.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A small deterministic generator (xorshift64*) for jitter: the supervisor owns one,
/// seeded by the driver, so tests can replay a run exactly.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Jitter(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}
