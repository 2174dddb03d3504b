//! Cairn's history checker: the history format of design §9, the Kafka checks after Elle's
//! Kafka checker, a linearizability checker for committed offsets, and an HTML report.
//!
//! ```text
//!  JSON Lines --HistoryReader--+
//!                              +--> Checker::handle_op, one op at a time
//!  History (in memory) --------+      |  kafka:  version order, streaming checks
//!                                     |  linear: register ops per (group, topic, partition)
//!                                     v
//!                                  Checker::finish --> Report --> JSON (cairn-check)
//!                                                           \--> html::write_report
//! ```
//!
//! The entry points:
//!
//! - [`check_history`] checks a JSON Lines history from any reader, streaming;
//! - [`check_ops`] checks operations held in memory (a [`History`], or a slice of [`Op`]);
//! - [`Checker`] is the incremental form: `handle_op` for each operation, then `finish`;
//! - [`History`] records operations in memory and numbers them; [`HistoryWriter`] and
//!   [`HistoryReader`] write and read JSON Lines;
//! - [`html::write_report`] draws the timeline of the operations around each anomaly;
//! - `harness` (feature `harness`, on by default) is `cairn-jepsen test`: real `cairn`
//!   processes, fault-injecting proxies, a recorded workload (docs/jepsen.md).
//!
//! ```
//! use cairn_jepsen::{check_ops, F, History, OpType, Options, Poll, Record, Send, Value};
//!
//! let mut history = History::new();
//! history.invoke(0, 1, F::Send, Value::Send(Send::new("t", 0, 17)));
//! history.complete(1, 1, OpType::Ok, F::Send, Value::Send(Send::new("t", 0, 17).at(42)));
//! history.invoke(2, 2, F::Poll, Value::Null);
//! let records = vec![Record::new("t", 0, 42, 17)];
//! history.complete(3, 2, OpType::Ok, F::Poll, Value::Poll(Poll { is_final: false, records }));
//! let report = check_ops(history.ops(), &Options::default()).unwrap();
//! assert_eq!(report.exit_code(), 0);
//! ```

#![warn(missing_docs)]

mod checker;
pub mod codec;
mod fast_hash;
mod found;
#[cfg(feature = "harness")]
pub mod harness;
pub mod history;
pub mod html;
mod kafka;
pub mod limits;
mod linear;
pub mod report;
pub mod synth;

pub use checker::{CheckError, Checker, OpError, Options, check_history, check_ops};
pub use codec::{HistoryReader, HistoryWriter, ReadError};
pub use history::{
    Acks, F, GroupOffset, History, Op, OpType, Poll, Process, Record, Send, TopicPartition, Value,
};
pub use report::{Anomaly, AnomalyKind, OpRef, Report, Stats, Validity};

impl History {
    /// Checks this history; see [`check_ops`].
    pub fn check(&self, options: &Options) -> Result<Report, CheckError> {
        check_ops(self.ops(), options)
    }
}
