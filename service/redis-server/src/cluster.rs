//! A Redis Cluster of loopback servers, created with cluster commands (no `redis-cli`
//! needed): slots split evenly over the masters (`CLUSTER ADDSLOTS`), nodes introduced with
//! `CLUSTER MEET`, replicas attached with `CLUSTER REPLICATE`.

use std::thread;
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::server::{RedisServer, ServerOptions};
use crate::tls::{ClientAuth, TestPki};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long a new cluster may take to agree on its slots.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Nodes `0..masters` are masters (master `m` starts with an even share of the slots), the
/// rest replicas (replica `r` of master `r % masters`). Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// `masters` masters without replicas.
    pub fn start(masters: usize) -> Result<RedisCluster, HarnessError> {
        RedisCluster::start_with_replicas(masters, 0)
    }

    /// `masters` masters, each with `replicas_per_master` replicas, node timeout 1 s (a
    /// master that stops is failed over by its replica about 2 s later).
    pub fn start_with_replicas(
        masters: usize,
        replicas_per_master: usize,
    ) -> Result<RedisCluster, HarnessError> {
        if masters == 0 || masters > usize::from(SLOTS) {
            return Err(HarnessError::Start(format!(
                "a cluster needs 1 to {SLOTS} masters, not {masters}"
            )));
        }
        let total = masters * (1 + replicas_per_master);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            nodes.push(RedisServer::start_with(ServerOptions {
                cluster: true,
                ..ServerOptions::default()
            })?);
        }
        let cluster = RedisCluster { nodes, masters };
        cluster.form(replicas_per_master)?;
        Ok(cluster)
    }

    /// `masters` masters without replicas, each behind a TLS terminator and announcing its
    /// TLS port: the cluster's slot map ([`RedisCluster::tls_urls`]) leads clients to TLS
    /// ports only. The plain ports stay open for the harness itself.
    pub fn start_tls(
        masters: usize,
        pki: &TestPki,
        client_auth: ClientAuth,
    ) -> Result<RedisCluster, HarnessError> {
        if masters == 0 || masters > usize::from(SLOTS) {
            return Err(HarnessError::Start(format!(
                "a cluster needs 1 to {SLOTS} masters, not {masters}"
            )));
        }
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::start_tls_cluster_node(pki, client_auth)?);
        }
        let cluster = RedisCluster { nodes, masters };
        cluster.form(0)?;
        Ok(cluster)
    }

    /// Every node's `rediss://` URL, for a cluster started with [`RedisCluster::start_tls`].
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes.iter().filter_map(RedisServer::tls_url).collect()
    }

    fn form(&self, replicas_per_master: usize) -> Result<(), HarnessError> {
        for (m, node) in self.nodes.iter().take(self.masters).enumerate() {
            let (first, last) = slot_range(m, self.masters);
            let mut args = vec!["CLUSTER".to_owned(), "ADDSLOTS".to_owned()];
            args.extend((first..=last).map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node.command(&args)?;
            node.command(&["CLUSTER", "SET-CONFIG-EPOCH", &(m + 1).to_string()])?;
        }
        let Some(first) = self.nodes.first() else {
            return Ok(());
        };
        for node in self.nodes.iter().skip(1) {
            first.command(&["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()])?;
        }
        let total = self.nodes.len();
        self.wait_for("every node to know every other", |node| {
            Ok(cluster_info(node)?.contains(&format!("cluster_known_nodes:{total}")))
        })?;
        for r in 0..self.masters * replicas_per_master {
            let (Some(master), Some(replica)) = (
                self.nodes.get(r % self.masters),
                self.nodes.get(self.masters + r),
            ) else {
                continue;
            };
            let id = text(master.command(&["CLUSTER", "MYID"])?);
            replica.command(&["CLUSTER", "REPLICATE", id.trim()])?;
        }
        self.wait_until_ok(FORM_TIMEOUT)
    }

    /// Waits until every running node reports `cluster_state:ok` with every slot served.
    pub fn wait_until_ok(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all_ok = true;
            for node in &self.nodes {
                // A stopped node does not answer; the others must be ok.
                if let Ok(info) = cluster_info(node)
                    && !(info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_slots_ok:{SLOTS}"))
                        && slots_served_by_live_masters(node))
                {
                    all_ok = false;
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let infos: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("{}: {}", n.url(), cluster_info(n).unwrap_or_default()))
                    .collect();
                return Err(HarnessError::Start(format!(
                    "the cluster did not reach cluster_state:ok within {timeout:?}:\n{}",
                    infos.join("\n")
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&RedisServer) -> Result<bool, HarnessError>,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let mut all = true;
            for node in &self.nodes {
                if !done(node)? {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Start(format!(
                    "timed out after {FORM_TIMEOUT:?} waiting for {what}"
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every node's URL (masters first), as seed nodes for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// How many nodes there are (masters and replicas).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many masters it was started with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// Node `i` (masters first).
    pub fn node(&self, i: usize) -> Option<&RedisServer> {
        self.nodes.get(i)
    }

    /// Node `i`, to stop, kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(i)
    }

    /// The node now serving `key`'s slot as master, asked of the first node that answers.
    pub fn master_of(&self, key: &str) -> Result<usize, HarnessError> {
        let mut last = None;
        for node in &self.nodes {
            let slot = match node.command(&["CLUSTER", "KEYSLOT", key]) {
                Ok(redis::Value::Int(slot)) => slot,
                Ok(other) => {
                    last = Some(HarnessError::Command(format!("CLUSTER KEYSLOT: {other:?}")));
                    continue;
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let nodes = match node.command(&["CLUSTER", "NODES"]) {
                Ok(v) => text(v),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges>..
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                    continue;
                };
                if !flags.contains("master") || flags.contains("fail") {
                    continue;
                }
                let serves = fields.iter().skip(8).any(|range| {
                    let mut bounds = range.split('-').map(|b| b.parse::<i64>().ok());
                    match (bounds.next().flatten(), bounds.next().flatten()) {
                        (Some(a), Some(b)) => (a..=b).contains(&slot),
                        (Some(a), None) => a == slot,
                        _ => false,
                    }
                });
                if !serves {
                    continue;
                }
                let port = addr
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                // A node behind TLS announces its terminator's port.
                if let Some(i) = self
                    .nodes
                    .iter()
                    .position(|n| Some(n.port()) == port || n.tls_port() == port)
                {
                    return Ok(i);
                }
            }
            last = Some(HarnessError::Command(format!(
                "no live master serves slot {slot} in CLUSTER NODES:\n{nodes}"
            )));
        }
        Err(last.unwrap_or_else(|| HarnessError::Command("no node answers".to_owned())))
    }
}

/// The first and last slot of master `m` of `masters`.
pub fn slot_range(m: usize, masters: usize) -> (u16, u16) {
    let slots = usize::from(SLOTS);
    let first = m * slots / masters;
    let last = (m + 1) * slots / masters - 1;
    (first as u16, last as u16)
}

/// Whether, as `node` sees it, every master holding slots is up and linked (a node that was
/// just stopped still holds its slots until the others notice it failed).
fn slots_served_by_live_masters(node: &RedisServer) -> bool {
    let Ok(nodes) = node.command(&["CLUSTER", "NODES"]).map(text) else {
        return false;
    };
    nodes.lines().all(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2).copied().unwrap_or_default();
        let link = fields.get(7).copied().unwrap_or_default();
        let holds_slots = fields.len() > 8;
        !(flags.contains("master") && holds_slots)
            || (!flags.contains("fail") && (flags.contains("myself") || link == "connected"))
    })
}

fn cluster_info(node: &RedisServer) -> Result<String, HarnessError> {
    node.command(&["CLUSTER", "INFO"]).map(text)
}

fn text(value: redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        redis::Value::SimpleString(s) => s,
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}
