//! Cairn's deterministic simulator. It runs the real core (`cairn_node::core`) against
//! simulated disks, networks and clients, all driven by one seed.

#![warn(missing_docs)]

pub mod disk;
