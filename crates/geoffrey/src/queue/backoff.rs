//! Retry delays: exponential backoff with jitter.
//!
//! The delay before attempt `n + 1` is drawn uniformly from `[d/2, d]`, where
//! `d = min(base * 2^(n-1), max)`. The fixed half bounds how early a retry can come. The
//! random half spreads out jobs that failed together, so that a third party recovering from
//! an outage is not hit by all of them in the same second.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Returns the upper bound of the delay after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << exponent).min(self.max)
    }

    /// Returns a random delay after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rng.random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn ceiling_doubles_until_max() {
        assert_eq!(BACKOFF.ceiling(1), Duration::from_secs(10));
        assert_eq!(BACKOFF.ceiling(2), Duration::from_secs(20));
        assert_eq!(BACKOFF.ceiling(5), Duration::from_secs(160));
        assert_eq!(BACKOFF.ceiling(10), Duration::from_secs(3600));
        assert_eq!(BACKOFF.ceiling(100), Duration::from_secs(3600));
    }

    #[test]
    fn delay_stays_within_half_and_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..12 {
            let ceiling = BACKOFF.ceiling(attempt);
            for _ in 0..200 {
                let delay = BACKOFF.delay(attempt, &mut rng);
                assert!(
                    delay >= ceiling / 2,
                    "attempt {attempt}: {delay:?} below half"
                );
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} above {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn delays_are_spread() {
        let mut rng = StdRng::seed_from_u64(11);
        let delays: std::collections::HashSet<_> =
            (0..50).map(|_| BACKOFF.delay(4, &mut rng)).collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }
}
