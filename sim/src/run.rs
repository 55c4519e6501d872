//! One simulation run, from its seed: a cluster, clients and a nemesis on
//! a paused current-thread runtime; then healing, quiescence, final reads
//! and the checkers.

use crate::check::{self, Final};
use crate::cluster::{Shape, SimCluster};
use crate::history::{History, Workload};
use crate::nemesis::{Action, Fault, Nemesis};
use crate::net::{FaultCounts, SimNet};
use crate::workload::{decode_elems, decode_id, decode_write, key_name, Client, Kept};
use kvorum_client::proto::{RangeQuery, ReadOptions, Request, Response};
use kvorum_client::{BucketProps, DataValue};
use kvorum_ring::NodeId;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a run does, drawn from its seed ([`Plan::of_seed`]) or set by a
/// scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Cluster size and quorums.
    pub shape: Shape,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys per workload.
    pub keys: u32,
    /// The workloads mixed.
    pub workloads: Vec<Workload>,
    /// Longest pause of a client between operations.
    pub think: Duration,
    /// The faults the nemesis draws from (none: a quiet run).
    pub faults: Vec<Fault>,
    /// Time between two nemesis steps.
    pub nemesis_every: Duration,
    /// How long clients and nemesis run (virtual time).
    pub duration: Duration,
    /// A scenario's script: actions at virtual times from the start of
    /// the load, instead of random faults (empty: random faults).
    pub script: Vec<(Duration, Action)>,
}

impl Plan {
    /// The swarm's plan for `seed`: 3 to 7 nodes, 2 to 5 clients, 2 to 8
    /// keys, a random non-empty subset of the faults, 15 to 45 virtual
    /// seconds of load and faults.
    pub fn of_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let nodes = rng.random_range(3..=7);
        let w = if rng.random_bool(0.8) { 2 } else { 3 };
        let r = if w == 3 { 1 } else { 2 };
        let mut faults: Vec<Fault> = Fault::ALL
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        if faults.is_empty() {
            faults.push(Fault::ALL[rng.random_range(0..Fault::ALL.len())]);
        }
        let spares = if faults.contains(&Fault::Join) {
            rng.random_range(1..=2)
        } else {
            0
        };
        Self {
            shape: Shape {
                nodes,
                spares,
                n: 3,
                r,
                w,
            },
            clients: rng.random_range(2..=5),
            keys: rng.random_range(2..=8),
            workloads: Workload::ALL.to_vec(),
            think: Duration::from_millis(rng.random_range(20..=200)),
            faults,
            nemesis_every: Duration::from_millis(rng.random_range(500..=4000)),
            duration: Duration::from_secs(rng.random_range(15..=45)),
            script: Vec::new(),
        }
    }
}

/// What one run found.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The plan it ran.
    pub plan: Plan,
    /// The hash of its history.
    pub hash: u64,
    /// Operations completed, and acknowledged.
    pub ops: u64,
    /// Operations acknowledged.
    pub acked: u64,
    /// Faults the nemesis injected.
    pub faults: u64,
    /// What the network injected.
    pub net: FaultCounts,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Violations (empty: the run passed).
    pub failures: Vec<String>,
    /// The whole history, as text.
    pub history: String,
}

/// Longest a cluster may take to form, and to converge after healing.
const FORM_LIMIT: Duration = Duration::from_secs(120);
const CONVERGE_LIMIT: Duration = Duration::from_secs(300);
/// Idle time after convergence: the tombstone grace (16 s, cluster.rs)
/// and a few reaping rounds.
const REAP_WAIT: Duration = Duration::from_secs(25);
/// The second round of load and faults, after the reaps.
const AFTER_REAP_LOAD: Duration = Duration::from_secs(20);

/// Runs `seed` with its swarm plan.
pub fn run_seed(seed: u64) -> Report {
    run(seed, Plan::of_seed(seed))
}

/// Runs `plan` with randomness from `seed`, on a new paused runtime.
pub fn run(seed: u64, plan: Plan) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    rt.block_on(run_async(seed, plan))
}

async fn run_async(seed: u64, plan: Plan) -> Report {
    let started = Instant::now();
    let history = History::new();
    let net = SimNet::new(seed ^ 0x6e65_7477_6f72_6b21);
    let mut cluster = SimCluster::new(plan.shape, seed, net.clone());
    let mut failures = Vec::new();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in cluster.members() {
        if let Err(e) = cluster.start(i).await {
            failures.push(format!("n{} did not start: {e}", i + 1));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if !cluster.settle(FORM_LIMIT).await {
        failures.push(format!("the cluster did not form: {:?}", views(&cluster)));
    }
    if failures.is_empty() {
        create_buckets(&cluster, &plan, &mut failures).await;
    }
    if failures.is_empty() {
        let ids = Arc::new(AtomicU64::new(0));
        let kept = Kept::default();
        let load = Load {
            history: &history,
            ids: &ids,
            kept: &kept,
        };
        exercise(&mut cluster, &plan, load, &mut rng, plan.duration).await;
        converge(&cluster, plan.shape.n.into(), &history, &mut failures).await;
        // Past the tombstone grace: the reapers remove what every replica
        // holds. Then a second round of load and faults writes keys that
        // were reaped (a write after a reap must not reuse a dot), and
        // the replicas must again agree with nothing deleted come back.
        tokio::time::sleep(REAP_WAIT).await;
        history.note("after the reaps");
        let again = Plan {
            script: Vec::new(),
            ..plan.clone()
        };
        exercise(&mut cluster, &again, load, &mut rng, AFTER_REAP_LOAD).await;
        converge(&cluster, plan.shape.n.into(), &history, &mut failures).await;
        final_reads(&cluster, &plan, &history, &mut failures).await;
    }
    let entries = history.entries();
    let report = Report {
        seed,
        hash: history.hash(),
        ops: entries.len() as u64,
        acked: entries.iter().filter(|e| e.ok).count() as u64,
        faults: history.faults(),
        net: net.counts(),
        virtual_time: Instant::now() - started,
        failures,
        history: history.text(),
        plan,
    };
    for i in 0..cluster.machines.len() {
        cluster.crash(i, false);
    }
    report
}

async fn create_buckets(cluster: &SimCluster, plan: &Plan, failures: &mut Vec<String>) {
    let n1 = cluster.machines[0].id.clone();
    for w in &plan.workloads {
        let props = BucketProps {
            bucket_type: match w {
                Workload::Register => kvorum_client::BucketType::Register,
                Workload::Counter => kvorum_client::BucketType::Counter,
                Workload::Set => kvorum_client::BucketType::Set,
                Workload::Range => kvorum_client::BucketType::Register,
            },
            n: plan.shape.n,
            r: plan.shape.r,
            w: plan.shape.w,
            default_ttl_ms: None,
        };
        let req = Request::CreateBucket {
            name: w.bucket().into(),
            props: props.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match cluster
                .net
                .client_call(&n1, req.clone(), Duration::from_secs(5))
                .await
            {
                Some(Response::BucketCreated) => break,
                other if Instant::now() > deadline => {
                    failures.push(format!("bucket {} not created: {other:?}", w.bucket()));
                    return;
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// What the clients of every round of a run share.
#[derive(Clone, Copy)]
struct Load<'a> {
    history: &'a History,
    ids: &'a Arc<AtomicU64>,
    kept: &'a Kept,
}

/// Clients and nemesis for the plan's duration; then every fault healed.
async fn exercise(
    cluster: &mut SimCluster,
    plan: &Plan,
    load: Load<'_>,
    rng: &mut StdRng,
    duration: Duration,
) {
    let Load { history, ids, kept } = load;
    let stop = Arc::new(AtomicBool::new(false));
    let nodes: Vec<_> = cluster.machines.iter().map(|m| m.id.clone()).collect();
    let mut clients = Vec::new();
    for id in 0..plan.clients {
        let client = Client {
            id,
            net: cluster.net.clone(),
            nodes: nodes.clone(),
            keys: plan.keys,
            workloads: plan.workloads.clone(),
            rng: Client::seeded(rng.random()),
            history: history.clone(),
            ids: ids.clone(),
            stop: stop.clone(),
            think: plan.think,
            kept: kept.clone(),
        };
        clients.push(tokio::spawn(client.run()));
    }
    let mut nemesis = Nemesis::new(
        plan.faults.clone(),
        StdRng::seed_from_u64(rng.random()),
        history.clone(),
    );
    let (begin, end) = (Instant::now(), Instant::now() + duration);
    if plan.script.is_empty() {
        while Instant::now() < end {
            tokio::time::sleep(plan.nemesis_every).await;
            nemesis.step(cluster).await;
        }
    } else {
        for (at, action) in &plan.script {
            tokio::time::sleep_until(begin + *at).await;
            nemesis.act(cluster, action).await;
        }
        tokio::time::sleep_until(end).await;
    }
    nemesis.heal(cluster, CONVERGE_LIMIT).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
}

/// Waits until the replicas converged: equal trees between every pair, no
/// hint left, and no key held by a node that does not own it.
async fn converge(cluster: &SimCluster, n: usize, history: &History, failures: &mut Vec<String>) {
    let deadline = Instant::now() + CONVERGE_LIMIT;
    loop {
        let why = divergence(cluster, n);
        match why {
            None => {
                history.note("converged");
                trees_match_storage(cluster, failures);
                return;
            }
            Some(why) if Instant::now() >= deadline => {
                failures.push(format!("replicas did not converge: {why}"));
                return;
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Every running node's anti-entropy trees and key index equal a build
/// from scratch of what its storage holds: however a crash cut a write
/// stream (the trees are built from storage at every start, and kept by
/// each commit's hook after), they are not left wrong.
fn trees_match_storage(cluster: &SimCluster, failures: &mut Vec<String>) {
    for m in &cluster.machines {
        let Some(n) = m.node.as_ref() else {
            continue;
        };
        match n.aae_trees_agree_with_storage() {
            Ok(true) => {}
            Ok(false) => failures.push(format!(
                "{}'s anti-entropy trees differ from a rebuild from its storage",
                n.id()
            )),
            Err(e) => failures.push(format!("{}: reading its storage: {e}", n.id())),
        }
    }
}

/// Why the replicas differ, if they do.
fn divergence(cluster: &SimCluster, n: usize) -> Option<String> {
    if !cluster.settled() {
        return Some(format!(
            "a member is down or a ring change is under way: {:?}",
            views(cluster)
        ));
    }
    if let Some(why) = cluster.trees_differ() {
        return Some(why);
    }
    let nodes: Vec<_> = cluster
        .members()
        .into_iter()
        .filter_map(|i| cluster.machines[i].node.as_ref())
        .collect();
    for node in &nodes {
        if node.hints_pending() > 0 {
            return Some(format!(
                "{} holds {} hints",
                node.id(),
                node.hints_pending()
            ));
        }
    }
    // A key a node holds and no longer owns is handed to its owners by the
    // node's next handoff pass: until then it is not replicated where reads
    // look, and the owners may lack it (an unacknowledged write that
    // reached only a former owner; swarm seed 5184, whose final reads
    // through different nodes differed as the pass ran between them).
    for node in &nodes {
        let view = node.view();
        let keys = match node.data_keys() {
            Ok(k) => k,
            Err(e) => return Some(format!("{}: reading its keys: {e}", node.id())),
        };
        let foreign = keys
            .iter()
            .filter(|k| {
                !view
                    .read_ring
                    .item_preference_list(k, n)
                    .contains(node.id())
            })
            .count();
        if foreign > 0 {
            return Some(format!(
                "{} holds {foreign} keys it does not own",
                node.id()
            ));
        }
    }
    None
}

/// Reads every key through every node at R = N, checks that they agree,
/// and runs the checkers on the first node's reads.
async fn final_reads(
    cluster: &SimCluster,
    plan: &Plan,
    history: &History,
    failures: &mut Vec<String>,
) {
    let entries = history.entries();
    for &w in &plan.workloads {
        let mut per_node: Vec<(NodeId, BTreeMap<u32, Final>)> = Vec::new();
        for m in cluster.members().into_iter().map(|i| &cluster.machines[i]) {
            let mut finals = BTreeMap::new();
            for key in 0..plan.keys {
                match read_final(cluster, &m.id, w, key, plan.shape.n).await {
                    Some(v) => {
                        finals.insert(key, v);
                    }
                    None => {
                        failures.push(format!("final read of {w:?} k{key} via {} failed", m.id))
                    }
                }
            }
            per_node.push((m.id.clone(), finals));
        }
        if let Some((first_id, first)) = per_node.first() {
            // The first key read differently, and through which nodes.
            let differ = per_node.iter().find_map(|(id, f)| {
                (0..plan.keys)
                    .find(|k| f.get(k) != first.get(k))
                    .map(|k| (id, k, f.get(&k)))
            });
            if let Some((id, k, v)) = differ {
                failures.push(format!(
                    "{w:?}: final reads differ between nodes: k{k} via {first_id} {:?}, via {id} {v:?}",
                    first.get(&k)
                ));
            }
            history.note(&format!("final {w:?} {first:?}"));
            failures.extend(check::check_after_wipe(
                w,
                &entries,
                first,
                history.first_wipe_ms(),
            ));
        }
    }
}

async fn read_final(
    cluster: &SimCluster,
    node: &kvorum_ring::NodeId,
    w: Workload,
    key: u32,
    n: u8,
) -> Option<Final> {
    let options = ReadOptions::r(n);
    if w == Workload::Range {
        return scan_final(cluster, node, key, options).await;
    }
    let (bucket, key_bytes) = (w.bucket().to_string(), key_name(key));
    let req = match w {
        Workload::Register => Request::Get {
            bucket,
            key: key_bytes,
            options,
            at_least: None,
        },
        _ => Request::Fetch {
            bucket,
            key: key_bytes,
            options,
            at_least: None,
        },
    };
    for _ in 0..5 {
        let answer = cluster
            .net
            .client_call(node, req.clone(), Duration::from_secs(5))
            .await;
        let v = match answer {
            Some(Response::NotFound { .. }) => Final::Absent,
            Some(Response::Value { siblings, .. }) => {
                let mut s: Vec<(u64, Vec<u64>)> =
                    siblings.iter().filter_map(|v| decode_write(v)).collect();
                s.sort();
                Final::Siblings(s)
            }
            Some(Response::Data { value, .. }) => match value {
                DataValue::Counter(c) => Final::Count(c),
                DataValue::Set(s) => Final::Elems(decode_elems(&s)),
                DataValue::Map(_) => return None,
            },
            _ => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        return Some(v);
    }
    None
}

/// Every item of a range partition, read at `options` in pages of 7.
async fn scan_final(
    cluster: &SimCluster,
    node: &kvorum_ring::NodeId,
    key: u32,
    options: ReadOptions,
) -> Option<Final> {
    let mut q = RangeQuery::new(Workload::Range.bucket(), &key_name(key))
        .limit(7)
        .options(options);
    let mut all = BTreeSet::new();
    let mut tries = 0;
    loop {
        let answer = cluster
            .net
            .client_call(node, Request::Range(q.clone()), Duration::from_secs(5))
            .await;
        match answer {
            Some(Response::Page(page)) => {
                all.extend(page.items.iter().filter_map(|i| decode_id(&i.sort)));
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => return Some(Final::Elems(all)),
                }
            }
            _ if tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return None,
        }
    }
}

/// Each running node's view: members and their states, whether a change
/// is under way (for failure messages).
fn views(cluster: &SimCluster) -> Vec<String> {
    cluster
        .machines
        .iter()
        .filter_map(|m| m.node.as_ref().map(|n| (m, n)))
        .map(|(m, n)| {
            let v = n.view();
            let states: Vec<String> = v
                .members
                .values()
                .map(|m| format!("{}:{}", m.id, m.state.as_str()))
                .collect();
            format!(
                "{} ({:?}): [{}] transition {} prev {}",
                n.id(),
                m.status,
                states.join(" "),
                v.in_transition(),
                v.prev_read_ring.is_some()
            )
        })
        .collect()
}
