//! A fast, fixed hasher for the checker's maps. Their keys are small integers (values,
//! offsets, processes, partition numbers) and short topic names; SipHash's defence against
//! chosen keys cost about a sixth of the history check of a simulator run
//! (docs/simulator.md, Speed), and a fixed hasher also makes iteration orders the same from
//! one run to the next. The mixing step is that of rustc's `FxHasher` (rustc-hash 2).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hashed with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiplies each word in; `finish` rotates the high bits, where the product's entropy
/// is, down to where the table's bucket index is taken.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::FastMap;

    /// Sequential keys, as values and offsets are, spread over the table: lookups find each.
    #[test]
    fn sequential_keys_and_names_are_found() {
        let mut map: FastMap<i64, i64> = FastMap::default();
        for key in -1_000..100_000i64 {
            map.insert(key, key * 2);
        }
        assert_eq!(map.len(), 101_000);
        assert!((-1_000..100_000i64).all(|key| map[&key] == key * 2));
        let mut names: FastMap<String, u32> = FastMap::default();
        for (i, name) in ["orders", "clicks", "metrics", "orders-1", ""].iter().enumerate() {
            names.insert(name.to_string(), i as u32);
        }
        assert_eq!(names["metrics"], 2);
        assert_eq!(names[""], 4);
        assert!(!names.contains_key("order"));
    }
}
