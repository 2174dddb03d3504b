//! Which partition a record goes to: the Java client's murmur2 partitioner for keyed
//! records (so a key lands on the same partition whichever client wrote it), and KIP-480's
//! sticky choice for records without a key.

/// Kafka's murmur2 hash of `data` (the Java client's `Utils.murmur2`: MurmurHash2, 32 bits,
/// seed 0x9747b28c, little-endian words).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes(word.try_into().expect("four bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (index, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partitions`, as the Java client's default
/// partitioner picks it: the positive part of murmur2 of the key, modulo the count.
///
/// # Panics
/// If `partitions` is not positive.
///
/// ```
/// use cairn_client::partition_for_key;
/// let partition = partition_for_key(b"user-42", 12);
/// assert!((0..12).contains(&partition));
/// assert_eq!(partition, partition_for_key(b"user-42", 12));
/// ```
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// A small xorshift generator for the sticky partitioner's choices; it needs spread, not
/// unpredictability.
#[derive(Debug, Clone)]
pub(crate) struct Xorshift(u64);

impl Xorshift {
    pub(crate) fn seeded() -> Xorshift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Xorshift(nanos | 1)
    }

    /// A number in `0..bound`.
    pub(crate) fn below(&mut self, bound: i32) -> i32 {
        assert!(bound > 0);
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Java client's own test vectors (`UtilsTest.testMurmur2` in Apache Kafka), each
    /// also the value librdkafka's `murmur2` partitioner is tested against.
    #[test]
    fn murmur2_matches_the_java_client() {
        let vectors: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in vectors {
            assert_eq!(murmur2(data), expected, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for partitions in 1..20 {
            for key in [&b""[..], b"a", b"key-1", b"\xff\xfe\xfd"] {
                let partition = partition_for_key(key, partitions);
                assert!((0..partitions).contains(&partition));
                assert_eq!(partition, partition_for_key(key, partitions));
            }
        }
    }

    #[test]
    fn xorshift_stays_below_its_bound_and_moves() {
        let mut rng = Xorshift(12345);
        let draws: Vec<i32> = (0..100).map(|_| rng.below(7)).collect();
        assert!(draws.iter().all(|&d| (0..7).contains(&d)));
        assert!(draws.iter().any(|&d| d != draws[0]));
    }
}
