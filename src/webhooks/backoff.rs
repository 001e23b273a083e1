//! Delay between delivery attempts.

use std::time::Duration;

use rand::Rng;

/// The smallest delay returned (also used when `base` is zero).
const FLOOR: Duration = Duration::from_millis(1);

/// Delay before retrying after failed attempt number `attempt` (1-based): exponential
/// `base * 2^(attempt-1)` capped at `max`, with "equal jitter" (a uniform value between half the
/// capped delay and the capped delay). Never zero (unless `max` is zero), never above `max`, no
/// overflow for large `attempt`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let base = base.max(FLOOR);
    let mut cap = base.min(max);
    // At most ~100 doublings before reaching any `max` (Duration is < 2^94 ns).
    for _ in 1..attempt {
        if cap >= max {
            break;
        }
        cap = cap.saturating_mul(2).min(max);
    }
    let half = cap / 2;
    let jitter = half.mul_f64(rand::rng().random::<f64>());
    (cap - half + jitter).max(FLOOR).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for attempt in [0, 1, 2, 3, 5, 8, 9, 10, 20, 63, 64, 65, 1000, u32::MAX] {
            for _ in 0..50 {
                let d = backoff(attempt, base, max);
                assert!(d > Duration::ZERO, "attempt {attempt}: {d:?}");
                assert!(d <= max, "attempt {attempt}: {d:?}");
                let cap = if attempt >= 10 {
                    max
                } else {
                    (base * 2u32.pow(attempt.saturating_sub(1))).min(max)
                };
                assert!(
                    d >= cap / 2 && d <= cap,
                    "attempt {attempt}: {d:?} vs cap {cap:?}"
                );
            }
        }
    }

    #[test]
    fn grows_then_caps() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        assert!(backoff(1, base, max) <= Duration::from_millis(500));
        assert!(backoff(4, base, max) >= Duration::from_secs(2));
        assert!(backoff(100, base, max) >= Duration::from_secs(30));
    }

    #[test]
    fn degenerate_inputs() {
        assert!(backoff(1, Duration::ZERO, Duration::from_secs(1)) > Duration::ZERO);
        assert!(backoff(u32::MAX, Duration::ZERO, Duration::from_secs(1)) > Duration::ZERO);
        assert_eq!(
            backoff(3, Duration::from_secs(1), Duration::ZERO),
            Duration::ZERO
        );
        let huge = backoff(u32::MAX, Duration::MAX, Duration::MAX);
        assert!(huge >= Duration::MAX / 2);
        assert!(
            backoff(2, Duration::from_secs(10), Duration::from_secs(3)) <= Duration::from_secs(3)
        );
    }
}
