//! The partition log's conformance suite over the simulated disk without faults.

use cairn_node::core::log::harness::conformance;
use cairn_sim::disk::{SimDisk, SimDiskFaults};

#[test]
fn conformance_over_the_simulated_disk() {
    let mut seed = 0;
    conformance::run_all(|| {
        seed += 1;
        SimDisk::new(seed, SimDiskFaults::default())
    });
}
