//! Concurrent clients of the five workloads, and the history they write.
//!
//! Every operation is recorded twice in `history.jsonl` (one JSON object per
//! line): at invocation (`"type": "invoke"`) and at completion (`"ok"`: it
//! took effect; `"fail"`: the node answered an error — under Dynamo
//! semantics a failed write may still have reached a replica, so checkers
//! treat it as *maybe applied*; `"info"`: the outcome is unknown, e.g. a
//! timeout). Times are milliseconds since the run started.

use kvorum_client::{CausalContext, Client, ReadOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::BTreeSet,
    io::Write,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// The workloads, each on its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Unique adds into an ORSWOT set bucket.
    Set,
    /// Unique adds into a register bucket; the client merges siblings by union.
    RegisterUnion,
    /// Register writes that name the values their context covered.
    Register,
    /// Counter increments and decrements.
    Counter,
    /// The set workload on an `lww` bucket (read, add, write): the control.
    Lww,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::Set,
        Workload::RegisterUnion,
        Workload::Register,
        Workload::Counter,
        Workload::Lww,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::RegisterUnion => "register-union",
            Workload::Register => "register-siblings",
            Workload::Counter => "counter",
            Workload::Lww => "lww-control",
        }
    }

    pub fn bucket(self) -> &'static str {
        match self {
            Workload::Set => "jset",
            Workload::RegisterUnion => "junion",
            Workload::Register => "jreg",
            Workload::Counter => "jcounter",
            Workload::Lww => "jlww",
        }
    }

    pub fn bucket_type(self) -> kvorum_client::BucketType {
        use kvorum_client::BucketType as T;
        match self {
            Workload::Set => T::Set,
            Workload::RegisterUnion | Workload::Register => T::Register,
            Workload::Counter => T::Counter,
            Workload::Lww => T::Lww,
        }
    }

    /// Keys per workload: few, so that clients contend.
    pub fn keys(self) -> u32 {
        match self {
            Workload::Lww | Workload::Counter => 4,
            _ => 8,
        }
    }

    /// Concurrent clients.
    pub fn clients(self) -> u32 {
        match self {
            Workload::Lww => 3,
            _ => 2,
        }
    }
}

pub fn key_name(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

/// What an operation did.
#[derive(Debug, Clone)]
pub enum Op {
    /// Added a unique element (set, register-union, lww).
    Add(u64),
    /// Read the elements of a key (set, register-union).
    Read(Option<BTreeSet<u64>>),
    /// Wrote register value `id`, whose context covered `covers`.
    Write { id: u64, covers: Vec<u64> },
    /// Added `delta` to a counter.
    Inc(i64),
}

/// One completed operation.
#[derive(Debug, Clone)]
pub struct Entry {
    pub workload: Workload,
    pub key: u32,
    pub op: Op,
    pub outcome: Outcome,
    pub invoke_ms: u64,
    pub complete_ms: u64,
    /// The nemesis phase at invocation.
    pub phase: usize,
}

/// The history: a file of invocations and completions, and the completed
/// operations in memory for the checkers.
pub struct History {
    start: Instant,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    pub entries: Mutex<Vec<Entry>>,
    /// Index of the nemesis phase now in force.
    pub phase: AtomicUsize,
}

impl History {
    pub fn new(path: &std::path::Path) -> Arc<History> {
        Arc::new(History {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(path).unwrap(),
            )),
            entries: Mutex::new(Vec::new()),
            phase: AtomicUsize::new(0),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Writes one line of the history file.
    pub fn line(&self, value: serde_json::Value) {
        let mut f = self.file.lock().unwrap();
        let _ = writeln!(f, "{value}");
    }

    pub fn flush(&self) {
        let _ = self.file.lock().unwrap().flush();
    }

    fn invoke(&self, w: Workload, process: u32, key: u32, op: &Op) -> (u64, usize) {
        let t = self.now_ms();
        let phase = self.phase.load(Ordering::Relaxed);
        self.line(serde_json::json!({
            "time_ms": t, "type": "invoke", "workload": w.name(), "process": process,
            "key": key, "op": describe(op), "phase": phase,
        }));
        (t, phase)
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        w: Workload,
        process: u32,
        key: u32,
        op: Op,
        outcome: Outcome,
        (invoke_ms, phase): (u64, usize),
        error: Option<String>,
    ) {
        let t = self.now_ms();
        let kind = match outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        };
        self.line(serde_json::json!({
            "time_ms": t, "type": kind, "workload": w.name(), "process": process,
            "key": key, "op": describe(&op), "error": error, "phase": phase,
        }));
        self.entries.lock().unwrap().push(Entry {
            workload: w,
            key,
            op,
            outcome,
            invoke_ms,
            complete_ms: t,
            phase,
        });
    }
}

fn describe(op: &Op) -> serde_json::Value {
    match op {
        Op::Add(e) => serde_json::json!({"f": "add", "value": e}),
        Op::Read(v) => serde_json::json!({"f": "read", "value": v}),
        Op::Write { id, covers } => {
            serde_json::json!({"f": "write", "value": id, "covers": covers})
        }
        Op::Inc(d) => serde_json::json!({"f": "add", "value": d}),
    }
}

fn classify(e: &kvorum_client::Error) -> Outcome {
    use kvorum_client::Error as E;
    match e {
        E::Server(_) | E::NoNodeAvailable(_) => Outcome::Fail,
        _ => Outcome::Info,
    }
}

/// Elements of a register-union or lww value: decimal ids, comma-separated.
pub fn decode_elems(v: &[u8]) -> BTreeSet<u64> {
    String::from_utf8_lossy(v)
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

pub fn encode_elems(s: &BTreeSet<u64>) -> Vec<u8> {
    s.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// A register-siblings value: `id;covered,covered,...`.
pub fn decode_write(v: &[u8]) -> Option<(u64, Vec<u64>)> {
    let s = String::from_utf8_lossy(v);
    let (id, covers) = s.split_once(';')?;
    Some((
        id.parse().ok()?,
        covers.split(',').filter_map(|c| c.parse().ok()).collect(),
    ))
}

/// Runs one client of workload `w` until `stop`.
pub async fn run_client(
    w: Workload,
    process: u32,
    client: Client,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(process) << 40));
    let mut seq: u64 = 0;
    let bucket = w.bucket();
    while !stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..w.keys());
        let key = key_name(k);
        seq += 1;
        let elem = (u64::from(process) << 32) | seq;
        match w {
            Workload::Set | Workload::RegisterUnion if rng.random_ratio(1, 5) => {
                let at = history.invoke(w, process, k, &Op::Read(None));
                let r = if w == Workload::Set {
                    client
                        .set(bucket, &key)
                        .members()
                        .await
                        .map(|s| members(&s.members))
                } else {
                    client.get(bucket, &key).await.map(|v| {
                        v.siblings
                            .iter()
                            .flat_map(|s| decode_elems(s))
                            .collect::<BTreeSet<u64>>()
                    })
                };
                match r {
                    Ok(s) => {
                        history.complete(w, process, k, Op::Read(Some(s)), Outcome::Ok, at, None)
                    }
                    Err(e) => history.complete(
                        w,
                        process,
                        k,
                        Op::Read(None),
                        classify(&e),
                        at,
                        Some(e.to_string()),
                    ),
                }
            }
            Workload::Set => {
                let op = Op::Add(elem);
                let at = history.invoke(w, process, k, &op);
                let r = client
                    .set(bucket, &key)
                    .add(elem.to_string().as_bytes())
                    .await;
                finish(&history, w, process, k, op, at, r.map(|_| ()));
            }
            Workload::RegisterUnion | Workload::Lww => {
                let op = Op::Add(elem);
                let at = history.invoke(w, process, k, &op);
                let r = async {
                    let v = client.get(bucket, &key).await?;
                    let mut s: BTreeSet<u64> =
                        v.siblings.iter().flat_map(|s| decode_elems(s)).collect();
                    s.insert(elem);
                    client
                        .put(bucket, &key, &encode_elems(&s), &v.context)
                        .await?;
                    Ok::<_, kvorum_client::Error>(())
                }
                .await;
                finish(&history, w, process, k, op, at, r);
            }
            Workload::Register => {
                // One write in three is blind (empty context): it covers
                // nothing and becomes a sibling; the others resolve.
                let blind = rng.random_ratio(1, 3);
                let (ctx, covers) = if blind {
                    (CausalContext::empty(), Vec::new())
                } else {
                    match client.get(bucket, &key).await {
                        Ok(v) => (
                            v.context.clone(),
                            v.siblings
                                .iter()
                                .filter_map(|s| decode_write(s).map(|(id, _)| id))
                                .collect(),
                        ),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                };
                let op = Op::Write {
                    id: elem,
                    covers: covers.clone(),
                };
                let at = history.invoke(w, process, k, &op);
                let cov: Vec<String> = covers.iter().map(|c| c.to_string()).collect();
                let value = format!("{elem};{}", cov.join(","));
                let r = client.put(bucket, &key, value.as_bytes(), &ctx).await;
                finish(&history, w, process, k, op, at, r.map(|_| ()));
            }
            Workload::Counter => {
                let mut delta = rng.random_range(-5i64..=5);
                if delta == 0 {
                    delta = 1;
                }
                let op = Op::Inc(delta);
                let at = history.invoke(w, process, k, &op);
                let r = client.counter(bucket, &key).increment(delta).await;
                finish(&history, w, process, k, op, at, r);
            }
        }
        // Failed requests return fast during faults; keep the rate sane.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..10))).await;
    }
}

pub fn members(m: &[Vec<u8>]) -> BTreeSet<u64> {
    m.iter()
        .filter_map(|e| std::str::from_utf8(e).ok()?.parse().ok())
        .collect()
}

fn finish(
    history: &History,
    w: Workload,
    process: u32,
    k: u32,
    op: Op,
    at: (u64, usize),
    r: Result<(), kvorum_client::Error>,
) {
    match r {
        Ok(()) => history.complete(w, process, k, op, Outcome::Ok, at, None),
        Err(e) => history.complete(w, process, k, op, classify(&e), at, Some(e.to_string())),
    }
}

/// Reads every key of `w` through `client` at R = 3 (the final read).
pub async fn final_read(w: Workload, client: &Client) -> Result<Vec<FinalValue>, String> {
    let mut out = Vec::new();
    let all = ReadOptions::r(3).timeout_ms(5000);
    for k in 0..w.keys() {
        let key = key_name(k);
        let v = match w {
            Workload::Set => client
                .set(w.bucket(), &key)
                .read_options(all)
                .members()
                .await
                .map(|s| FinalValue::Elems(members(&s.members))),
            Workload::RegisterUnion | Workload::Lww => {
                client.get_with(w.bucket(), &key, all).await.map(|v| {
                    FinalValue::Elems(v.siblings.iter().flat_map(|s| decode_elems(s)).collect())
                })
            }
            Workload::Register => client.get_with(w.bucket(), &key, all).await.map(|v| {
                let mut s: Vec<(u64, Vec<u64>)> =
                    v.siblings.iter().filter_map(|s| decode_write(s)).collect();
                s.sort();
                FinalValue::Siblings(s)
            }),
            Workload::Counter => client
                .counter(w.bucket(), &key)
                .read_options(all)
                .value()
                .await
                .map(FinalValue::Count),
        };
        out.push(v.map_err(|e| format!("{} key {k}: {e}", w.name()))?);
    }
    Ok(out)
}

/// A key's value in the final read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalValue {
    Elems(BTreeSet<u64>),
    Siblings(Vec<(u64, Vec<u64>)>),
    Count(i64),
}
