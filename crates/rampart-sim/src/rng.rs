//! Deterministic randomness: every random choice of the simulator (fleet composition, faults,
//! jitter) is a pure function of the seed, the device and what is being decided, so a run with
//! the same seed makes the same choices whatever order the workers happen to serve devices in.

/// SplitMix64's finalizer: a bijective mix of 64 bits, good enough to derive independent
/// streams from (seed, device, purpose).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a), for keying decisions by release target.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The stream for `(seed, device, purpose)`; `salt` separates further (e.g. a target).
    pub(crate) fn new(seed: u64, device: usize, purpose: &str, salt: u64) -> Rng {
        Rng(mix(
            seed ^ mix(device as u64 ^ mix(hash_str(purpose) ^ mix(salt)))
        ))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for simulation choices.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 3, "x", 0).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::new(7, 3, "x", 0).next_u64(),
            Rng::new(7, 4, "x", 0).next_u64()
        );
        assert_ne!(
            Rng::new(7, 3, "x", 0).next_u64(),
            Rng::new(7, 3, "y", 0).next_u64()
        );
        assert_ne!(
            Rng::new(7, 3, "x", 0).next_u64(),
            Rng::new(8, 3, "x", 0).next_u64()
        );
        let mut r = Rng::new(1, 1, "unit", 0);
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert!(!r.chance(0.0));
    }
}
