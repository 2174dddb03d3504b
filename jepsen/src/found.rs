//! The anomalies found so far, counted by kind and kept up to a bound per kind.

use std::collections::BTreeMap;

use crate::report::{Anomaly, AnomalyKind};

/// Collects anomalies. Counts every one; keeps the first `kept_per_kind_max` of each kind
/// in discovery order, which is history order for the streaming checks and sorted order for
/// the final scans, so the same history always gives the same report.
pub(crate) struct Found {
    kept: BTreeMap<AnomalyKind, Vec<Anomaly>>,
    counts: BTreeMap<AnomalyKind, u64>,
    kept_per_kind_max: usize,
}

impl Found {
    pub(crate) fn new(kept_per_kind_max: usize) -> Self {
        Found { kept: BTreeMap::new(), counts: BTreeMap::new(), kept_per_kind_max }
    }

    pub(crate) fn push(&mut self, anomaly: Anomaly) {
        let kind = anomaly.kind();
        *self.counts.entry(kind).or_default() += 1;
        let kept = self.kept.entry(kind).or_default();
        if kept.len() < self.kept_per_kind_max {
            kept.push(anomaly);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The kept anomalies sorted by the first line of their proof, and the counts.
    pub(crate) fn into_parts(
        mut self,
    ) -> (BTreeMap<AnomalyKind, Vec<Anomaly>>, BTreeMap<AnomalyKind, u64>) {
        for list in self.kept.values_mut() {
            list.sort_by_key(Anomaly::first_index);
        }
        (self.kept, self.counts)
    }
}
