//! Replica placement for new partitions: spread over the live brokers, each partition's
//! replicas on distinct brokers, preferred leaders (first replicas) spread too.
//!
//! Placement is greedy over the load already in the image: each new partition's leader is
//! the live broker leading the fewest partitions, then holding the fewest replicas; each
//! follower is the live broker holding the fewest replicas, counting one more for a broker
//! that is due to lead a later partition. Ties go round robin from a
//! start the controller draws from its seeded generator, moving by one per partition, so
//! that equal brokers take turns and two topics do not start on the same broker.

use super::image::MetadataImage;

/// The load on the candidate brokers, index-aligned with them.
struct Load {
    leaders: Vec<usize>,
    replicas: Vec<usize>,
}

impl Load {
    /// The preferred leaderships (first replicas) and replicas `brokers` hold in `image`.
    fn of(image: &MetadataImage, brokers: &[i32]) -> Load {
        let mut load = Load { leaders: vec![0; brokers.len()], replicas: vec![0; brokers.len()] };
        let position = |id: i32| brokers.iter().position(|b| *b == id);
        for topic in image.topics() {
            for state in &topic.partitions {
                for (rank, replica) in state.replicas.iter().enumerate() {
                    let Some(at) = position(*replica) else { continue };
                    load.replicas[at] += 1;
                    if rank == 0 {
                        load.leaders[at] += 1;
                    }
                }
            }
        }
        load
    }
}

/// Replica lists for `count` new partitions of `replication_factor` replicas each, over
/// `brokers` (the live brokers, sorted), starting the round robin at `start`.
///
/// # Panics
/// If `replication_factor` is 0 or more than `brokers.len()`: the caller checks.
pub fn place(
    image: &MetadataImage,
    brokers: &[i32],
    count: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    assert!(replication_factor >= 1, "a partition has a replica");
    assert!(replication_factor <= brokers.len(), "one replica per broker at most");
    let width = brokers.len();
    let mut load = Load::of(image, brokers);
    let mut placed = Vec::with_capacity(count);
    for partition in 0..count {
        // Ranks rotate by one per partition, so that ties go round robin.
        let first = (start + partition) % width;
        let rank = |at: usize| (at + width - first) % width;
        let leader = (0..width)
            .min_by_key(|&at| (load.leaders[at], load.replicas[at], rank(at)))
            .expect("there are brokers");
        load.leaders[leader] += 1;
        load.replicas[leader] += 1;
        // A broker leading fewer partitions than the most will lead one of the next ones and
        // take a replica then: count it as owed, or the last leaders of a round end up
        // holding one replica more than the rest.
        let leaders_max = *load.leaders.iter().max().expect("there are brokers");
        let mut chosen = vec![leader];
        for _ in 1..replication_factor {
            let owed = |at: usize| usize::from(load.leaders[at] < leaders_max);
            // Followers in ring order after the leader, among the least loaded.
            let after_leader = |at: usize| (at + width - leader - 1) % width;
            let follower = (0..width)
                .filter(|at| !chosen.contains(at))
                .min_by_key(|&at| {
                    (load.replicas[at] + owed(at), load.replicas[at], after_leader(at))
                })
                .expect("replication factor <= brokers");
            load.replicas[follower] += 1;
            chosen.push(follower);
        }
        placed.push(chosen.into_iter().map(|at| brokers[at]).collect());
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(counts: &[usize]) -> usize {
        counts.iter().max().unwrap() - counts.iter().min().unwrap()
    }

    #[test]
    fn placement_spreads_replicas_and_leaders_table() {
        let image = MetadataImage::default();
        for brokers in 1..=7usize {
            let ids: Vec<i32> = (0..brokers).map(|b| i32::try_from(b * 10 + 1).unwrap()).collect();
            for replication_factor in 1..=brokers.min(4) {
                for count in (1..=2 * brokers + 1).chain([12, 50]) {
                    for start in 0..brokers {
                        let placed = place(&image, &ids, count, replication_factor, start);
                        let case = format!("{brokers} brokers rf {replication_factor} x{count}");
                        assert_eq!(placed.len(), count, "{case}");
                        let mut leaders = vec![0; brokers];
                        let mut replicas = vec![0; brokers];
                        for list in &placed {
                            assert_eq!(list.len(), replication_factor, "{case}");
                            for (i, id) in list.iter().enumerate() {
                                assert!(!list[..i].contains(id), "{case}: {list:?} repeats");
                                replicas[ids.iter().position(|b| b == id).unwrap()] += 1;
                            }
                            leaders[ids.iter().position(|b| *b == list[0]).unwrap()] += 1;
                        }
                        assert!(spread(&leaders) <= 1, "{case}: leaders {leaders:?}");
                        assert!(spread(&replicas) <= 1, "{case}: replicas {replicas:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_start_decides_the_first_leader() {
        let image = MetadataImage::default();
        assert_eq!(place(&image, &[1, 2, 3], 1, 2, 0), vec![vec![1, 2]]);
        assert_eq!(place(&image, &[1, 2, 3], 1, 2, 2), vec![vec![3, 1]]);
        assert_eq!(place(&image, &[1, 2, 3], 3, 1, 1), vec![vec![2], vec![3], vec![1]]);
    }
}
