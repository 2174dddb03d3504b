//! Cairn's deterministic simulator. It runs the real core (`cairn_node::core`) against
//! simulated disks, networks and clients, all driven by one seed.
//!
//! - [`params`]: the run's parameters, drawn from the seed (swarm testing), and the seed's
//!   independent random streams;
//! - [`scenario`]: TOML files that fix parameters and add a timeline of faults;
//! - [`world`]: the event loop (over `queue`, its event queue), the nodes, and the online checks after every step;
//! - [`workload`]: simulated Kafka clients recording the history of design §9;
//! - [`groups`]: simulated consumers in consumer groups, through the real coordinator, and
//!   [`assignor`], the range assignor their group leader runs;
//! - `cluster`: the nodes' cluster config and formatting, node-to-node messages, wipes and
//!   clock jumps, faults naming a node by role;
//! - [`net`], [`disk`], [`faulty`]: the network and the disks, with their faults;
//! - [`faults`]: the fault actions and the random nemesis;
//! - [`invariants`]: the online invariants, one function each, and [`invariants::Violation`];
//! - [`trace`]: `run --trace`, a line per fault and replica role change;
//! - [`run`]: one seed or a sweep of seeds, the history check and coverage.
//!
//! See docs/simulator.md.

#![warn(missing_docs)]

pub mod assignor;
mod cluster;
pub mod disk;
pub mod faults;
pub mod faulty;
pub mod groups;
pub mod invariants;
pub mod net;
pub mod params;
mod queue;
pub mod replicas;
pub mod run;
pub mod scenario;
pub mod trace;
pub mod workload;
pub mod world;
