//! Fuzzing on stable Rust: arbitrary and mutated inputs to every decoder
//! a node runs on bytes it did not make (client frames, peer frames of every
//! subsystem, stored records, causal contexts, versions, the gossiped access
//! list and context secrets), and adversarial states to every merge.
//!
//! Each case checks:
//! - **no panic** (every decoder and merge is run under `catch_unwind`);
//! - **no allocation beyond the input's bound**: a counting global allocator
//!   measures the most memory a decode holds at once, which must stay
//!   within `ALLOC_PER_INPUT_BYTE` times the input plus `ALLOC_SLACK` (serde
//!   preallocates at most 1 MiB of elements for a length prefix it cannot
//!   trust: a hash map table of about 2.4 MiB, found by this harness);
//! - **the merge laws** (commutative, associative, idempotent) on valid
//!   states, compared by their canonical record bytes.
//!
//! A separate test checks that merge time grows linearly with the states
//! (a quadratic merge would make 4 times the state cost 16 times the time).
//!
//! `KVORUM_FUZZ_CASES` sets the number of cases (default 20 000, a few
//! seconds); `KVORUM_FUZZ_SEED` the seed (default 1; a failure prints the
//! seed, the case and the input in hex). The long run (docs/security.md):
//! `KVORUM_FUZZ_CASES=10000000 cargo test --release -p kvorum-node --test fuzz -- --nocapture`.

use kvorum_client::proto::{decode_frame, encode_frame, Request, Response, PROTOCOL_VERSION};
use kvorum_client::{
    BucketProps, BucketType, CausalContext, DataOp, Grant, GrantScope, MapOp, ReadOptions,
    Revocation, Version, WriteOptions,
};
use kvorum_node::data::register::{self, Actor, DotContext, RegValue};
use kvorum_node::data::value::{self, State, Update, ValueLimits};
use kvorum_node::rpc::peer::{
    AaeRequest, ClusterRequest, PeerRequest, PeerResponse, ReapRequest, ReplicaRequest,
    TransferRequest, PEER_PROTOCOL_VERSION,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Tracks, per thread, the bytes live and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add(bytes as i64);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(bytes as i64)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        shrink(layout.size());
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes a decode may hold per input byte.
const ALLOC_PER_INPUT_BYTE: u64 = 64;
/// Bytes a decode may hold whatever the input: serde preallocates at most
/// 1 MiB of elements for a length prefix it cannot trust, which for a hash
/// map (the sets inside set and map states) is a table of about 2.4 MiB;
/// nested ones (a map's set fields) can hold one each at once.
const ALLOC_SLACK: u64 = 8 << 20;

/// What `f` returns, and the most bytes it held at once beyond what was
/// live before (on this thread).
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    (out, (PEAK.with(Cell::get) - before).max(0) as u64)
}

/// splitmix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn actor(i: u64) -> Actor {
    Actor {
        node: kvorum_ring::NodeId::new(format!("n{}", i % 5)),
        epoch: i / 5,
    }
}

fn limits() -> ValueLimits {
    ValueLimits {
        max_siblings: 64,
        max_set_members: 10_000,
        max_map_fields: 1_000,
        max_state_bytes: 1 << 20,
    }
}

/// Three replicas of one key of type `t` after `ops` random client
/// updates, each coordinated by one of them as its own actor (so a dot
/// names one write), with random merges between them: states a real
/// cluster can hold.
fn history(t: BucketType, rng: &mut Rng, ops: usize) -> [State; 3] {
    let mut replicas = [State::empty(t), State::empty(t), State::empty(t)];
    for _ in 0..ops {
        let i = rng.below(3);
        let ctx = match replicas[i].read(0) {
            value::Reading::Register(_, ctx) if rng.below(2) == 0 => ctx,
            _ => DotContext::new(),
        };
        apply_random(&mut replicas[i], t, &actor(i as u64), ctx, rng);
        if rng.below(3) == 0 {
            let j = rng.below(3);
            let from = replicas[i].clone();
            let _ = replicas[j].merge(from);
        }
    }
    replicas
}

/// A valid state of `t`: one replica of a [`history`].
fn state(t: BucketType, rng: &mut Rng, ops: usize) -> State {
    let [a, _, _] = history(t, rng, ops);
    a
}

/// Applies one random client update of type `t` to `s` as `me`.
fn apply_random(s: &mut State, t: BucketType, me: &Actor, ctx: DotContext, rng: &mut Rng) {
    {
        let me = me.clone();
        let member = || -> Vec<u8> { vec![b'm', 0] };
        let update = match t {
            BucketType::Register => Update::Register {
                ctx,
                value: if rng.below(5) == 0 {
                    RegValue::Tombstone { deleted_ms: 5 }
                } else {
                    let n = rng.below(8);
                    RegValue::Data(rng.bytes(n))
                },
            },
            BucketType::Lww => Update::Lww(Some(rng.bytes(4))),
            BucketType::Counter => Update::Data {
                op: DataOp::Increment(rng.next() as i32 as i64),
                ctx: Default::default(),
            },
            BucketType::Set => Update::Data {
                op: DataOp::SetUpdate {
                    add: vec![vec![b'm', rng.below(20) as u8], member()],
                    remove: vec![],
                },
                ctx: Default::default(),
            },
            BucketType::Map => Update::Data {
                op: DataOp::MapUpdate(vec![
                    MapOp::Increment {
                        field: format!("c{}", rng.below(4)),
                        by: 1,
                    },
                    MapOp::Add {
                        field: format!("s{}", rng.below(4)),
                        members: vec![vec![rng.below(9) as u8]],
                    },
                    MapOp::Flag {
                        field: "f".into(),
                        enable: rng.below(2) == 0,
                    },
                    MapOp::SetRegister {
                        field: "r".into(),
                        value: rng.bytes(3),
                    },
                ]),
                ctx: Default::default(),
            },
        };
        let now = 1_000 + rng.next() % 1_000;
        let _ = s.coordinate(&me, update, 0, now, &limits());
    }
}

const TYPES: [BucketType; 5] = [
    BucketType::Register,
    BucketType::Lww,
    BucketType::Counter,
    BucketType::Set,
    BucketType::Map,
];

/// Well-formed encodings of every kind of input, for mutation.
struct Corpus {
    client_requests: Vec<Vec<u8>>,
    client_responses: Vec<Vec<u8>>,
    peer: Vec<Vec<u8>>,
    records: Vec<Vec<u8>>,
    contexts: Vec<Vec<u8>>,
    versions: Vec<Vec<u8>>,
}

fn corpus(rng: &mut Rng) -> Corpus {
    let states: Vec<State> = TYPES
        .iter()
        .flat_map(|t| (0..3).map(|k| state(*t, &mut Rng(k + 7), 1 + 3 * k as usize)))
        .collect();
    let mut reg = kvorum_node::data::register::Register::new();
    let ctx = reg
        .write(
            &actor(1),
            &DotContext::new(),
            RegValue::Data(b"v".to_vec()),
            0,
        )
        .unwrap();
    let context = CausalContext(register::encode_context(&ctx));
    let client_requests = [
        Request::Get {
            bucket: "b".into(),
            key: b"k".to_vec(),
            options: ReadOptions::default(),
            at_least: Some(states[0].version()),
        },
        Request::Put {
            bucket: "b".into(),
            key: b"k".to_vec(),
            value: b"value".to_vec(),
            context: context.clone(),
            options: WriteOptions::default(),
        },
        Request::Update {
            bucket: "m".into(),
            key: b"k".to_vec(),
            op: DataOp::MapUpdate(vec![MapOp::Increment {
                field: "c".into(),
                by: 3,
            }]),
            context: context.clone(),
            options: WriteOptions::default(),
        },
        Request::CreateBucket {
            name: "b".into(),
            props: BucketProps::new(BucketType::Map).into(),
        },
        Request::DefineBucket {
            name: "b".into(),
            props: BucketProps::new(BucketType::Map).default_ttl(Duration::from_secs(9)),
        },
        Request::ListBucketProps,
        Request::Grant(Grant {
            client: "*".into(),
            scope: GrantScope::Prefix("a".into()),
            read: true,
            write: false,
        }),
        Request::Revoke(Revocation::Serial("0a".into())),
    ]
    .iter()
    .map(|r| encode_frame(PROTOCOL_VERSION, r))
    .collect();
    let client_responses = [
        Response::Value {
            siblings: vec![b"a".to_vec(), b"b".to_vec()],
            context: context.clone(),
            version: states[1].version(),
            report: Default::default(),
        },
        Response::Written {
            context,
            version: Version::default(),
        },
    ]
    .iter()
    .map(|r| encode_frame(PROTOCOL_VERSION, r))
    .collect();
    let mut peer: Vec<Vec<u8>> = states
        .iter()
        .map(|s| {
            let req = PeerRequest::Replica(ReplicaRequest::Write {
                key: b"\x00\x01bk".to_vec(),
                state: s.clone(),
            });
            encode_frame(PEER_PROTOCOL_VERSION, &req)
        })
        .collect();
    let more = [
        PeerRequest::Aae(AaeRequest::Leaves {
            from: kvorum_ring::NodeId::new("n1"),
            branches: vec![1, 2, 3],
        }),
        PeerRequest::Transfer(TransferRequest::MergeBatch {
            records: vec![(b"k".to_vec(), states[3].clone())],
        }),
        PeerRequest::Transfer(TransferRequest::Digest {
            keys: vec![(b"k".to_vec(), 7)],
        }),
        PeerRequest::Reap(ReapRequest::Reap {
            key: b"k".to_vec(),
            hash: 9,
        }),
        PeerRequest::Cluster(ClusterRequest::Gossip {
            from: kvorum_ring::NodeId::new("n1"),
            members: vec![],
            buckets: vec![("b".into(), BucketProps::new(BucketType::Set))],
            secrets: vec![(7, [3; 32])],
            access: Default::default(),
        }),
        PeerRequest::Cluster(ClusterRequest::Ping),
    ];
    peer.extend(more.iter().map(|r| encode_frame(PEER_PROTOCOL_VERSION, r)));
    let answers = [PeerResponse::Replica(
        kvorum_node::rpc::peer::ReplicaResponse::State(Some(states[4].clone())),
    )];
    peer.extend(
        answers
            .iter()
            .map(|r| encode_frame(PEER_PROTOCOL_VERSION, r)),
    );
    let records = states.iter().map(value::encode_record).collect();
    let mut contexts = vec![register::encode_context(&ctx)];
    if let value::Reading::Data(_, clock) = states[9].read(0) {
        contexts.push(value::encode_clock(&clock));
    }
    let versions = states
        .iter()
        .map(|s| postcard::to_stdvec(&s.version()).unwrap())
        .collect();
    let _ = rng.next();
    Corpus {
        client_requests,
        client_responses,
        peer,
        records,
        contexts,
        versions,
    }
}

/// A mutation of `seed`: bit flips, edge bytes, huge varints, insertions,
/// deletions, truncations, duplications, or random bytes.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(b.len() + 1);
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            2 => {
                // A length prefix or counter as large as a varint goes.
                let big: &[u8] = [
                    &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    &[0xff; 10][..],
                    &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                ][rng.below(3)];
                b.splice(at..at, big.iter().copied());
            }
            3 => {
                let n = rng.below(16);
                let extra = rng.bytes(n);
                b.splice(at..at, extra);
            }
            4 if !b.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(b.len());
                let start = at.min(end);
                b.drain(start..end);
            }
            5 => b.truncate(at),
            6 if !b.is_empty() => {
                let start = rng.below(b.len());
                let end = (start + 1 + rng.below(32)).min(b.len());
                let piece = b[start..end].to_vec();
                b.splice(at.min(b.len())..at.min(b.len()), piece);
            }
            7 => {
                let n = rng.below(64);
                b = rng.bytes(n);
            }
            _ => {}
        }
    }
    b
}

/// Runs `decode` on `input`, failing on a panic or an allocation beyond
/// the input's bound.
fn check_decode<T>(what: &str, input: &[u8], decode: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let (out, bytes) = allocated_by(|| catch_unwind(AssertUnwindSafe(|| decode(input))));
    let bound = ALLOC_PER_INPUT_BYTE * input.len() as u64 + ALLOC_SLACK;
    assert!(
        bytes <= bound,
        "{what}: decoding {} bytes held {bytes} bytes at once (bound {bound}); input {}",
        input.len(),
        hex(input)
    );
    match out {
        Ok(v) => Some(v),
        Err(_) => panic!("{what}: decoder panicked on input {}", hex(input)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `a` merged with `b`, never panicking.
fn merged(a: &State, b: &State) -> Option<State> {
    let mut m = a.clone();
    match catch_unwind(AssertUnwindSafe(|| m.merge(b.clone()))) {
        Ok(Ok(())) => Some(m),
        Ok(Err(_)) => None,
        Err(_) => panic!("merge panicked:\n{a:?}\n{b:?}"),
    }
}

fn laws(a: &State, b: &State, c: &State) {
    let bytes = |s: &State| value::encode_record(s);
    let (Some(ab), Some(ba)) = (merged(a, b), merged(b, a)) else {
        return;
    };
    assert_eq!(bytes(&ab), bytes(&ba), "not commutative:\n{a:?}\n{b:?}");
    let aa = merged(a, a).expect("a state merges with itself");
    assert_eq!(bytes(&aa), bytes(a), "not idempotent:\n{a:?}");
    if let (Some(ab_c), Some(bc)) = (merged(&ab, c), merged(b, c)) {
        if let Some(a_bc) = merged(a, &bc) {
            assert_eq!(bytes(&ab_c), bytes(&a_bc), "not associative");
        }
    }
}

#[test]
fn every_decoder_and_merge_survives_arbitrary_and_mutated_input() {
    let cases = env_u64("KVORUM_FUZZ_CASES", 20_000);
    let seed = env_u64("KVORUM_FUZZ_SEED", 1);
    let mut rng = Rng(seed);
    let corpus = corpus(&mut rng);
    // Valid states of each type to merge decoded ones with.
    let valid: Vec<Vec<State>> = TYPES
        .iter()
        .map(|t| {
            (0..4)
                .map(|k| state(*t, &mut Rng(seed ^ (k + 100)), 2 + k as usize))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let (mut decoded_states, mut law_checks) = (0u64, 0u64);
    for case in 0..cases {
        let kind = rng.below(7);
        let pool = match kind {
            0 => &corpus.client_requests,
            1 => &corpus.client_responses,
            2 | 3 => &corpus.peer,
            4 => &corpus.records,
            5 => &corpus.contexts,
            _ => &corpus.versions,
        };
        let input = mutate(&pool[rng.below(pool.len())], &mut rng);
        let ctx = format!("seed {seed} case {case}");
        let decoded: Option<State> = match kind {
            0 => {
                check_decode(&ctx, &input, |b| {
                    decode_frame::<Request>(PROTOCOL_VERSION, b).is_ok()
                });
                None
            }
            1 => {
                check_decode(&ctx, &input, |b| {
                    decode_frame::<Response>(PROTOCOL_VERSION, b).is_ok()
                });
                None
            }
            2 => check_decode(&ctx, &input, |b| {
                match decode_frame::<PeerRequest>(PEER_PROTOCOL_VERSION, b) {
                    Ok(PeerRequest::Replica(ReplicaRequest::Write { state, .. })) => Some(state),
                    Ok(PeerRequest::Transfer(TransferRequest::MergeBatch { records })) => {
                        records.into_iter().next().map(|(_, s)| s)
                    }
                    _ => None,
                }
            })
            .flatten(),
            3 => check_decode(&ctx, &input, |b| {
                match decode_frame::<PeerResponse>(PEER_PROTOCOL_VERSION, b) {
                    Ok(PeerResponse::Replica(kvorum_node::rpc::peer::ReplicaResponse::State(
                        s,
                    ))) => s,
                    _ => None,
                }
            })
            .flatten(),
            4 => check_decode(&ctx, &input, |b| value::decode_record(b).ok()).flatten(),
            5 => {
                check_decode(&ctx, &input, |b| {
                    let _ = register::decode_context(b);
                    let _ = value::decode_clock(b);
                });
                None
            }
            _ => {
                check_decode(&ctx, &input, |b| {
                    let _ = postcard::from_bytes::<Version>(b);
                    let _ = postcard::from_bytes::<kvorum_node::access::list::Entries>(b);
                });
                None
            }
        };
        // A decoded state goes where a peer's would: validated, bounded,
        // then merged into local states of its type.
        if let Some(s) = decoded {
            decoded_states += 1;
            let usable = s.validate().is_ok() && s.check_bounds(&limits().for_peers()).is_ok();
            let t = TYPES
                .iter()
                .position(|t| *t == s.bucket_type())
                .unwrap_or(0);
            // Any state, however hostile, merges without a panic both ways
            // (one a peer could send is only checked by validate and the
            // bounds: a state that reuses a dot with another value is
            // indistinguishable from a real one, so no law is asked of it).
            let local = &valid[t][rng.below(valid[t].len())];
            let _ = merged(local, &s);
            if usable {
                let _ = merged(&s, local);
            }
        }
        // The replicas of any history obey the laws.
        if case % 16 == 0 {
            let t = TYPES[rng.below(TYPES.len())];
            let ops = 1 + rng.below(12);
            let [a, b, c] = history(t, &mut Rng(rng.next()), ops);
            laws(&a, &b, &c);
            law_checks += 1;
        }
    }
    println!(
        "fuzz: {cases} cases (seed {seed}) in {:.1?}: {decoded_states} decoded states merged, {law_checks} law checks",
        started.elapsed()
    );
}

/// Two disjoint register states of `n` values each (one per actor).
fn registers(n: usize) -> (State, State) {
    let make = |from: usize| {
        let mut r = kvorum_node::data::register::Register::new();
        for i in from..from + n {
            let a = Actor {
                node: kvorum_ring::NodeId::new(format!("a{i}")),
                epoch: 1,
            };
            r.write(&a, &DotContext::new(), RegValue::Data(vec![1]), 0)
                .unwrap();
        }
        State::from(value::Body::Register(r))
    };
    (make(0), make(n))
}

/// Two set states of `n` members each, added through different actors.
fn sets(n: usize) -> (State, State) {
    let make = |who: u64| {
        let mut s = State::empty(BucketType::Set);
        let add: Vec<Vec<u8>> = (0..n).map(|i| format!("{who}-{i}").into_bytes()).collect();
        let up = Update::Data {
            op: DataOp::SetUpdate {
                add,
                remove: vec![],
            },
            ctx: Default::default(),
        };
        let big = ValueLimits {
            max_set_members: usize::MAX,
            max_state_bytes: usize::MAX,
            ..limits()
        };
        s.coordinate(&actor(who), up, 0, 1, &big).unwrap();
        s
    };
    (make(1), make(2))
}

/// The best of `runs` timings of merging `b` into `a`.
fn merge_time(a: &State, b: &State, runs: usize) -> Duration {
    (0..runs)
        .map(|_| {
            let mut m = a.clone();
            let other = b.clone();
            let t = Instant::now();
            m.merge(other).unwrap();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Merge time grows linearly: 4 times the state costs about 4 times the
/// time, where a quadratic merge would cost 16 times. The ratio of the best
/// of several runs must stay under 10; a noisy host gets three tries.
#[test]
fn merge_time_grows_linearly_with_the_states() {
    for (what, build) in [
        (
            "register siblings",
            registers as fn(usize) -> (State, State),
        ),
        ("set members", sets),
    ] {
        let n = 1_000;
        let mut ratios = Vec::new();
        let linear = (0..3).any(|_| {
            let (a, b) = build(n);
            let (a4, b4) = build(4 * n);
            let small = merge_time(&a, &b, 7).as_secs_f64().max(1e-7);
            let large = merge_time(&a4, &b4, 7).as_secs_f64();
            ratios.push(large / small);
            large / small < 10.0
        });
        assert!(
            linear,
            "{what}: merging 4x the state took {ratios:.1?} times as long (linear: ~4, quadratic: ~16)"
        );
    }
}
