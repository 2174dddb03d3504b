//! A seeded random sequence of group inputs, checking the invariants and that every request
//! is answered exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use super::*;
use crate::core::rng::{self as core_rng, CoreRng};

/// What one simulated consumer knows of its membership.
#[derive(Debug, Default, Clone)]
struct Client {
    instance: Option<String>,
    member_id: String,
    generation: Generation,
}

/// Tokens handed in and answered, and what each generation's answers agreed on.
#[derive(Default)]
struct Ledger {
    issued: BTreeSet<RequestToken>,
    answered: BTreeSet<RequestToken>,
    /// Which client sent each request, and the member id it used.
    owners: BTreeMap<RequestToken, (usize, String)>,
    /// Successful joins and syncs, so the test knows it got past the errors.
    joins_ok: usize,
    syncs_ok: usize,
    /// The (leader, protocol) every successful join of a generation reported.
    generations: BTreeMap<Generation, (String, String)>,
}

struct Run {
    group: Group,
    rng: CoreRng,
    now: Instant,
    clients: Vec<Client>,
    next_token: RequestToken,
    ledger: Ledger,
}

impl Run {
    fn new(seed: u64) -> Run {
        let config = GroupConfig {
            seed,
            session_timeout_min: Duration::from_secs(1),
            session_timeout_max: Duration::from_secs(60),
            group_size_max: 8,
        };
        let clients = (0..6)
            .map(|i| Client {
                instance: (i % 3 == 0).then(|| format!("instance-{i}")),
                ..Client::default()
            })
            .collect();
        Run {
            group: Group::new(config),
            rng: core_rng::seeded(seed ^ 0x5eed),
            now: Instant::from_millis(1_000),
            clients,
            next_token: 0,
            ledger: Ledger::default(),
        }
    }

    fn token(&mut self, client: usize) -> RequestToken {
        self.next_token += 1;
        assert!(self.ledger.issued.insert(self.next_token));
        let member_id = self.clients[client].member_id.clone();
        self.ledger.owners.insert(self.next_token, (client, member_id));
        self.next_token
    }

    fn join_request(&mut self, client: usize) -> JoinRequest {
        let assignors: &[&str] = match self.rng.random_range(0..4) {
            0 => &["sticky", "range"],
            1 => &["range", "sticky"],
            2 => &["range"],
            _ => &["cooperative"],
        };
        let forget = self.rng.random_bool(0.1);
        let client = &self.clients[client];
        JoinRequest {
            member_id: if forget { String::new() } else { client.member_id.clone() },
            group_instance_id: client.instance.clone(),
            client_id: "random".to_owned(),
            session_timeout: Duration::from_secs(self.rng.random_range(5..=15)),
            rebalance_timeout: Duration::from_secs(self.rng.random_range(5..=30)),
            protocol_type: "consumer".to_owned(),
            protocols: assignors
                .iter()
                .map(|name| (name.to_string(), Bytes::from_static(b"subscription")))
                .collect(),
        }
    }

    fn step(&mut self) {
        let client = self.rng.random_range(0..self.clients.len());
        let member_id = self.clients[client].member_id.clone();
        let instance = self.clients[client].instance.clone();
        let stale = self.rng.random_bool(0.1);
        let generation = self.clients[client].generation - i32::from(stale);
        match self.rng.random_range(0..10) {
            0..=2 => {
                let request = self.join_request(client);
                let token = self.token(client);
                self.group.join(self.now, token, request);
            }
            3..=4 => {
                let assignments = self
                    .group
                    .member_ids()
                    .map(|id| (id.to_owned(), Bytes::from(format!("for-{id}"))))
                    .collect();
                let request =
                    SyncRequest { member_id, group_instance_id: instance, generation, assignments };
                let token = self.token(client);
                self.group.sync(self.now, token, request);
            }
            5..=6 => {
                let token = self.token(client);
                self.group.heartbeat(self.now, token, &member_id, instance.as_deref(), generation);
            }
            7 => {
                let token = self.token(client);
                let leaving = LeaveMember { member_id, group_instance_id: instance };
                self.group.leave(self.now, token, vec![leaving]);
            }
            _ => {
                self.now = self.now + Duration::from_millis(self.rng.random_range(0..12_000));
                self.group.handle_timeout(self.now);
            }
        }
        self.drain();
    }

    /// Takes every answer, checking it answers a request once and agrees with its
    /// generation's other answers, and tells the client that asked what it learnt.
    fn drain(&mut self) {
        while let Some(event) = self.group.poll_event() {
            let token = event.token();
            let (client, asked_as) = self.ledger.owners[&token].clone();
            assert!(self.ledger.answered.insert(token), "token {token} answered twice");
            match event {
                GroupEvent::Join { result: Ok(response), .. } => {
                    assert!(response.generation <= self.group.generation());
                    let agreed = (response.leader.clone(), response.protocol_name.clone());
                    let first = self
                        .ledger
                        .generations
                        .entry(response.generation)
                        .or_insert(agreed.clone());
                    assert_eq!(*first, agreed, "one leader and protocol per generation");
                    let is_leader = response.leader == response.member_id;
                    assert_eq!(response.members.is_empty(), !is_leader);
                    self.clients[client].member_id = response.member_id;
                    self.clients[client].generation = response.generation;
                    self.ledger.joins_ok += 1;
                }
                GroupEvent::Join {
                    result: Err(GroupError::MemberIdRequired { member_id }),
                    ..
                } => {
                    self.clients[client].member_id = member_id;
                }
                GroupEvent::Sync { result: Ok(response), .. } => {
                    // The leader assigns "for-<id>" to every member; a static member that took
                    // over an instance id keeps its predecessor's.
                    let own = Bytes::from(format!("for-{asked_as}"));
                    let dynamic = self.clients[client].instance.is_none();
                    assert!(
                        !dynamic || response.assignment == own || response.assignment.is_empty()
                    );
                    self.ledger.syncs_ok += 1;
                }
                _ => {}
            }
        }
    }
}

#[test]
fn random_sequences_keep_the_invariants_and_answer_every_request_once() {
    let mut states = BTreeSet::new();
    let mut generations_max = 0;
    let (mut joins_ok, mut syncs_ok) = (0, 0);
    for seed in 0..40 {
        let mut run = Run::new(seed);
        for _ in 0..400 {
            run.step();
            run.group.invariants();
            states.insert(run.group.state());
        }
        generations_max = generations_max.max(run.group.generation());
        joins_ok += run.ledger.joins_ok;
        syncs_ok += run.ledger.syncs_ok;
        run.group.shutdown(GroupError::NotCoordinator);
        run.drain();
        assert_eq!(run.ledger.answered, run.ledger.issued, "seed {seed}: every request answered");
        assert_eq!(run.group.poll_timeout(), None);
    }
    // The sequence must reach every live state, or it tests less than it claims.
    for state in [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
    ] {
        assert!(states.contains(&state), "never reached {state:?}");
    }
    assert!(generations_max >= 5, "few rebalances: {generations_max}");
    assert!(joins_ok >= 100 && syncs_ok >= 50, "joins {joins_ok}, syncs {syncs_ok}");
}
