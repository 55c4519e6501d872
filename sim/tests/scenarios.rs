//! Scenarios the fault suite cannot time: each drives a simulated cluster
//! through one interleaving, on virtual time, and checks what clients read.
//! One also runs with a bug planted, and must then fail. Planted bugs are
//! process-wide, so the tests here run one at a time.

/// The allocator of the node binary (node/src/main.rs): the simulated
/// nodes allocate as the real ones do, and the heavy load runs faster
/// (docs/testing.md, "Speed").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kvorum_client::proto::{CausalContext, ReadOptions, Request, Response, WriteOptions};
use kvorum_client::{BucketProps, BucketType};
use kvorum_node::cluster::member::MemberState;
use kvorum_node::rpc::peer::PeerRequest;
use kvorum_node::util::plant::{plant, Bug};
use kvorum_ring::NodeId;
use kvorum_sim::cluster::{Shape, SimCluster, Status};
use kvorum_sim::history::Workload;
use kvorum_sim::nemesis::Action;
use kvorum_sim::net::SimNet;
use kvorum_sim::{run, Plan};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::{sleep, Instant};

const KEYS: u32 = 40;

/// `nodes` founders and `spares` machines that may join, N = 3, R = W = 2.
fn shape(nodes: usize, spares: usize) -> Shape {
    Shape {
        nodes,
        spares,
        n: 3,
        r: 2,
        w: 2,
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// One scenario at a time (a planted bug is process-wide).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with `bug` planted, and removes it even if `f` panics.
fn with_planted<T>(bug: Bug, f: impl FnOnce() -> T) -> T {
    struct Unplant;
    impl Drop for Unplant {
        fn drop(&mut self) {
            plant(None);
        }
    }
    plant(Some(bug));
    let _unplant = Unplant;
    f()
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Starts the founders, waits for them, makes the register bucket.
async fn formed(shape: Shape, seed: u64) -> SimCluster {
    let mut c = SimCluster::new(shape, seed, SimNet::new(seed));
    for i in 0..shape.nodes {
        c.start(i).await.unwrap();
        sleep(Duration::from_millis(300)).await;
    }
    assert!(c.settle(Duration::from_secs(60)).await, "the cluster forms");
    let create = Request::CreateBucket {
        name: "reg".into(),
        props: BucketProps::new(BucketType::Register).into(),
    };
    let n1 = c.machines[0].id.clone();
    let made = c.net.client_call(&n1, create, Duration::from_secs(5)).await;
    assert!(matches!(made, Some(Response::BucketCreated)), "{made:?}");
    c
}

fn key(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// Writes `v{k}` to every key through machine `via`; each must be
/// acknowledged.
async fn write_all(c: &SimCluster, via: usize) {
    write_keys(c, via, 0..KEYS).await
}

/// Writes `v{k}` to each of `keys` through machine `via` (the bucket's
/// W = 2); each must be acknowledged.
async fn write_keys(c: &SimCluster, via: usize, keys: impl IntoIterator<Item = u32>) {
    let node = c.machines[via].id.clone();
    for k in keys {
        let put = Request::Put {
            bucket: "reg".into(),
            key: key(k),
            value: format!("v{k}").into_bytes(),
            context: CausalContext::empty(),
            options: WriteOptions::default(),
        };
        let r = c.net.client_call(&node, put, Duration::from_secs(5)).await;
        assert!(matches!(r, Some(Response::Written { .. })), "k{k}: {r:?}");
    }
}

/// Keys whose read through machine `via` (R = 2) misses its value.
async fn missing_through(c: &SimCluster, via: usize) -> Vec<u32> {
    missing_among(c, via, 0..KEYS).await
}

/// Which of `keys` a read through machine `via` (R = 2) misses the value of.
async fn missing_among(
    c: &SimCluster,
    via: usize,
    keys: impl IntoIterator<Item = u32>,
) -> Vec<u32> {
    missing_at(c, via, keys, 2).await
}

/// Which of `keys` a read through machine `via` at R = `r` misses the
/// value of.
async fn missing_at(
    c: &SimCluster,
    via: usize,
    keys: impl IntoIterator<Item = u32>,
    r: u8,
) -> Vec<u32> {
    let node = c.machines[via].id.clone();
    let mut missing = Vec::new();
    for k in keys {
        let get = Request::Get {
            bucket: "reg".into(),
            key: key(k),
            options: ReadOptions::r(r),
            at_least: None,
        };
        let want = format!("v{k}").into_bytes();
        match c.net.client_call(&node, get, Duration::from_secs(5)).await {
            Some(Response::Value { siblings, .. }) if siblings.contains(&want) => {}
            _ => missing.push(k),
        }
    }
    missing
}

/// Waits until machines `who` see machine `joined` up, with no ring change
/// pending; false after `limit`.
async fn seen_up(c: &SimCluster, who: &[usize], joined: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let id = c.machines[joined].id.clone();
    while Instant::now() < deadline {
        let done = who.iter().all(|&i| {
            c.machines[i].node.as_ref().is_some_and(|n| {
                let v = n.view();
                v.members
                    .get(&id)
                    .is_some_and(|m| m.state == MemberState::Up)
                    && !v.in_transition()
                    && v.prev_read_ring.is_none()
            })
        });
        if done {
            return true;
        }
        sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A coordinator that heard nothing while a join completed (a gossip round
/// behind, or more) reads every key through the ring it knows, right
/// after the network heals and before any gossip reaches it.
#[test]
fn a_coordinator_behind_reads_across_a_completed_change() {
    let _one = serial();
    paused().block_on(async {
        let shape = shape(4, 1);
        let mut c = formed(shape, 11).await;
        write_all(&c, 1).await;
        // n1 hears nothing from now on (its own messages still go out).
        let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
        c.net.partition(&ids[1..], &ids[..1], true);
        c.machines[4].status = Status::Member;
        c.start(4).await.unwrap();
        let completed = seen_up(&c, &[1, 2, 3, 4], 4, Duration::from_secs(120)).await;
        c.net.heal();
        let n1_view = c.machines[0].node.as_ref().unwrap().view();
        assert!(
            n1_view
                .members
                .get(&ids[4])
                .is_none_or(|m| m.state != MemberState::Up),
            "n1 must still be behind when it reads"
        );
        let missing = missing_through(&c, 0).await;
        assert!(
            missing.is_empty(),
            "through n1, behind (change completed elsewhere: {completed}), keys {missing:?} \
             missed their acknowledged values"
        );
    });
}

/// A node joins while it hears nobody (a one-way partition: its own
/// messages go out). With no member holding data in its view, it must not
/// take "nothing to stream" for "streamed": found by swarm seed 119, where
/// such a node went up empty and R = 1 scans read it.
#[test]
fn a_node_joining_behind_a_one_way_partition_streams_before_it_is_up() {
    let _one = serial();
    paused().block_on(async {
        let mut c = formed(shape(3, 1), 13).await;
        write_all(&c, 0).await;
        let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
        c.net.partition(&ids[..3], &ids[3..], true);
        c.machines[3].status = Status::Member;
        c.start(3).await.unwrap();
        sleep(Duration::from_secs(10)).await;
        assert_eq!(
            c.own_state(3),
            Some(MemberState::Joining),
            "n4 heard nobody, so it has streamed nothing"
        );
        c.net.heal();
        assert!(
            seen_up(&c, &[0, 1, 2, 3], 3, Duration::from_secs(120)).await,
            "the join completes once the network heals"
        );
        let missing = missing_through(&c, 3).await;
        assert!(missing.is_empty(), "through n4: {missing:?}");
        let held = c.machines[3].node.as_ref().unwrap().data_keys().unwrap();
        assert!(
            held.len() as u32 >= KEYS / 2,
            "n4 holds its share of the {KEYS} keys, not {}",
            held.len()
        );
    });
}

/// A node stopped before a join restarts with its older member list and
/// coordinates reads at once.
#[test]
fn a_node_restarted_with_an_older_member_list_reads_every_value() {
    let _one = serial();
    paused().block_on(async {
        let shape = shape(4, 1);
        let mut c = formed(shape, 12).await;
        write_all(&c, 1).await;
        c.stop(3).await;
        c.machines[4].status = Status::Member;
        c.start(4).await.unwrap();
        let completed = seen_up(&c, &[0, 1, 2, 4], 4, Duration::from_secs(120)).await;
        c.start(3).await.unwrap();
        let missing = missing_through(&c, 3).await;
        assert!(
            missing.is_empty(),
            "through n4, restarted with an older list (join completed: {completed}), keys \
             {missing:?} missed their acknowledged values"
        );
        assert!(c.settle(Duration::from_secs(120)).await, "the five settle");
        for via in 0..5 {
            assert!(
                missing_through(&c, via).await.is_empty(),
                "through n{}",
                via + 1
            );
        }
    });
}

/// The plan of the two scripted scenarios: clients on every workload for
/// 30 virtual seconds.
fn scripted(nodes: usize, spares: usize, script: Vec<(Duration, Action)>) -> Plan {
    Plan {
        shape: Shape {
            nodes,
            spares,
            n: 3,
            r: 2,
            w: 2,
        },
        clients: 4,
        keys: 6,
        workloads: Workload::ALL.to_vec(),
        think: Duration::from_millis(50),
        faults: Vec::new(),
        nemesis_every: Duration::from_secs(1),
        duration: Duration::from_secs(30),
        script,
    }
}

/// A join, a leave and a removal asked for at the same instant, under
/// load: the cluster serializes them, and no acknowledged write is lost.
#[test]
fn concurrent_topology_changes_lose_nothing() {
    let _one = serial();
    let s = |secs| Duration::from_secs(secs);
    let plan = scripted(
        5,
        1,
        vec![
            (s(3), Action::Join(5)),
            (s(3), Action::Leave(4)),
            (s(3), Action::Remove(3)),
        ],
    );
    let r = run(21, plan);
    assert!(r.failures.is_empty(), "{:#?}\n{}", r.failures, r.history);
    assert!(r.acked > 100, "the clients did work: {}", r.acked);
}

/// Hints held for a node race its removal: the node is killed under load
/// (writes for it become hints), then removed while the hints wait.
#[test]
fn hint_delivery_racing_a_removal_loses_nothing() {
    let _one = serial();
    let s = |secs| Duration::from_secs(secs);
    let plan = scripted(
        4,
        0,
        vec![
            (s(2), Action::Crash(3, false)),
            (s(3), Action::Restart(3)),
            (s(3), Action::Remove(3)),
        ],
    );
    let r = run(22, plan);
    assert!(r.failures.is_empty(), "{:#?}\n{}", r.failures, r.history);
    assert!(r.acked > 100, "the clients did work: {}", r.acked);
}

/// Writes made right after a join completed, read at once by a coordinator
/// that heard nothing of the join: the joint quorum wrote them to the
/// previous ring's replicas too, where that coordinator reads. Returns the
/// keys whose reads missed their values.
async fn writes_after_a_change_read_by_a_coordinator_behind(seed: u64) -> Vec<u32> {
    let shape = shape(4, 1);
    let mut c = formed(shape, seed).await;
    let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
    c.net.partition(&ids[1..], &ids[..1], true);
    c.machines[4].status = Status::Member;
    c.start(4).await.unwrap();
    // The others see n5 up; they may still keep the previous ring for
    // reads (n1 has not seen the change).
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let joined = [1, 2, 3, 4].iter().all(|&i| {
            let v = c.machines[i].node.as_ref().unwrap().view();
            v.members
                .get(&ids[4])
                .is_some_and(|m| m.state == MemberState::Up)
                && !v.in_transition()
        });
        if joined {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    write_all(&c, 1).await;
    c.net.heal();
    missing_through(&c, 0).await
}

#[test]
fn writes_after_a_change_are_read_by_a_coordinator_behind() {
    let _one = serial();
    let missing = paused().block_on(writes_after_a_change_read_by_a_coordinator_behind(13));
    assert!(missing.is_empty(), "keys {missing:?} missed their values");
}

/// The storage key of register key `k` (the item of partition `k` with
/// the empty sort key).
fn storage_key(k: &[u8]) -> Vec<u8> {
    kvorum_ring::item::storage_key("reg", k, b"")
}

/// A key written five times and deleted through n1, reaped on n1 while
/// the other replicas miss the removal (every `Reap` to them is dropped),
/// then written again through n1: the new write must survive the
/// tombstone the others still hold. Returns whether it did.
async fn a_write_after_a_reap_survives(seed: u64) -> bool {
    let shape = shape(3, 0);
    let c = formed(shape, seed).await;
    let n1 = c.machines[0].id.clone();
    let k = key(0);
    let call = |req: Request| {
        let (net, n1) = (c.net.clone(), n1.clone());
        async move { net.client_call(&n1, req, Duration::from_secs(5)).await }
    };
    let get = || Request::Get {
        bucket: "reg".into(),
        key: k.clone(),
        options: ReadOptions::r(3),
        at_least: None,
    };
    for i in 0..5 {
        let put = Request::Put {
            bucket: "reg".into(),
            key: k.clone(),
            value: format!("old{i}").into_bytes(),
            context: CausalContext::empty(),
            options: WriteOptions::w(3),
        };
        assert!(matches!(call(put).await, Some(Response::Written { .. })));
    }
    let Some(Response::Value { context, .. }) = call(get()).await else {
        panic!("the five writes read back");
    };
    let delete = Request::Delete {
        bucket: "reg".into(),
        key: k.clone(),
        context,
        options: WriteOptions::w(3),
    };
    assert!(matches!(call(delete).await, Some(Response::Written { .. })));
    // Every removal sent to a node other than n1 is lost.
    let keep: NodeId = n1.clone();
    c.net.drop_requests(Some(Arc::new(
        move |_: &NodeId, to: &NodeId, req: &PeerRequest| {
            matches!(req, PeerRequest::Reap(_)) && *to != keep
        },
    )));
    let skey = storage_key(&k);
    let node1 = c.machines[0].node.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while node1.data_keys().unwrap().contains(&skey) {
        assert!(Instant::now() < deadline, "n1 reaps the tombstone");
        sleep(Duration::from_millis(50)).await;
    }
    let held_elsewhere = c.machines[1..].iter().any(|m| {
        m.node
            .as_ref()
            .unwrap()
            .data_keys()
            .unwrap()
            .contains(&skey)
    });
    assert!(held_elsewhere, "another replica still holds the tombstone");
    let fresh = Request::Put {
        bucket: "reg".into(),
        key: k.clone(),
        value: b"fresh".to_vec(),
        context: CausalContext::empty(),
        options: WriteOptions::default(),
    };
    assert!(matches!(call(fresh).await, Some(Response::Written { .. })));
    c.net.drop_requests(None);
    // Anti-entropy brings the replicas together.
    sleep(Duration::from_secs(30)).await;
    match call(get()).await {
        Some(Response::Value { siblings, .. }) => siblings.contains(&b"fresh".to_vec()),
        _ => false,
    }
}

/// The replicas of storage key `skey` (N = 3) in machine 1's view, the
/// first replica first.
fn replicas_of(c: &SimCluster, skey: &[u8]) -> Vec<NodeId> {
    let view = c.machines[0].node.as_ref().unwrap().view();
    view.read_ring.item_preference_list(skey, 3)
}

/// The moment an early reap needs: a key deleted while its last replica
/// hears no write and no anti-entropy (it keeps the old value), past the
/// grace; then the network heals and anti-entropy runs. The first replica
/// must not reap while the last holds the old value, or anti-entropy
/// copies that value back. Returns what a read at R = 3 sees in the end.
async fn a_replica_that_missed_a_delete_past_the_grace(seed: u64) -> Option<Response> {
    use kvorum_node::rpc::peer::ReplicaRequest;
    let c = formed(shape(3, 0), seed).await;
    let ids: Vec<NodeId> = c.machines.iter().map(|m| m.id.clone()).collect();
    let k = key(0);
    let skey = storage_key(&k);
    let owners = replicas_of(&c, &skey);
    let via = ids.iter().position(|i| *i == owners[0]).unwrap();
    let lag = owners[2].clone();
    let call = |req: Request| {
        let (net, to) = (c.net.clone(), ids[via].clone());
        async move { net.client_call(&to, req, Duration::from_secs(5)).await }
    };
    let put = Request::Put {
        bucket: "reg".into(),
        key: k.clone(),
        value: b"old".to_vec(),
        context: CausalContext::empty(),
        options: WriteOptions::w(3),
    };
    assert!(matches!(call(put).await, Some(Response::Written { .. })));
    let get = |r: u8| Request::Get {
        bucket: "reg".into(),
        key: k.clone(),
        options: ReadOptions::r(r),
        at_least: None,
    };
    let Some(Response::Value { context, .. }) = call(get(3)).await else {
        panic!("the write reads back");
    };
    // The last replica gets no write, repair or anti-entropy (reads go on).
    let cut = lag.clone();
    c.net.drop_requests(Some(Arc::new(
        move |from: &NodeId, to: &NodeId, req: &PeerRequest| match req {
            PeerRequest::Replica(ReplicaRequest::Read { .. }) => false,
            PeerRequest::Replica(_) | PeerRequest::Aae(_) => *to == cut || *from == cut,
            _ => false,
        },
    )));
    let delete = Request::Delete {
        bucket: "reg".into(),
        key: k.clone(),
        context,
        options: WriteOptions::w(2),
    };
    assert!(matches!(call(delete).await, Some(Response::Written { .. })));
    sleep(Duration::from_secs(60)).await; // the grace is 16 s
    c.net.drop_requests(None);
    sleep(Duration::from_secs(60)).await;
    call(get(3)).await
}

/// The end read of a reap scenario: the key reads as not found.
fn stays_deleted(end: Option<Response>) {
    assert!(
        matches!(end, Some(Response::NotFound { .. })),
        "the deleted value came back: {end:?}"
    );
}

#[test]
fn a_replica_that_missed_a_delete_holds_back_the_reap() {
    let _one = serial();
    stays_deleted(paused().block_on(a_replica_that_missed_a_delete_past_the_grace(15)));
}

#[test]
fn a_tombstone_reaped_early_planted_is_found() {
    let _one = serial();
    let end = with_planted(Bug::EarlyReap, || {
        paused().block_on(a_replica_that_missed_a_delete_past_the_grace(15))
    });
    assert!(
        matches!(end, Some(Response::Value { .. })),
        "with the early reap planted the deleted value must come back: {end:?}"
    );
}

/// A node that no longer owns a key holds a copy of it it cannot hand
/// off (its handoff requests are lost); the key is deleted. The
/// owners must not reap the tombstone while that member may push its
/// copy: after the network heals, the deleted value must stay deleted.
/// Found by swarm seed 9948, where the reaper asked the key's replicas
/// only. Returns what a read at R = 3 sees in the end, once every node
/// has let the key go (the reap is held back, not blocked for good).
async fn a_copy_not_handed_off_after_a_delete(seed: u64) -> Option<Response> {
    use kvorum_node::rpc::call::ask;
    use kvorum_node::rpc::peer::{ReplicaRequest, ReplicaResponse};
    let c = formed(shape(4, 0), seed).await;
    let ids: Vec<NodeId> = c.machines.iter().map(|m| m.id.clone()).collect();
    let k = key(0);
    let skey = storage_key(&k);
    let owners = replicas_of(&c, &skey);
    let via = ids.iter().position(|i| *i == owners[0]).unwrap();
    let stray = ids.iter().find(|i| !owners.contains(i)).unwrap().clone();
    let call = |req: Request| {
        let (net, to) = (c.net.clone(), ids[via].clone());
        async move { net.client_call(&to, req, Duration::from_secs(5)).await }
    };
    let put = Request::Put {
        bucket: "reg".into(),
        key: k.clone(),
        value: b"old".to_vec(),
        context: CausalContext::empty(),
        options: WriteOptions::w(3),
    };
    assert!(matches!(call(put).await, Some(Response::Written { .. })));
    // The stray's handoff requests are lost from now on (it still answers
    // reads: the reaper's read finds its copy), and it gets the key's state
    // as a former owner would (a late hint, a write from a coordinator
    // behind).
    let blocked = stray.clone();
    c.net.drop_requests(Some(Arc::new(
        move |from: &NodeId, _: &NodeId, req: &PeerRequest| {
            *from == blocked && matches!(req, PeerRequest::Transfer(_))
        },
    )));
    let read = ReplicaRequest::Read { key: skey.clone() };
    let t = Duration::from_secs(5);
    let state = match ask(&*c.net.transport(&owners[0]), &owners[1], read, t).await {
        Ok(ReplicaResponse::State(Some(state))) => state,
        other => panic!("the owner holds the key: {other:?}"),
    };
    let write = ReplicaRequest::Write {
        key: skey.clone(),
        state,
    };
    let stored = ask(&*c.net.transport(&stray), &stray, write, t).await;
    assert!(matches!(stored, Ok(ReplicaResponse::Stored)), "{stored:?}");
    let get = || Request::Get {
        bucket: "reg".into(),
        key: k.clone(),
        options: ReadOptions::r(3),
        at_least: None,
    };
    let Some(Response::Value { context, .. }) = call(get()).await else {
        panic!("the write reads back");
    };
    let delete = Request::Delete {
        bucket: "reg".into(),
        key: k.clone(),
        context,
        options: WriteOptions::w(3),
    };
    assert!(matches!(call(delete).await, Some(Response::Written { .. })));
    // Well past the grace (16 s here) while the stray cannot hand off.
    sleep(Duration::from_secs(60)).await;
    c.net.drop_requests(None);
    sleep(Duration::from_secs(60)).await;
    // Once the stray handed its copy off, the tombstone goes everywhere.
    for m in &c.machines {
        let keys = m.node.as_ref().unwrap().data_keys().unwrap();
        assert!(!keys.contains(&skey), "{} still holds the key", m.id);
    }
    call(get()).await
}

#[test]
fn a_copy_not_handed_off_holds_back_the_reap() {
    let _one = serial();
    stays_deleted(paused().block_on(a_copy_not_handed_off_after_a_delete(14)));
}

#[test]
fn a_write_after_a_reap_survives_the_tombstone_left_elsewhere() {
    let _one = serial();
    assert!(paused().block_on(a_write_after_a_reap_survives(14)));
}

#[test]
fn a_dot_reused_after_a_reap_planted_is_found() {
    let _one = serial();
    let survived = with_planted(Bug::DotReuse, || {
        paused().block_on(a_write_after_a_reap_survives(14))
    });
    assert!(
        !survived,
        "with the dot floor gone, the write's reused dot must be swallowed"
    );
}

/// What a filter of [`SimNet::drop_requests`] drops in the split-quorum
/// scenario, per storage key: writes to `lost_to`, and the behind
/// coordinator's reads from `hidden`.
#[derive(Default)]
struct SplitDrops {
    behind: Option<NodeId>,
    /// Gossip to and from the behind coordinator is dropped.
    gossip: bool,
    /// Pings to and from the behind coordinator are dropped: the others
    /// count it as down while it serves.
    pings: bool,
    /// Range streams are held back (the join cannot complete).
    streams: bool,
    lost_to: std::collections::HashMap<Vec<u8>, NodeId>,
    hidden: std::collections::HashMap<Vec<u8>, NodeId>,
}

impl SplitDrops {
    fn drops(&self, from: &NodeId, to: &NodeId, req: &PeerRequest) -> bool {
        use kvorum_node::rpc::peer::{ClusterRequest, ReplicaRequest, TransferRequest};
        let behind = self.behind.as_ref();
        match req {
            PeerRequest::Cluster(ClusterRequest::Gossip { .. }) => {
                self.gossip && (Some(from) == behind || Some(to) == behind)
            }
            PeerRequest::Cluster(ClusterRequest::Ping) => {
                self.pings && (Some(from) == behind || Some(to) == behind)
            }
            PeerRequest::Transfer(TransferRequest::Stream { .. }) => self.streams,
            // No anti-entropy: it would copy the writes around meanwhile.
            PeerRequest::Aae(_) => !self.lost_to.is_empty(),
            PeerRequest::Replica(
                ReplicaRequest::Write { key, .. }
                | ReplicaRequest::HintedWrite { key, .. }
                | ReplicaRequest::Repair { key, .. },
            ) => self.lost_to.get(key) == Some(to),
            PeerRequest::Replica(ReplicaRequest::Read { key, .. }) => {
                Some(from) == behind && self.hidden.get(key) == Some(to)
            }
            _ => false,
        }
    }
}

/// The split-quorum moment (`Bug::SplitQuorum`): n5 joins while n1 sees
/// the join begin and then hears no more gossip, so n1 still reads the
/// previous ring once the others run on the new one. A write through n5
/// to a key the join moved (n1 a replica on neither ring) loses its copy
/// to one replica both rings share, so it reaches only W = 2 replicas of
/// the new ring; n1 then reads the previous ring's replicas without the
/// other shared one. The joint quorum wrote the key to the previous ring's
/// third replica too, where n1 finds it; without the previous ring's
/// group, nothing n1 reads holds it. Returns the keys n1's reads missed.
async fn a_write_on_w_of_the_new_ring_read_through_the_old(seed: u64) -> Vec<u32> {
    split_read_through_the_old(seed, false).await
}

/// The split-quorum moment, with the coordinator behind also counted as
/// down by the others (its pings are lost both ways; `down`): a member
/// that serves on a ring the others have left, while their failure
/// detector says it is gone. The others may not drop the previous ring's
/// group until it has seen the change (found by swarm seed 278: a node
/// restarted after a power loss, not yet seen up by the others, whose
/// gossip then stalled, read at R = 1 on the old ring what a writer that
/// had dropped the previous ring's group never sent it).
async fn split_read_through_the_old(seed: u64, down: bool) -> Vec<u32> {
    let mut c = formed(shape(4, 1), seed).await;
    let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
    let drops = Arc::new(Mutex::new(SplitDrops {
        behind: Some(ids[0].clone()),
        streams: true,
        ..Default::default()
    }));
    let filter = drops.clone();
    c.net.drop_requests(Some(Arc::new(
        move |from: &NodeId, to: &NodeId, req: &PeerRequest| {
            filter.lock().unwrap().drops(from, to, req)
        },
    )));
    c.machines[4].status = Status::Member;
    c.start(4).await.unwrap();
    // n1 has seen the join begin (the streams' barrier needs it); then it
    // hears nothing more, and the join completes.
    let node = |i: usize| c.machines[i].node.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = node(1).view();
        let n1_seen = v
            .members
            .get(&ids[0])
            .is_some_and(|m| m.seen_view == v.hash);
        if v.in_transition() && n1_seen && node(0).view().hash == v.hash {
            break;
        }
        assert!(Instant::now() < deadline, "n1 sees the join begin");
        sleep(Duration::from_millis(10)).await;
    }
    {
        let mut d = drops.lock().unwrap();
        d.gossip = true;
        d.pings = down;
        d.streams = false;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = (1..5).all(|i| {
            let v = node(i).view();
            v.members
                .get(&ids[4])
                .is_some_and(|m| m.state == MemberState::Up)
                && v.prev_read_ring.is_some()
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the join completes without n1");
        sleep(Duration::from_millis(50)).await;
    }
    let view = node(4).view();
    let prev = view.prev_read_ring.clone().unwrap();
    let mut keys = Vec::new();
    {
        let mut d = drops.lock().unwrap();
        for k in 0..KEYS {
            let skey = storage_key(&key(k));
            let new = view.read_ring.item_preference_list(&skey, 3);
            let old = prev.item_preference_list(&skey, 3);
            if new == old || new.contains(&ids[0]) || old.contains(&ids[0]) {
                continue;
            }
            let shared: Vec<NodeId> = new.iter().filter(|n| old.contains(n)).cloned().collect();
            if shared.len() != 2 {
                continue;
            }
            d.lost_to.insert(skey.clone(), shared[0].clone());
            d.hidden.insert(skey, shared[1].clone());
            keys.push(k);
        }
    }
    assert!(
        keys.len() >= 3,
        "keys the join moved away from n1: {keys:?}"
    );
    if down {
        // Long enough for the others to count n1 as down (and to drop the
        // previous ring's group if they wrongly may).
        sleep(Duration::from_secs(10)).await;
    }
    write_keys(&c, 4, keys.iter().copied()).await;
    let missing = missing_among(&c, 0, keys.iter().copied()).await;
    let n1 = node(0).view();
    assert!(
        n1.members
            .get(&ids[4])
            .is_none_or(|m| m.state != MemberState::Up),
        "n1 must still be behind when it reads"
    );
    c.net.drop_requests(None);
    missing
}

#[test]
fn a_write_on_w_replicas_of_the_new_ring_is_read_through_the_old() {
    let _one = serial();
    let missing = paused().block_on(a_write_on_w_of_the_new_ring_read_through_the_old(15));
    assert!(missing.is_empty(), "keys {missing:?} missed their values");
}

#[test]
fn a_write_after_a_change_is_read_through_a_member_counted_as_down() {
    let _one = serial();
    let missing = paused().block_on(split_read_through_the_old(15, true));
    assert!(missing.is_empty(), "keys {missing:?} missed their values");
}

#[test]
fn quorums_split_by_a_ring_change_planted_are_found() {
    let _one = serial();
    let missing = with_planted(Bug::SplitQuorum, || {
        paused().block_on(a_write_on_w_of_the_new_ring_read_through_the_old(15))
    });
    assert!(
        !missing.is_empty(),
        "without the previous ring's group, the behind coordinator must miss writes"
    );
}

/// A crashed node leaves nothing behind: its engine (and the store,
/// trees and services that hold it) is freed once its tasks are gone. The
/// metrics' scrape collectors held the node's services, which hold the
/// registry: a cycle that kept every crashed node of a run in memory.
#[test]
fn a_crashed_node_is_freed() {
    let _one = serial();
    paused().block_on(async {
        let mut c = formed(shape(3, 0), 16).await;
        write_all(&c, 0).await;
        let engine = Arc::downgrade(&c.machines[1].engine);
        c.crash(1, false);
        sleep(Duration::from_secs(1)).await;
        assert!(
            engine.upgrade().is_none(),
            "the crashed node's engine is still held"
        );
    });
}

/// Waits until `done` holds; panics with `what` after `limit`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Two machines join at once. The second streams its ranges in, the
/// founders hear it, and it is killed before it goes up; then the first
/// finishes and completes the change. Found by swarm seed 3994: each
/// joiner went up on its own, so the first made a read ring (the founders
/// and itself) that no write ring of the change was. The keys that ring
/// gave it had been streamed to the other joiner, not to it, and an R = 1
/// read through it found nothing. Returns the keys such reads missed.
async fn one_of_two_joiners_killed_before_it_is_up(seed: u64) -> Vec<u32> {
    use kvorum_node::rpc::peer::TransferRequest;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = formed(shape(3, 2), seed).await;
    write_all(&c, 0).await;
    let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
    // The first joiner's streams wait until the second is down.
    let hold = Arc::new(AtomicBool::new(true));
    let (held, first) = (hold.clone(), ids[3].clone());
    c.net.drop_requests(Some(Arc::new(
        move |from: &NodeId, _to: &NodeId, req: &PeerRequest| {
            held.load(Ordering::SeqCst)
                && *from == first
                && matches!(req, PeerRequest::Transfer(TransferRequest::Stream { .. }))
        },
    )));
    for i in [3, 4] {
        c.machines[i].status = Status::Member;
        c.start(i).await.unwrap();
    }
    let (n4, n5) = (ids[3].clone(), ids[4].clone());
    until(
        Duration::from_secs(120),
        "the second joiner syncs, and the founders hear it",
        || {
            (0..3).all(|i| {
                let v = c.machines[i].node.as_ref().unwrap().view();
                v.members
                    .get(&n4)
                    .is_some_and(|m| m.state == MemberState::Joining)
                    && v.members
                        .get(&n5)
                        .is_some_and(|m| m.state == MemberState::Joining && m.synced_view == v.hash)
            })
        },
    )
    .await;
    c.crash(4, false);
    hold.store(false, Ordering::SeqCst);
    until(Duration::from_secs(120), "the first joiner goes up", || {
        let v = c.machines[3].node.as_ref().unwrap().view();
        v.members
            .get(&n4)
            .is_some_and(|m| m.state == MemberState::Up)
    })
    .await;
    let missing = missing_at(&c, 3, 0..KEYS, 1).await;
    c.net.drop_requests(None);
    missing
}

#[test]
fn a_joiner_goes_up_with_the_other_joiners_of_its_change() {
    let _one = serial();
    let missing = paused().block_on(one_of_two_joiners_killed_before_it_is_up(23));
    assert!(missing.is_empty(), "keys {missing:?} missed their values");
}

/// A member leaves; once it has seen its leave begin, its gossip is lost
/// both ways (it still serves, and answers pings). The change completes
/// without it, and values written then are read through it at R = 1,
/// where it reads its own copy on the ring it knows. Found by swarm seed
/// 5387: the others dropped the previous ring's write group at once (a
/// removed member was not among those that must see the change first),
/// so the leaver never got the writes it read for. Returns the keys its
/// reads missed.
async fn a_leaver_behind_reads_writes_made_after_it_left(seed: u64) -> Vec<u32> {
    use kvorum_client::proto::Request as R;
    let c = formed(shape(4, 0), seed).await;
    let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
    let leaver = ids[3].clone();
    let leave = R::Leave {
        node: leaver.as_str().into(),
    };
    let answer = c
        .net
        .client_call(&leaver, leave, Duration::from_secs(3))
        .await;
    assert!(matches!(answer, Some(Response::Accepted(_))), "{answer:?}");
    let node = |i: usize| c.machines[i].node.as_ref().unwrap();
    until(
        Duration::from_secs(60),
        "every member sees the leave begin",
        || {
            let v = node(3).view();
            v.in_transition() && (0..3).all(|i| node(i).view().hash == v.hash)
        },
    )
    .await;
    let stalled = leaver.clone();
    c.net.drop_requests(Some(Arc::new(
        move |from: &NodeId, to: &NodeId, req: &PeerRequest| {
            use kvorum_node::rpc::peer::ClusterRequest;
            matches!(req, PeerRequest::Cluster(ClusterRequest::Gossip { .. }))
                && (*from == stalled || *to == stalled)
        },
    )));
    until(
        Duration::from_secs(120),
        "the others complete the leave",
        || {
            (0..3).all(|i| {
                node(i)
                    .view()
                    .members
                    .get(&leaver)
                    .is_some_and(|m| m.state == MemberState::Removed)
            })
        },
    )
    .await;
    // Long enough for the others to settle, if they wrongly may.
    sleep(Duration::from_secs(5)).await;
    write_all(&c, 0).await;
    let behind = node(3).view();
    assert!(
        behind
            .members
            .get(&leaver)
            .is_some_and(|m| m.state == MemberState::Leaving),
        "the leaver must still be behind when it reads"
    );
    let missing = missing_at(&c, 3, 0..KEYS, 1).await;
    c.net.drop_requests(None);
    missing
}

#[test]
fn a_leaver_that_has_not_heard_it_left_reads_the_writes_made_since() {
    let _one = serial();
    let missing = paused().block_on(a_leaver_behind_reads_writes_made_after_it_left(24));
    assert!(missing.is_empty(), "keys {missing:?} missed their values");
}
