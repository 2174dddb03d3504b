//! The simulated network: every message between two endpoints (client <-> node today,
//! node <-> node once replication lands) goes through [`Network::route`], which decides from
//! the network stream whether it is lost, how late it arrives, and whether it arrives twice.
//!
//! Faults: per-message loss, duplication and reordering (a held-back message arrives after
//! later ones); clogged links (a large added delay); partitions as a set of cut directed
//! pairs, so symmetric and one-way partitions and the isolation of a node are all the same
//! mechanism. Client connections behave like TCP on top of it: the receiving side drops
//! duplicates and stale requests by request number (see `world`).

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A node, by index (node id minus one).
    Node(u32),
    /// A client, by index.
    Client(u32),
}

/// What the network did, for coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Lost at random.
    pub lost: u64,
    /// Lost to a partition or isolation.
    pub cut: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held back so later messages overtake them.
    pub reordered: u64,
    /// Delayed by a clogged link.
    pub clogged: u64,
}

/// Link settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Latency bounds, nanoseconds.
    pub latency_ns: (u64, u64),
    /// Probability of loss.
    pub loss: f64,
    /// Probability of a second copy.
    pub duplicate: f64,
    /// Probability of being held back.
    pub reorder: f64,
}

/// The network. See the module documentation.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    /// Cut directed pairs of node-level endpoints, until a time (ns).
    cut: BTreeMap<(Cut, Cut), u64>,
    /// Extra delay on links touching a node, until a time: node -> (delay ns, until ns).
    clogged: BTreeMap<u32, (u64, u64)>,
    stats: NetStats,
}

/// A side of a cut: one node, or all clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cut {
    /// A node, by index.
    Node(u32),
    /// Every client.
    Clients,
    /// Everyone (for isolating a node).
    Anyone,
}

fn side(endpoint: Endpoint) -> Cut {
    match endpoint {
        Endpoint::Node(n) => Cut::Node(n),
        Endpoint::Client(_) => Cut::Clients,
    }
}

impl Network {
    /// A healthy network with `config`.
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            cut: BTreeMap::new(),
            clogged: BTreeMap::new(),
            stats: NetStats::default(),
        }
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Cuts messages from `from` to `to` until `until_ns`.
    pub fn cut(&mut self, from: Cut, to: Cut, until_ns: u64) {
        self.cut.insert((from, to), until_ns);
    }

    /// Delays messages to and from node `node` by `delay_ns` until `until_ns`.
    pub fn clog(&mut self, node: u32, delay_ns: u64, until_ns: u64) {
        self.clogged.insert(node, (delay_ns, until_ns));
    }

    /// Ends every partition and clog, and (with `calm`) every random message fault.
    pub fn heal(&mut self, calm: bool) {
        self.cut.clear();
        self.clogged.clear();
        if calm {
            self.config.loss = 0.0;
            self.config.duplicate = 0.0;
            self.config.reorder = 0.0;
        }
    }

    /// Whether the link from `from` to `to` is cut at `now` (ns).
    pub(crate) fn is_cut(&self, now: u64, from: Endpoint, to: Endpoint) -> bool {
        let (a, b) = (side(from), side(to));
        [(a, b), (a, Cut::Anyone), (Cut::Anyone, b)]
            .iter()
            .any(|pair| self.cut.get(pair).is_some_and(|until| *until > now))
    }

    /// Decides the fate of one message sent at `now` (ns): the delays after which copies of
    /// it arrive (none if lost). Writes into `out` to avoid an allocation per message.
    pub fn route(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: Endpoint,
        to: Endpoint,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        self.stats.sent += 1;
        if self.is_cut(now, from, to) {
            self.stats.cut += 1;
            return;
        }
        if chance(rng, self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut extra = 0;
        for node in [from, to].into_iter().filter_map(|e| match e {
            Endpoint::Node(n) => Some(n),
            Endpoint::Client(_) => None,
        }) {
            if let Some((delay, until)) = self.clogged.get(&node)
                && *until > now
            {
                extra += delay;
                self.stats.clogged += 1;
            }
        }
        let copies = if chance(rng, self.config.duplicate) { 2 } else { 1 };
        self.stats.duplicated += copies - 1;
        for _ in 0..copies {
            let (lo, hi) = self.config.latency_ns;
            let mut delay = rng.random_range(lo..=hi.max(lo)) + extra;
            if chance(rng, self.config.reorder) {
                self.stats.reordered += 1;
                delay += rng.random_range(hi..=hi.max(1) * 20);
            }
            out.push(delay);
        }
    }
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p)
}
