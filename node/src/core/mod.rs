//! The sans-IO core of a Cairn node.
//!
//! The core never blocks, never reads a clock, never touches a socket or a file, and draws
//! randomness only from a generator seeded from its config ([`rng`]). Everything it wants done
//! is an output; everything that happened is an input. Two drivers run it: the tokio runtime
//! (`crate::runtime`) in production and the deterministic simulator (`cairn-sim`).
//!
//! ```text
//!             +------------------ driver (tokio runtime | simulator) ------------------+
//!  inputs     |  handle_request(now, conn, req)     handle_message(now, from, msg)     |
//!  ---------> |  handle_disk(now, op_id, result)    handle_timeout(now)                |
//!             |                                                                        |
//!  outputs    |  poll_output() -> Option<Output>    poll_timeout() -> Option<Instant>  |
//!  <--------- |    Output::Reply{conn, resp} | Send{to, msg} | Disk{op_id, op}        |
//!             +------------------------------------------------------------------------+
//! ```
//!
//! A driver calls, in a loop:
//!
//! 1. one `handle_*` with the input that happened (a request arrived, a message from a peer,
//!    a disk op completed, or the deadline of `poll_timeout` passed), with `now` never earlier
//!    than any `now` handed in before;
//! 2. `poll_output` until it returns `None`, carrying out each output (send the reply or the
//!    message, submit the disk op under its [`io::OpId`]);
//! 3. `poll_timeout`, to learn when to call `handle_timeout` next.
//!
//! Components keep the same shape one level down: a [`log::PartitionLog`] takes inputs,
//! queues its disk ops and reports what completed as events.
//!
//! Modules: [`io`] (the input and output types and the disk-op contract), [`time`] (the
//! [`time::Instant`] newtype), [`timer`] (the timer table), [`rng`], [`frame`] (the frame of
//! Cairn's own files), [`log`] (the partition log on disk), [`node`] (one node: routes inputs
//! to its components and owns its timers), [`limits`] (every bound in one place).

pub mod controller;
pub mod coordinator;
pub mod frame;
pub mod group;
pub mod io;
pub mod limits;
pub mod log;
pub mod node;
pub mod producer;
pub mod raft;
pub mod replica;
pub mod rng;
pub mod time;
pub mod timer;
pub mod topic;
