//! The node's topic requests and their effects on partitions: creation, deletion, growth and
//! setting changes go through the topic store (`core::metadata`) and, once durable, the node
//! opens, reconfigures or deletes the partitions to match ([`Node::reconcile`]).
//!
//! Order on disk, so that a crash at any point leaves a state the next start repairs: a
//! topic's record is synced before its partitions are created, and before its partitions'
//! files are deleted. At start the node opens the partitions of every stored topic (creating
//! missing ones) and deletes the directories of partitions no topic has.

use std::sync::Arc;

use super::*;

impl Node {
    pub(super) fn create_topic(
        &mut self,
        conn: ConnId,
        id: RequestId,
        name: Arc<str>,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) {
        if let Err(error) = self.check_new_topic(&name, partitions, &config) {
            return self.fail(conn, id, error);
        }
        if validate_only {
            return self.reply(conn, id, Response::TopicChanged);
        }
        let state = TopicState { partitions, config };
        self.stage(Some((conn, id)), None, name, Some(state));
    }

    fn check_new_topic(
        &self,
        name: &Arc<str>,
        partitions: i32,
        config: &TopicConfig,
    ) -> Result<(), RequestError> {
        self.check_ready()?;
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        config.validate()?;
        if self.store.staged(name).is_some() || self.deleting.contains_key(name) {
            return Err(RequestError::TopicExists(name.clone()));
        }
        Ok(())
    }

    fn check_ready(&self) -> Result<(), RequestError> {
        if !self.started || self.shutting_down || !self.store.is_ready() {
            return Err(RequestError::NodeNotReady);
        }
        Ok(())
    }

    /// The staged state of topic `name`, or why it cannot be changed.
    fn existing(&self, name: &Arc<str>) -> Result<&TopicState, RequestError> {
        self.check_ready()?;
        self.store.staged(name).ok_or_else(|| RequestError::UnknownTopic(name.clone()))
    }

    pub(super) fn delete_topic(&mut self, conn: ConnId, id: RequestId, name: Arc<str>) {
        if let Err(error) = self.existing(&name) {
            return self.fail(conn, id, error);
        }
        self.stage(Some((conn, id)), None, name, None);
    }

    pub(super) fn create_partitions(
        &mut self,
        conn: ConnId,
        id: RequestId,
        name: Arc<str>,
        count: i32,
        validate_only: bool,
    ) {
        let state = match self.existing(&name) {
            Ok(state) => state.clone(),
            Err(error) => return self.fail(conn, id, error),
        };
        if self.deleting.contains_key(&name) {
            // Files of a partition beyond the count (left by a crash) are still being
            // deleted; a new partition of that number must not meet them.
            return self.fail(conn, id, RequestError::NodeNotReady);
        }
        if count <= state.partitions {
            let current = state.partitions;
            let error = RequestError::PartitionsCannotShrink { name, current, asked: count };
            return self.fail(conn, id, error);
        }
        if let Err(error) = validate_partition_count(count) {
            return self.fail(conn, id, error);
        }
        if validate_only {
            return self.reply(conn, id, Response::TopicChanged);
        }
        let state = TopicState { partitions: count, ..state };
        self.stage(Some((conn, id)), None, name, Some(state));
    }

    pub(super) fn alter_topic_config(
        &mut self,
        conn: ConnId,
        id: RequestId,
        name: Arc<str>,
        changes: &[ConfigChange],
        validate_only: bool,
    ) {
        let mut state = match self.existing(&name) {
            Ok(state) => state.clone(),
            Err(error) => return self.fail(conn, id, error),
        };
        if let Err(error) = state.config.apply(changes, &self.config.default_topic) {
            return self.fail(conn, id, error);
        }
        if validate_only {
            return self.reply(conn, id, Response::TopicChanged);
        }
        self.stage(Some((conn, id)), None, name, Some(state));
    }

    pub(super) fn metadata(
        &mut self,
        conn: ConnId,
        id: RequestId,
        topics: Option<Vec<Arc<str>>>,
        auto_create: bool,
    ) {
        if let Err(error) = self.check_ready() {
            return self.fail(conn, id, error);
        }
        let Some(topics) = topics else {
            let all = self.store.topics().keys().cloned().collect();
            let response = self.describe(all, Vec::new());
            return self.reply(conn, id, response);
        };
        self.next_token += 1;
        let token = self.next_token;
        let mut wait = MetadataWait { conn, id, topics, creations: 0, failures: Vec::new() };
        if auto_create && self.config.auto_create_topics {
            let partitions = self.config.default_partitions;
            let config = self.config.default_topic.clone();
            for name in wait.topics.clone() {
                if self.store.staged(&name).is_some() || self.deleting.contains_key(&name) {
                    continue;
                }
                match self.check_new_topic(&name, partitions, &config) {
                    Ok(()) => {
                        let state = TopicState { partitions, config: config.clone() };
                        self.stage(None, Some(token), name, Some(state));
                        wait.creations += 1;
                    }
                    Err(error) => wait.failures.push((name, error)),
                }
            }
        }
        if wait.creations == 0 {
            let response = self.describe(wait.topics, wait.failures);
            return self.reply(conn, id, response);
        }
        self.metadata_waits.insert(token, wait);
    }

    /// Metadata's answer: every topic of `names`, from the committed image.
    fn describe(&self, names: Vec<Arc<str>>, failures: Vec<(Arc<str>, RequestError)>) -> Response {
        let topics = names
            .into_iter()
            .map(|name| {
                let failed = failures.iter().find(|(n, _)| *n == name).map(|(_, e)| e.clone());
                let state = match (self.store.topics().get(&name), failed) {
                    (Some(state), _) => Ok(state.clone()),
                    (None, Some(error)) => Err(error),
                    (None, None) => Err(RequestError::UnknownTopic(name.clone())),
                };
                TopicInfo { name, state }
            })
            .collect();
        Response::Metadata { topics }
    }

    /// Sends a change of topic `name` to the store; answered when it commits or fails.
    fn stage(
        &mut self,
        requester: Option<(ConnId, RequestId)>,
        metadata: Option<u64>,
        name: Arc<str>,
        state: Option<TopicState>,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        self.store.change(token, name.clone(), state, &mut self.ops.unowned());
        self.topic_changes.insert(token, TopicChange { requester, metadata, name });
    }

    pub(super) fn drain_store_events(&mut self) {
        while let Some(event) = self.store.poll_event() {
            match event {
                StoreEvent::Loaded => {
                    self.submit_node_op(
                        DiskOp::List { dir: FileName::new(PARTITIONS_DIR) },
                        NodeOp::ListPartitions,
                    );
                }
                StoreEvent::LoadFailed(error) => {
                    self.fatal = Some(format!("cannot load the topics in {METADATA_DIR}/: {error}"))
                }
                StoreEvent::Committed(token) => self.change_done(token, Ok(())),
                StoreEvent::Failed(token, error) => {
                    self.change_done(token, Err(RequestError::MetadataStorage(error)))
                }
            }
        }
    }

    fn change_done(&mut self, token: u64, result: Result<(), RequestError>) {
        let change = self.topic_changes.remove(&token).expect("every staged change is tracked");
        if result.is_ok() {
            self.reconcile(&change.name);
            self.data_version += 1;
        }
        if let Some((conn, id)) = change.requester {
            let response = match &result {
                Ok(()) => Response::TopicChanged,
                Err(error) => Response::Error(error.clone()),
            };
            self.reply(conn, id, response);
        }
        let Some(metadata) = change.metadata else { return };
        let wait = self.metadata_waits.get_mut(&metadata).expect("the metadata request waits");
        wait.creations -= 1;
        if let Err(error) = result {
            wait.failures.push((change.name, error));
        }
        if wait.creations == 0 {
            let wait = self.metadata_waits.remove(&metadata).expect("checked");
            let response = self.describe(wait.topics, wait.failures);
            self.reply(wait.conn, wait.id, response);
        }
    }

    /// Makes the partitions held of topic `name` match its committed state: opens the
    /// missing ones, applies its settings to the others, deletes those beyond its count (all
    /// of them when the topic is gone).
    fn reconcile(&mut self, name: &Arc<str>) {
        let state = self.store.topics().get(name).cloned();
        let held: Vec<PartitionId> =
            self.partitions.keys().filter(|id| id.topic == *name).cloned().collect();
        for id in &held {
            match &state {
                Some(state) if id.partition < state.partitions => {
                    let partition = self.partitions.get_mut(id).expect("held");
                    partition.durability = state.config.durability;
                    partition.log.set_config(state.config.log.clone());
                }
                _ => self.delete_partition(id),
            }
        }
        let Some(state) = state else { return };
        for index in 0..state.partitions {
            let id = PartitionId::new(name.clone(), index);
            if !self.partitions.contains_key(&id) {
                self.open_partition(id, state.config.clone());
            }
        }
    }

    /// Drops partition `id` and deletes its files. Whoever waits on it is told it is gone.
    fn delete_partition(&mut self, id: &PartitionId) {
        let partition = self.partitions.remove(id).expect("deleting a held partition");
        self.flush_wanted.remove(id);
        let gone = || Response::Error(RequestError::UnknownPartition(id.clone()));
        for (_, conn, request, _) in partition.waiting_acks {
            self.ops.reply(conn, request, gone());
        }
        for (conn, request) in partition.reads.into_values() {
            self.ops.reply(conn, request, gone());
        }
        self.delete_files(id.topic.clone(), id.dir());
    }

    /// Deletes directory `dir` of a partition of `topic` and everything in it.
    fn delete_files(&mut self, topic: Arc<str>, dir: FileName) {
        *self.deleting.entry(topic.clone()).or_insert(0) += 1;
        self.submit_node_op(DiskOp::List { dir: dir.clone() }, NodeOp::ListDeleted { topic, dir });
    }

    pub(super) fn node_op_done(&mut self, op: NodeOp, result: DiskResult) {
        match op {
            NodeOp::ListPartitions => self.partitions_listed(result),
            NodeOp::ListDeleted { topic, dir } => {
                let entries = match result {
                    Ok(DiskOk::Listing(entries)) => entries,
                    Ok(other) => panic!("a listing completed with {other:?}"),
                    Err(error) => {
                        tracing::error!(%dir, %error, "cannot list a deleted partition");
                        Vec::new()
                    }
                };
                for entry in entries.into_iter().filter(|e| !e.is_dir) {
                    let file = dir.join(&entry.name);
                    self.submit_node_op(DiskOp::Remove { file }, NodeOp::RemoveFile);
                }
                self.submit_node_op(DiskOp::Remove { file: dir }, NodeOp::RemoveDir { topic });
            }
            NodeOp::RemoveFile => {
                if let Err(error) = result {
                    tracing::error!(%error, "cannot remove a file of a deleted partition");
                }
            }
            NodeOp::RemoveDir { topic } => {
                if let Err(error) = result {
                    // Left for the next start, which deletes partitions no topic has.
                    tracing::error!(%topic, %error, "cannot remove a deleted partition");
                }
                let left = self.deleting.get_mut(&topic).expect("deletions are counted");
                *left -= 1;
                if *left == 0 {
                    self.deleting.remove(&topic);
                }
            }
        }
    }

    fn partitions_listed(&mut self, result: DiskResult) {
        let entries = match result {
            Ok(DiskOk::Listing(entries)) => entries,
            Ok(other) => panic!("a listing completed with {other:?}"),
            Err(error) => {
                // Without a listing the node cannot know its partitions' data.
                self.fatal = Some(format!("cannot list {PARTITIONS_DIR}/: {error}"));
                return;
            }
        };
        for entry in entries.into_iter().filter(|entry| entry.is_dir) {
            let dir = FileName::new(PARTITIONS_DIR).join(&entry.name);
            let Some(id) = PartitionId::from_dir_name(&entry.name) else {
                tracing::warn!(name = %entry.name, "not a partition directory; ignored");
                continue;
            };
            match self.store.topics().get(&id.topic) {
                Some(state) if id.partition < state.partitions => {
                    let config = state.config.clone();
                    self.open_partition(id, config);
                }
                _ => {
                    tracing::info!(%id, "deleting a partition that belongs to no topic");
                    self.delete_files(id.topic, dir);
                }
            }
        }
        let names: Vec<Arc<str>> = self.store.topics().keys().cloned().collect();
        for name in &names {
            self.reconcile(name);
        }
        self.started = true;
    }
}
