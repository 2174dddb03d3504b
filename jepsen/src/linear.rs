//! Linearizability of committed offsets: one register per (group, topic, partition), written
//! by `commit` and read by `committed`.
//!
//! The search is Wing & Gong's (J. Parallel Distrib. Comput. 1993) with Porcupine's
//! optimisations (A. Athalye, github.com/anishathalye/porcupine, after Lowe, "Testing for
//! linearizability", 2017):
//!
//! - P-compositionality: linearizability is local (Herlihy & Wing 1990, theorem 1), so each
//!   key is searched on its own. A commit of several partitions is split into one write per
//!   key; atomicity across keys is not checked.
//! - The history is a doubly linked list of call and return entries. Linearizing an
//!   operation lifts its two entries out of the list; backtracking puts them back in O(1)
//!   (dancing links).
//! - Memoisation: a (set of linearized operations, register state) pair already explored
//!   is never explored again. The set keeps a Zobrist hash up to date as it changes, and is
//!   stored in the memo in a compact form (see [`Linearized`]) rather than as Porcupine's
//!   bitset over the whole history.
//! - A budget of wall-clock time and of search steps: when either runs out the answer is
//!   "unknown", never a hang.
//!
//! A commit that ended `info` may or may not have taken effect, so its return is placed at
//! the end of the history, as Porcupine and Knossos do; a read that ended `info` or `fail`
//! constrains nothing and is dropped, as is a failed commit. Two further rules keep the
//! search small: an `info` commit of an offset that no read of that key ever returned is
//! dropped, because placing it anywhere only hides values from later reads ([`reduce`]);
//! and the `info` commits left are tried only right before a read of their offset, which
//! loses no linearization ([`search`] has the argument).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use crate::found::Found;
use crate::history::GroupOffset;
use crate::limits::{LINEARIZED_STEPS_SHOWN_MAX, SEARCH_STEPS_PER_CLOCK_READ};
use crate::report::{Anomaly, NotLinearizable, OpRef, RegisterStep};

/// The committed offset when nothing was ever committed.
const OFFSET_NONE: i64 = -1;

/// A return that never came: the operation stays open to the end of the history.
const RETURN_NEVER: u64 = u64::MAX;

/// Group, topic and partition.
type RegisterKey = (String, String, i32);

#[derive(Clone, Copy, Debug)]
struct RegisterOp {
    /// Index of the invocation line.
    call: u64,
    /// Index of the completion line, or [`RETURN_NEVER`].
    ret: u64,
    write: bool,
    /// The offset written or read; [`OFFSET_NONE`] for a read of nothing.
    offset: i64,
    op: OpRef,
}

/// The register operations of a history, by key.
#[derive(Default)]
pub(crate) struct Registers {
    key_ids: HashMap<RegisterKey, usize>,
    keys: Vec<RegisterKey>,
    ops: Vec<Vec<RegisterOp>>,
}

/// How much search is left, shared by every key.
pub(crate) struct Budget {
    deadline: Option<Instant>,
    steps_left: Option<u64>,
    steps: u64,
}

impl Budget {
    pub(crate) fn new(deadline: Option<Instant>, steps_max: Option<u64>) -> Self {
        Budget { deadline, steps_left: steps_max, steps: 0 }
    }

    /// Spends one step; false once the budget is gone.
    fn spend(&mut self) -> bool {
        self.steps += 1;
        if let Some(left) = self.steps_left.as_mut() {
            if *left == 0 {
                return false;
            }
            *left -= 1;
        }
        if self.steps.is_multiple_of(SEARCH_STEPS_PER_CLOCK_READ)
            && let Some(deadline) = self.deadline
        {
            return Instant::now() < deadline;
        }
        true
    }
}

impl Registers {
    fn key_id(&mut self, entry: &GroupOffset) -> usize {
        let key = (entry.group.clone(), entry.topic.clone(), entry.partition);
        match self.key_ids.entry(key) {
            Entry::Occupied(id) => *id.get(),
            Entry::Vacant(vacant) => {
                let id = self.keys.len();
                self.keys.push(vacant.key().clone());
                self.ops.push(Vec::new());
                *vacant.insert(id)
            }
        }
    }

    /// A commit completed `ok` (`ret` is its line) or `info` (`ret` is `None`).
    ///
    /// # Panics
    /// If an entry has no offset; the checker refuses such a commit at its invocation.
    pub(crate) fn handle_commit(
        &mut self,
        entries: &[GroupOffset],
        op: OpRef,
        call: u64,
        ret: Option<u64>,
    ) {
        for entry in entries {
            let offset = entry.offset.expect("commit entries carry offsets");
            let key = self.key_id(entry);
            let ret = ret.unwrap_or(RETURN_NEVER);
            self.ops[key].push(RegisterOp { call, ret, write: true, offset, op });
        }
    }

    /// A `committed` read completed `ok` with `entries`.
    pub(crate) fn handle_committed(
        &mut self,
        entries: &[GroupOffset],
        op: OpRef,
        call: u64,
        ret: u64,
    ) {
        assert!(call < ret, "a read returns after it is invoked");
        for entry in entries {
            let offset = entry.offset.filter(|&o| o >= 0).unwrap_or(OFFSET_NONE);
            let key = self.key_id(entry);
            self.ops[key].push(RegisterOp { call, ret, write: false, offset, op });
        }
    }

    /// Operations recorded, one per key touched.
    pub(crate) fn op_count(&self) -> u64 {
        self.ops.iter().map(|ops| ops.len() as u64).sum()
    }

    /// Keys recorded.
    pub(crate) fn key_count(&self) -> u64 {
        self.keys.len() as u64
    }

    /// Searches every key. Returns why the verdict is unknown for the keys whose search ran
    /// out of budget.
    pub(crate) fn finish(&mut self, budget: &mut Budget, found: &mut Found) -> Vec<String> {
        let mut unknown = Vec::new();
        for (key, ops) in self.keys.iter().zip(&self.ops) {
            let ops = reduce(ops);
            match search(&ops, budget) {
                Outcome::Linearizable => {}
                Outcome::Unknown => unknown.push(format!(
                    "linearizability of group {:?} {}/{} ({} operations): out of time or \
                     search steps",
                    key.0,
                    key.1,
                    key.2,
                    ops.len()
                )),
                Outcome::NotLinearizable(witness) => {
                    found.push(Anomaly::NotLinearizable(witness.into_anomaly(key, &ops)));
                }
            }
        }
        unknown
    }
}

/// Drops the `info` commits no read could have observed (see the module doc), and orders
/// what is left as [`Linearized`] needs it: operations that return, by call, then the
/// operations that never return.
fn reduce(ops: &[RegisterOp]) -> Vec<RegisterOp> {
    let mut offsets_read: Vec<i64> = ops.iter().filter(|o| !o.write).map(|o| o.offset).collect();
    offsets_read.sort_unstable();
    offsets_read.dedup();
    let observable = |o: &&RegisterOp| offsets_read.binary_search(&o.offset).is_ok();
    let mut reduced: Vec<RegisterOp> = ops
        .iter()
        .filter(|o| !o.write || o.ret != RETURN_NEVER || observable(o))
        .copied()
        .collect();
    reduced.sort_by_key(|o| (o.ret == RETURN_NEVER, o.call));
    reduced
}

enum Outcome {
    Linearizable,
    NotLinearizable(Witness),
    Unknown,
}

/// Where the search got furthest: the last operations it linearized (in order) and the
/// one it could not place after them.
struct Witness {
    /// Operations that return linearized: how far the search got.
    depth: usize,
    /// The last few operations linearized, oldest first.
    linearized: Vec<usize>,
    blocked: usize,
    state: i64,
}

impl Witness {
    /// The search is at a dead end: `blocked` cannot be placed after `lifted`. Only the
    /// last steps are kept (all a report shows), so that recording stays O(1).
    fn at(list: &List, lifted: &[Lifted], blocked: usize, state: i64) -> Self {
        let shown_from = lifted.len().saturating_sub(LINEARIZED_STEPS_SHOWN_MAX);
        let linearized = lifted[shown_from..]
            .iter()
            .flat_map(|l| l.info_commit.into_iter().chain([list.nodes[l.call].op]))
            .collect();
        Witness { depth: lifted.len(), linearized, blocked, state }
    }

    fn into_anomaly(self, key: &RegisterKey, ops: &[RegisterOp]) -> NotLinearizable {
        let step = |i: usize| RegisterStep { op: ops[i].op, offset: ops[i].offset };
        let shown_from = self.linearized.len().saturating_sub(LINEARIZED_STEPS_SHOWN_MAX);
        NotLinearizable {
            group: key.0.clone(),
            topic: key.1.clone(),
            partition: key.2,
            op: step(self.blocked),
            state: self.state,
            linearized: self.linearized[shown_from..].iter().map(|&i| step(i)).collect(),
        }
    }
}

/// No node: the end of the list.
const NIL: usize = usize::MAX;
/// The list's head sentinel.
const HEAD: usize = 0;

/// An entry of the history list: the call or the return of operation `op`.
#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    op: usize,
    /// For a call, its return's node; [`NIL`] for a return.
    ret: usize,
    /// The line of the call or return.
    time: u64,
}

/// The history as a doubly linked list of calls and returns in time order.
struct List {
    nodes: Vec<Node>,
}

impl List {
    /// The list of the operations that return; those that never return are kept apart.
    fn new(ops: &[RegisterOp]) -> Self {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            assert!(op.call < op.ret, "an operation returns after it is called");
            assert!(op.ret != RETURN_NEVER, "the list holds operations that return");
            events.push((op.call, false, i));
            events.push((op.ret, true, i));
        }
        // At equal times calls sort first: the operations are concurrent.
        events.sort_unstable();
        let nil = Node { prev: NIL, next: NIL, op: NIL, ret: NIL, time: 0 };
        let mut nodes = vec![nil; events.len() + 1];
        let mut call_node = vec![NIL; ops.len()];
        let mut return_node = vec![NIL; ops.len()];
        for (k, &(time, is_return, op)) in events.iter().enumerate() {
            let id = k + 1;
            nodes[id] = Node { prev: id - 1, next: NIL, op, ret: NIL, time };
            nodes[id - 1].next = id;
            if is_return {
                return_node[op] = id;
            } else {
                call_node[op] = id;
            }
        }
        for (&call, &ret) in call_node.iter().zip(&return_node) {
            nodes[call].ret = ret;
        }
        List { nodes }
    }

    /// The line of the first return left in the list: only operations called before it
    /// may be linearized next.
    fn first_return_time(&self) -> u64 {
        let mut id = self.nodes[HEAD].next;
        while id != NIL && self.nodes[id].ret != NIL {
            id = self.nodes[id].next;
        }
        if id == NIL { RETURN_NEVER } else { self.nodes[id].time }
    }

    fn unlink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = id;
        if next != NIL {
            self.nodes[next].prev = id;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Puts back the last call lifted, in the reverse order of [`List::lift`].
    fn unlift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.relink(ret);
        self.relink(call);
    }
}

/// The register model: a write always succeeds; a read succeeds if it returns the state.
fn step(state: i64, op: &RegisterOp) -> Option<i64> {
    if op.write {
        Some(op.offset)
    } else if op.offset == state {
        Some(state)
    } else {
        None
    }
}

/// A Zobrist key per operation, from splitmix64, so the hash of a set is a XOR.
fn zobrist(op: usize) -> u64 {
    let mut z = (op as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The set of linearized operations. Operation ids follow [`reduce`]: those that return,
/// by call, then those that never return.
///
/// A plain bitset per memo entry costs O(n) memory per search step, O(n²) in all: 6 GB
/// for one key of 50,000 operations. But the operations that return are linearized
/// almost in call order, so the set is held as the length of its fully linearized prefix,
/// the few linearized operations beyond it (at most the concurrency, roughly), and the
/// operations that never return (`info` commits), which are few after [`reduce`].
struct Linearized {
    bits: Vec<u64>,
    /// Ids below this return; ids from it on never return.
    returning: usize,
    /// Every returning id below this is linearized, and this one is not.
    prefix: usize,
    /// Returning ids linearized.
    returning_count: usize,
    /// Zobrist hash of the set.
    hash: u64,
    /// Operations in all.
    len: usize,
}

impl Linearized {
    fn new(ops: &[RegisterOp]) -> Self {
        let returning = ops.iter().take_while(|o| o.ret != RETURN_NEVER).count();
        let bits = vec![0u64; ops.len().div_ceil(64)];
        Linearized { bits, returning, prefix: 0, returning_count: 0, hash: 0, len: ops.len() }
    }

    fn contains(&self, id: usize) -> bool {
        self.bits[id / 64] & (1u64 << (id % 64)) != 0
    }

    fn insert(&mut self, id: usize) {
        assert!(!self.contains(id), "an operation is linearized once");
        self.bits[id / 64] |= 1u64 << (id % 64);
        self.hash ^= zobrist(id);
        if id < self.returning {
            self.returning_count += 1;
            while self.prefix < self.returning && self.contains(self.prefix) {
                self.prefix += 1;
            }
        }
    }

    fn remove(&mut self, id: usize) {
        assert!(self.contains(id), "only a linearized operation is taken back");
        self.bits[id / 64] &= !(1u64 << (id % 64));
        self.hash ^= zobrist(id);
        if id < self.returning {
            self.returning_count -= 1;
            self.prefix = self.prefix.min(id);
        }
    }

    /// 64 bits of the set from id `from` on, none at or past `end`.
    fn bits_from(&self, from: usize, end: usize) -> u64 {
        let (word, shift) = (from / 64, from % 64);
        let mut bits = self.bits[word] >> shift;
        if shift > 0 && word + 1 < self.bits.len() {
            bits |= self.bits[word + 1] << (64 - shift);
        }
        if end - from < 64 { bits & ((1u64 << (end - from)) - 1) } else { bits }
    }

    /// Writes the compact form of the set into `key`: the prefix length, the words of
    /// linearized returning ids past it up to the last one, then the never-returning ids.
    fn key(&self, key: &mut Vec<u64>) {
        key.clear();
        key.push(self.prefix as u64);
        let mut beyond = self.returning_count - self.prefix;
        let mut from = self.prefix;
        while beyond > 0 {
            let bits = self.bits_from(from, self.returning);
            beyond -= bits.count_ones() as usize;
            key.push(bits);
            from += 64;
        }
        let mut from = self.returning;
        while from < self.len {
            key.push(self.bits_from(from, self.len));
            from += 64;
        }
    }
}

/// The memo of explored (linearized set, state) pairs, by hash; each bucket holds the
/// compact forms of [`Linearized::key`].
#[derive(Default)]
struct Memo {
    seen: HashMap<(u64, i64), Vec<Box<[u64]>>>,
    key: Vec<u64>,
}

impl Memo {
    /// Records the pair; false if it was already there.
    fn insert(&mut self, linearized: &Linearized, state: i64) -> bool {
        linearized.key(&mut self.key);
        let bucket = self.seen.entry((linearized.hash, state)).or_default();
        if bucket.iter().any(|key| **key == *self.key) {
            return false;
        }
        bucket.push(self.key.as_slice().into());
        true
    }
}

/// A step of the search: a call lifted out of the list, with the `info` commit
/// linearized just before it (see [`search`]), and the state before both.
struct Lifted {
    call: usize,
    info_commit: Option<usize>,
    state_before: i64,
}

/// The `info` commits (operations that never return), by offset, each list by call.
struct InfoCommits {
    by_offset: HashMap<i64, Vec<usize>>,
}

impl InfoCommits {
    fn new(ops: &[RegisterOp], returning: usize) -> Self {
        let mut by_offset: HashMap<i64, Vec<usize>> = HashMap::new();
        for (id, op) in ops.iter().enumerate().skip(returning) {
            assert!(op.write && op.ret == RETURN_NEVER, "reduce() orders info commits last");
            by_offset.entry(op.offset).or_default().push(id);
        }
        InfoCommits { by_offset }
    }

    /// An `info` commit of `offset` not yet linearized and called by `time` (a call and a
    /// return on one line count as concurrent, as in [`List::new`]). They are
    /// interchangeable from then on (all stay callable to the end), so the first will do.
    fn callable(
        &self,
        ops: &[RegisterOp],
        linearized: &Linearized,
        offset: i64,
        time: u64,
    ) -> Option<usize> {
        let ids = self.by_offset.get(&offset)?;
        ids.iter()
            .copied()
            .take_while(|&id| ops[id].call <= time)
            .find(|&id| !linearized.contains(id))
    }
}

/// Wing & Gong's search over one key's operations, ordered by [`reduce`].
///
/// Operations that never return (`info` commits) are not candidates on their own. Any
/// linearization can be rewritten so that each `info` commit it keeps comes right before
/// a read of its offset: moving an operation that never returns later never breaks real
/// time, and the only operations it can be moved past are reads of its own offset, the
/// first of which it then precedes; if a write or the end comes first, it is dropped (it
/// may not have happened). So an `info` commit is only tried together with a read of its
/// offset that fails on the current state, and the search succeeds once every operation
/// that returns is linearized.
fn search(ops: &[RegisterOp], budget: &mut Budget) -> Outcome {
    let mut linearized = Linearized::new(ops);
    let returning = linearized.returning;
    let mut list = List::new(&ops[..returning]);
    let info_commits = InfoCommits::new(ops, returning);
    let mut state = OFFSET_NONE;
    let mut memo = Memo::default();
    let mut lifted: Vec<Lifted> = Vec::new();
    let mut witness: Option<Witness> = None;
    let mut entry = list.nodes[HEAD].next;
    while linearized.returning_count < returning {
        if !budget.spend() {
            return Outcome::Unknown;
        }
        let node = list.nodes[entry];
        if node.ret == NIL {
            // A return of an operation not yet linearized: this prefix is a dead end.
            if witness.as_ref().is_none_or(|w| linearized.returning_count > w.depth) {
                witness = Some(Witness::at(&list, &lifted, node.op, state));
            }
            let Some(last) = lifted.pop() else {
                return Outcome::NotLinearizable(witness.expect("set just above"));
            };
            linearized.remove(list.nodes[last.call].op);
            if let Some(info_commit) = last.info_commit {
                linearized.remove(info_commit);
            }
            list.unlift(last.call);
            state = last.state_before;
            entry = list.nodes[last.call].next;
            continue;
        }
        let op = &ops[node.op];
        let (next_state, info_commit) = match step(state, op) {
            Some(next_state) => (next_state, None),
            None => {
                let before = list.first_return_time();
                match info_commits.callable(ops, &linearized, op.offset, before) {
                    Some(commit) => (op.offset, Some(commit)),
                    None => {
                        entry = node.next;
                        continue;
                    }
                }
            }
        };
        if let Some(commit) = info_commit {
            linearized.insert(commit);
        }
        linearized.insert(node.op);
        if memo.insert(&linearized, next_state) {
            list.lift(entry);
            lifted.push(Lifted { call: entry, info_commit, state_before: state });
            state = next_state;
            entry = list.nodes[HEAD].next;
        } else {
            linearized.remove(node.op);
            if let Some(commit) = info_commit {
                linearized.remove(commit);
            }
            entry = node.next;
        }
    }
    Outcome::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{F, OpType};

    fn op(call: u64, ret: u64, write: bool, offset: i64) -> RegisterOp {
        let op = OpRef {
            process: 0,
            f: if write { F::Commit } else { F::Committed },
            kind: OpType::Ok,
            invoke: Some(call),
            complete: Some(ret),
        };
        RegisterOp { call, ret, write, offset, op }
    }

    fn check(ops: &[RegisterOp]) -> Outcome {
        search(&reduce(ops), &mut Budget::new(None, None))
    }

    #[test]
    fn sequential_write_then_read_is_linearizable() {
        let ops = [op(0, 1, true, 5), op(2, 3, false, 5)];
        assert!(matches!(check(&ops), Outcome::Linearizable));
    }

    #[test]
    fn stale_read_after_write_is_not() {
        let ops = [op(0, 1, true, 5), op(2, 3, true, 7), op(4, 5, false, 5)];
        let Outcome::NotLinearizable(witness) = check(&ops) else { panic!("linearizable") };
        assert_eq!(witness.blocked, 2);
        assert_eq!(witness.linearized, vec![0, 1]);
        assert_eq!(witness.state, 7);
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let ops = [op(0, 1, true, 5), op(2, 6, true, 7), op(3, 4, false, 5), op(5, 8, false, 7)];
        assert!(matches!(check(&ops), Outcome::Linearizable));
    }

    #[test]
    fn read_of_nothing_before_any_commit() {
        let ops = [op(0, 1, false, OFFSET_NONE), op(2, 3, true, 5)];
        assert!(matches!(check(&ops), Outcome::Linearizable));
        let ops = [op(0, 1, true, 5), op(2, 3, false, OFFSET_NONE)];
        assert!(matches!(check(&ops), Outcome::NotLinearizable(_)));
    }

    #[test]
    fn info_commit_may_take_effect_late_or_never() {
        let late = [op(0, RETURN_NEVER, true, 9), op(1, 2, true, 5), op(3, 4, false, 9)];
        assert!(matches!(check(&late), Outcome::Linearizable));
        let never = [op(0, RETURN_NEVER, true, 9), op(1, 2, true, 5), op(3, 4, false, 5)];
        assert!(matches!(check(&never), Outcome::Linearizable));
        // But it cannot take effect before it was invoked.
        let early = [op(0, 1, false, 9), op(2, RETURN_NEVER, true, 9)];
        assert!(matches!(check(&early), Outcome::NotLinearizable(_)));
    }

    #[test]
    fn info_commits_feed_reads_in_between() {
        let ops = [
            op(0, RETURN_NEVER, true, 9),
            op(1, RETURN_NEVER, true, 9),
            op(2, 3, true, 5),
            op(4, 5, false, 9),
            op(6, 7, true, 6),
            op(8, 9, false, 9),
            op(10, 11, false, 9),
        ];
        assert!(matches!(check(&ops), Outcome::Linearizable));
        // Two reads of 9 separated by a write of 6 need both info commits, and there is
        // only one left once the second is taken away.
        let ops = [ops[0], ops[2], ops[3], ops[4], ops[5]];
        assert!(matches!(check(&ops), Outcome::NotLinearizable(_)));
    }

    /// Linearizability by enumerating every order (for a handful of operations).
    fn brute_force(ops: &[RegisterOp]) -> bool {
        fn extend(ops: &[RegisterOp], done: &mut Vec<bool>, state: i64) -> bool {
            let returning_left = (0..ops.len()).any(|i| !done[i] && ops[i].ret != RETURN_NEVER);
            if !returning_left {
                return true;
            }
            for i in 0..ops.len() {
                // i may go next if no operation left undone returned before i was called.
                let blocked =
                    (0..ops.len()).any(|j| !done[j] && j != i && ops[j].ret < ops[i].call);
                if done[i] || blocked {
                    continue;
                }
                if let Some(next) = step(state, &ops[i]) {
                    done[i] = true;
                    let found = extend(ops, done, next);
                    done[i] = false;
                    if found {
                        return true;
                    }
                }
                // An info commit may also never happen.
                if ops[i].ret == RETURN_NEVER {
                    done[i] = true;
                    let found = extend(ops, done, state);
                    done[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        extend(ops, &mut vec![false; ops.len()], OFFSET_NONE)
    }

    fn arbitrary_op() -> impl proptest::strategy::Strategy<Value = RegisterOp> {
        use proptest::prelude::*;
        (0u64..12, 1u64..8, 0u8..10, -1i64..3).prop_map(|(call, length, kind, offset)| {
            let write = kind < 5;
            let ret = if write && kind == 0 { RETURN_NEVER } else { call + length };
            op(call, ret, write, if write { offset.max(0) } else { offset })
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..Default::default()
        })]

        #[test]
        fn search_agrees_with_brute_force(ops in proptest::collection::vec(arbitrary_op(), 1..7)) {
            let expected = brute_force(&ops);
            let found = matches!(check(&ops), Outcome::Linearizable);
            proptest::prop_assert_eq!(found, expected, "{:?}", ops);
        }
    }

    #[test]
    fn step_budget_answers_unknown() {
        let ops: Vec<RegisterOp> = (0..20).map(|i| op(i * 2, i * 2 + 1, true, i as i64)).collect();
        let outcome = search(&ops, &mut Budget::new(None, Some(5)));
        assert!(matches!(outcome, Outcome::Unknown));
    }
}
