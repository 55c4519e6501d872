//! The client protocol's bytes are pinned: one frame of every request and
//! every answer (each error reply included) must encode exactly as below.
//! A change here is a wire-format change: it needs a new
//! `PROTOCOL_VERSION`, not a new expected string. The test also pins the
//! public paths the node crate imports these types by.

use kvorum_client::proto::{
    decode_frame, encode_frame, ClusterStatus, ErrorReply, Limit, MemberStatus, OpKind,
    QuorumFailure, ReplicaOutcome, Request, Response, RingRange, StaleRead, TransferStatus,
    PROTOCOL_VERSION,
};
use kvorum_client::proto::{BackupAnswer, BackupManifest, BackupStep, DigestAnswer, DigestQuery};
use kvorum_client::{
    AccessList, CertificateStatus, DiskRefusal, DiskStatus, Grant, GrantScope, QuarantinedRecord,
    Revocation,
};
use kvorum_client::{
    ActorId, BucketProps, BucketType, CausalContext, DataOp, DataValue, FieldKind, FieldValue,
    MapOp, MapValue, ReadOptions, ReadReport, Version, WriteOptions,
};

fn version() -> Version {
    let a = ActorId {
        node: "n1".into(),
        epoch: 7,
    };
    Version::Dots {
        vv: [(a.clone(), 3)].into(),
        cloud: [(a, 5)].into(),
    }
}

fn report() -> ReadReport {
    ReadReport {
        asked: 3,
        r: 2,
        answered: 2,
        agreed: false,
    }
}

fn requests() -> Vec<Request> {
    let (bucket, key) = ("b".to_string(), b"k".to_vec());
    let ctx = CausalContext(vec![1, 2]);
    vec![
        Request::Get {
            bucket: bucket.clone(),
            key: key.clone(),
            options: ReadOptions::r(2).timeout_ms(300).repair_before_answer(),
            at_least: Some(version()),
        },
        Request::Put {
            bucket: bucket.clone(),
            key: key.clone(),
            value: b"v".to_vec(),
            context: ctx.clone(),
            options: WriteOptions::w(3).timeout_ms(1000).strict(),
        },
        Request::Delete {
            bucket: bucket.clone(),
            key: key.clone(),
            context: ctx.clone(),
            options: WriteOptions::default(),
        },
        Request::Status,
        Request::Repair,
        Request::Fetch {
            bucket: bucket.clone(),
            key: key.clone(),
            options: ReadOptions::default(),
            at_least: None,
        },
        Request::Update {
            bucket: bucket.clone(),
            key: key.clone(),
            op: DataOp::MapUpdate(vec![
                MapOp::Increment {
                    field: "c".into(),
                    by: -2,
                },
                MapOp::RemoveField {
                    field: "s".into(),
                    kind: FieldKind::Set,
                },
            ]),
            context: ctx,
            options: WriteOptions::w(1),
        },
        Request::CreateBucket {
            name: bucket,
            props: BucketProps::new(BucketType::Map).n(5).r(3).w(3).into(),
        },
        Request::ListBuckets,
        Request::Leave { node: "n3".into() },
        Request::Remove { node: "n4".into() },
        Request::Join {
            node: "n5".into(),
            seed: "127.0.0.1:7401".into(),
        },
        Request::Ring { n: Some(3) },
        Request::Grant(Grant {
            client: "shop".into(),
            scope: GrantScope::Prefix("shop-".into()),
            read: true,
            write: false,
        }),
        Request::Revoke(Revocation::Name {
            role: "client".into(),
            name: "laptop".into(),
        }),
        Request::Revoke(Revocation::Serial("0a".into())),
        Request::Access,
        Request::ReloadCertificates,
        Request::Quarantined,
        Request::Disk,
        Request::Backup(BackupStep::Begin),
        Request::Backup(BackupStep::Page {
            id: 5,
            after: Some(b"k".to_vec()),
            max_bytes: 300,
        }),
        Request::Backup(BackupStep::End { id: 5 }),
        Request::Restore {
            records: vec![(b"k".to_vec(), b"r".to_vec())],
        },
        Request::Digest(DigestQuery::Branches),
        Request::Digest(DigestQuery::Leaves { branches: vec![1] }),
        Request::Digest(DigestQuery::Keys {
            segments: vec![300],
        }),
    ]
}

fn errors() -> Vec<ErrorReply> {
    let replicas = vec![
        ("n1".to_string(), ReplicaOutcome::Ok),
        ("n2".to_string(), ReplicaOutcome::Timeout),
        (
            "n3".to_string(),
            ReplicaOutcome::Unreachable("refused".into()),
        ),
        ("n4".to_string(), ReplicaOutcome::Failed("disk".into())),
    ];
    vec![
        ErrorReply::BadRequest("x".into()),
        ErrorReply::UnsupportedVersion {
            got: 9,
            supported: 2,
        },
        ErrorReply::TooLarge {
            what: Limit::MapFields,
            size: 300,
            max: 256,
        },
        ErrorReply::InvalidQuorum { requested: 4, n: 3 },
        ErrorReply::InvalidContext("y".into()),
        ErrorReply::Quorum(QuorumFailure {
            op: OpKind::Write,
            needed: 2,
            succeeded: 1,
            replicas: replicas.clone(),
        }),
        ErrorReply::Stale(StaleRead {
            asked: 3,
            answered: 2,
            replicas,
        }),
        ErrorReply::Unavailable("z".into()),
        ErrorReply::UnknownBucket("b".into()),
        ErrorReply::WrongType {
            bucket: "b".into(),
            bucket_type: BucketType::Counter,
            op: "put".into(),
        },
        ErrorReply::BucketConflict {
            bucket: "b".into(),
            existing: BucketProps::new(BucketType::Lww).into(),
        },
        ErrorReply::Internal("i".into()),
        ErrorReply::Refused("r".into()),
        ErrorReply::Forbidden("f".into()),
        ErrorReply::DiskFull {
            node: "n1".into(),
            detail: "d".into(),
        },
    ]
}

fn responses() -> Vec<Response> {
    let ctx = CausalContext(vec![9]);
    let mut all = vec![
        Response::Value {
            siblings: vec![b"a".to_vec(), b"bc".to_vec()],
            context: ctx.clone(),
            version: version(),
            report: report(),
        },
        Response::NotFound {
            context: ctx.clone(),
            version: Version::Stamp {
                ms: 12,
                actor: None,
            },
            report: report(),
        },
        Response::Written {
            context: ctx.clone(),
            version: Version::Counter {
                inc: [(
                    ActorId {
                        node: "n2".into(),
                        epoch: 1,
                    },
                    4,
                )]
                .into(),
                dec: Default::default(),
            },
        },
        Response::Status(Box::new(ClusterStatus {
            certificates: vec![],
            node: "n1".into(),
            members: vec![MemberStatus {
                id: "n1".into(),
                addr: "10.0.0.1:7401".into(),
                zone: Some("z1".into()),
                state: "up".into(),
                reachable: true,
                ownership_ppm: 333_333,
            }],
            in_transition: true,
            waiting_for: vec!["n2".into()],
            transfers: vec![TransferStatus {
                source: "n2".into(),
                scanned: 50,
                total: 200,
                keys: 12,
                bytes: 4096,
                done: false,
            }],
        })),
        Response::Accepted("ok".into()),
        Response::Ring(vec![RingRange {
            start: 10,
            end: u64::MAX,
            owners: vec!["n1".into(), "n2".into()],
        }]),
        Response::Repaired {
            exchanges: 2,
            keys: 70_000,
        },
        Response::Data {
            value: DataValue::Map(MapValue {
                fields: vec![
                    ("f".into(), FieldKind::Flag, FieldValue::Flag(true)),
                    (
                        "r".into(),
                        FieldKind::Register,
                        FieldValue::Register(vec![b"x".to_vec()]),
                    ),
                ],
            }),
            context: ctx,
            version: version(),
            report: report(),
        },
        Response::Data {
            value: DataValue::Counter(-5),
            context: CausalContext::empty(),
            version: Version::default(),
            report: report(),
        },
        Response::BucketCreated,
        Response::Buckets(vec![(
            "carts".into(),
            BucketProps::new(BucketType::Map).into(),
        )]),
        Response::Access(AccessList {
            grants: vec![Grant {
                client: "*".into(),
                scope: GrantScope::Bucket("b".into()),
                read: true,
                write: true,
            }],
            revoked: vec![Revocation::Serial("0a".into())],
        }),
        Response::Reloaded(CertificateStatus {
            node: "n1".into(),
            serial: "0a".into(),
            not_after: 1_900_000_000,
        }),
        Response::Quarantined(vec![QuarantinedRecord {
            bucket: "b".into(),
            key: b"k".to_vec(),
            bytes: 5,
            why: "w".into(),
            at_ms: 1,
        }]),
        Response::Disk(DiskStatus {
            node: "n1".into(),
            free_bytes: 1,
            total_bytes: 2,
            watermark_bytes: 3,
            refusing: DiskRefusal::ClientWrites,
            storage_failed: Some("e".into()),
        }),
        Response::Backup(BackupAnswer::Begun(Box::new(BackupManifest {
            node: "n1".into(),
            snapshot: 5,
            taken_ms: 6,
            epoch: 7,
            dot_floor: 8,
            record_format: 1,
            members: vec![MemberStatus {
                id: "n1".into(),
                addr: "a".into(),
                zone: None,
                state: "up".into(),
                reachable: true,
                ownership_ppm: 0,
            }],
            buckets: vec![("b".into(), BucketProps::new(BucketType::Set))],
            keys: 9,
        }))),
        Response::Backup(BackupAnswer::Page {
            records: vec![(b"k".to_vec(), b"r".to_vec())],
            next: None,
        }),
        Response::Backup(BackupAnswer::Ended),
        Response::Restored {
            records: 2,
            sent: 1,
        },
        Response::Digest(DigestAnswer::Branches {
            view: 5,
            hashes: vec![1, 2],
        }),
        Response::Digest(DigestAnswer::Leaves(vec![(1, vec![3])])),
        Response::Digest(DigestAnswer::Keys(vec![(b"k".to_vec(), 4)])),
    ];
    all.extend(errors().into_iter().map(Response::Error));
    all
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every request frame, in hex, in the order of [`requests`].
const REQUESTS: &[&str] = &[
    "03000162016b010201ac020001010001026e31070301026e310705",
    "03010162016b0176020102010301e80701",
    "03020162016b020102000000",
    "0303",
    "0304",
    "03050162016b0000000000",
    "03060162016b0202000163030601730102010201010000",
    "0307016203050303",
    "0308",
    "0309026e33",
    "030a026e34",
    "030b026e350e3132372e302e302e313a37343031",
    "030c0103",
    "030d0473686f70010573686f702d0100",
    "030e0106636c69656e74066c6170746f70",
    "030e00023061",
    "030f",
    "0310",
    "0311",
    "031b",
    "031c00",
    "031c010501016bac02",
    "031c0205",
    "031d01016b0172",
    "031e00",
    "031e010101",
    "031e0201ac02",
];

/// Every answer frame, in hex, in the order of [`responses`].
const RESPONSES: &[&str] = &[
    "030002016102626301090001026e31070301026e31070503020200",
    "03010109020c0003020200",
    "030201090101026e32010400",
    "0303026e3101026e310d31302e302e302e313a3734303101027a310275700195ac140101026e3201026e3232c8010c80200000",
    "0304026f6b",
    "0305010affffffffffffffffff0102026e31026e32",
    "030602f0a204",
    "0307020201660202010172040401017801090001026e31070301026e31070503020200",
    "030700090000000003020200",
    "0308",
    "03090105636172747303030202",
    "030b01012a00016201010100023061",
    "030c026e3102306180ccfd930e",
    "030d010162016b05017701",
    "0315026e3101020301010165",
    "031600026e31050607080101026e310161000275700100010162020302020009",
    "03160101016b017200",
    "031602",
    "03170201",
    "03180005020102",
    "03180101010103",
    "03180201016b04",
    "030a000178",
    "030a010902",
    "030a0207ac028002",
    "030a030403",
    "030a040179",
    "030a0501020104026e3100026e3201026e33020772656675736564026e3403046469736b",
    "030a06030204026e3100026e3201026e33020772656675736564026e3403046469736b",
    "030a07017a",
    "030a080162",
    "030a0901620103707574",
    "030a0a016204030202",
    "030a0b0169",
    "030a0c0172",
    "030a0d0166",
    "030a0f026e310164",
];

/// Each of `messages` encodes as `pinned` says and decodes back to itself.
fn check<T>(what: &str, messages: Vec<T>, pinned: &[&str])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let got: Vec<String> = messages
        .iter()
        .map(|m| hex(&encode_frame(PROTOCOL_VERSION, m)))
        .collect();
    assert_eq!(got, pinned, "{what} frames changed; got:\n{got:#?}");
    for m in messages {
        let frame = encode_frame(PROTOCOL_VERSION, &m);
        assert_eq!(decode_frame::<T>(PROTOCOL_VERSION, &frame), Ok(m));
    }
}

#[test]
fn every_request_encodes_as_pinned_and_decodes_back() {
    check("request", requests(), REQUESTS);
}

#[test]
fn every_answer_encodes_as_pinned_and_decodes_back() {
    check("answer", responses(), RESPONSES);
}
