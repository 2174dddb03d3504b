//! The core's only source of randomness: a ChaCha generator seeded from the node's config, so
//! that a simulator run replays exactly from its seed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A seeded, deterministic random number generator.
pub type CoreRng = ChaCha8Rng;

/// The generator for a node seeded with `seed`.
pub fn seeded(seed: u64) -> CoreRng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    #[test]
    fn same_seed_same_stream() {
        let mut a = super::seeded(9);
        let mut b = super::seeded(9);
        let xs: Vec<u64> = (0..4).map(|_| a.random()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.random()).collect();
        assert_eq!(xs, ys);
    }
}
