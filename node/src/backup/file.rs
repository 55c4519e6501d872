//! The backup directory that `kvorum admin backup` writes and `restore`
//! and `verify` read:
//!
//! ```text
//! DIR/backup.json           what the backup holds: format, when, which nodes
//! DIR/<node>/manifest.json  the node's manifest (epoch, dot floor, members,
//!                           buckets), its records' count, bytes and checksum
//! DIR/<node>/records.kvb    the node's records, in storage-key order
//! ```
//!
//! `records.kvb` is the magic line [`MAGIC`], then each record as its key's
//! length (u32, little-endian), the key, the stored record's length, the
//! record. Its checksum (xxh3-64 of everything after the magic) catches a
//! damaged file; it is not a signature (anyone who can write the file can
//! write a matching checksum). Each node's directory stands alone: a backup
//! of some nodes restores what those nodes held.

use crate::data::value;
use kvorum_client::proto::BackupManifest;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// A (storage key, stored record) pair of a backup.
pub type KeyRecord = (Vec<u8>, Vec<u8>);
/// A storage key and every node's copy of its record.
pub type KeyCopies = (Vec<u8>, Vec<Vec<u8>>);

/// The index file of a backup directory.
pub const INDEX_FILE: &str = "backup.json";
/// A node's manifest, in its directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// A node's records, in its directory.
pub const RECORDS_FILE: &str = "records.kvb";
/// The first bytes of a records file.
pub const MAGIC: &[u8] = b"KVORUM-BACKUP-1\n";
/// The directory format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Longest key a records file may hold (fjall's limit).
const MAX_KEY: u32 = u16::MAX as u32;
/// Longest record a records file may hold (a node's largest state is
/// bounded by `limits.max_state_bytes`, far below).
const MAX_RECORD: u32 = 256 << 20;

/// `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupIndex {
    /// [`FORMAT`].
    pub format: u32,
    /// When the first snapshot was taken (ms since the Unix epoch).
    pub began_ms: u64,
    /// When the last records were written.
    pub finished_ms: u64,
    /// The nodes backed up (a directory each).
    pub nodes: Vec<String>,
}

/// A node's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBackup {
    /// What the node answered when its snapshot was taken.
    pub manifest: BackupManifest,
    /// Records in `records.kvb`.
    pub records: u64,
    /// Bytes of keys and records in it.
    pub bytes: u64,
    /// xxh3-64 of `records.kvb` after the magic, in hex.
    pub checksum: String,
    /// How long reading the node took, in milliseconds.
    pub took_ms: u64,
}

/// Why a backup directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what this build writes.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A records file cannot be read to its end: damaged.
    #[error("node {node}: records.kvb is damaged ({why})")]
    Mismatch {
        /// The node whose records differ.
        node: String,
        /// How.
        why: String,
    },
    /// A records file was read whole but does not match its manifest
    /// (count, bytes or checksum): damaged or altered.
    #[error("node {node}: records.kvb does not match its manifest ({why}): the backup is damaged or was altered")]
    Altered {
        /// The node whose records differ.
        node: String,
        /// How.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes JSON to `path` (then syncs it).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BackupError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| BackupError::Format {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(&text).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Reads JSON from `path`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, BackupError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| BackupError::Format {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Writes a node's `records.kvb`.
pub struct RecordWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    hash: Xxh3,
    records: u64,
    bytes: u64,
}

impl RecordWriter {
    /// Creates `records.kvb` in `dir`.
    pub fn create(dir: &Path) -> Result<Self, BackupError> {
        let path = dir.join(RECORDS_FILE);
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io(&path))?;
        Ok(Self {
            path,
            out,
            hash: Xxh3::new(),
            records: 0,
            bytes: 0,
        })
    }

    /// Appends one record (keys come in storage-key order).
    pub fn write(&mut self, key: &[u8], record: &[u8]) -> Result<(), BackupError> {
        let mut put = |bytes: &[u8]| -> Result<(), BackupError> {
            self.hash.update(bytes);
            self.out.write_all(bytes).map_err(io(&self.path))
        };
        put(&(key.len() as u32).to_le_bytes())?;
        put(key)?;
        put(&(record.len() as u32).to_le_bytes())?;
        put(record)?;
        self.records += 1;
        self.bytes += (key.len() + record.len()) as u64;
        Ok(())
    }

    /// Records written so far, and their bytes.
    pub fn written(&self) -> (u64, u64) {
        (self.records, self.bytes)
    }

    /// Flushes and syncs the file; returns (records, bytes, checksum).
    pub fn finish(self) -> Result<(u64, u64, String), BackupError> {
        let path = self.path;
        let file = self.out.into_inner().map_err(|e| BackupError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&path))?;
        Ok((
            self.records,
            self.bytes,
            format!("{:016x}", self.hash.digest()),
        ))
    }
}

/// Reads a node's `records.kvb`, checking it against its manifest at the
/// end: its keys ascend, and its count, bytes and checksum match.
pub struct RecordReader {
    node: String,
    path: PathBuf,
    input: BufReader<std::fs::File>,
    hash: Xxh3,
    expect: NodeBackup,
    records: u64,
    bytes: u64,
    last: Option<Vec<u8>>,
}

impl RecordReader {
    /// Opens the records of `node` in backup directory `dir`.
    pub fn open(dir: &Path, node: &str) -> Result<Self, BackupError> {
        let path = dir.join(node).join(MANIFEST_FILE);
        let expect: NodeBackup = read_json(&path)?;
        if expect.manifest.node != node {
            return Err(BackupError::Format {
                path,
                why: format!(
                    "the manifest of node {:?} is in {node:?}",
                    expect.manifest.node
                ),
            });
        }
        let path = dir.join(node).join(RECORDS_FILE);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = vec![0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(io(&path))?;
        if magic != MAGIC {
            return Err(BackupError::Format {
                path,
                why: "not a Kvorum backup records file (format 1)".into(),
            });
        }
        Ok(Self {
            node: node.to_string(),
            path,
            input,
            hash: Xxh3::new(),
            expect,
            records: 0,
            bytes: 0,
            last: None,
        })
    }

    /// The node's manifest.
    pub fn node_backup(&self) -> &NodeBackup {
        &self.expect
    }

    /// A length prefix, or `None` at the end of the file.
    fn length(&mut self, at_record_start: bool) -> Result<Option<u32>, BackupError> {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut b[got..]) {
                Ok(0) if got == 0 && at_record_start => return Ok(None),
                Ok(0) => return Err(self.damaged("the file ends inside a record")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&self.path)(e)),
            }
        }
        self.hash.update(&b);
        Ok(Some(u32::from_le_bytes(b)))
    }

    fn bytes_of(&mut self, len: u32) -> Result<Vec<u8>, BackupError> {
        // Read as it comes: a damaged length allocates no more than the
        // file holds.
        let mut v = Vec::new();
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut v)
            .map_err(io(&self.path))?;
        if v.len() != len as usize {
            return Err(self.damaged("the file ends inside a record"));
        }
        self.hash.update(&v);
        Ok(v)
    }

    fn damaged(&self, why: &str) -> BackupError {
        BackupError::Mismatch {
            node: self.node.clone(),
            why: why.to_string(),
        }
    }

    /// The next (key, record), or `None` after the last one once the file
    /// matched its manifest.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<KeyRecord>, BackupError> {
        let Some(klen) = self.length(true)? else {
            return self.check_end().map(|()| None);
        };
        if klen == 0 || klen > MAX_KEY {
            return Err(self.damaged(&format!("a key of {klen} bytes")));
        }
        let key = self.bytes_of(klen)?;
        let Some(rlen) = self.length(false)? else {
            return Err(self.damaged("the file ends inside a record"));
        };
        if rlen > MAX_RECORD {
            return Err(self.damaged(&format!("a record of {rlen} bytes")));
        }
        let record = self.bytes_of(rlen)?;
        if self.last.as_ref().is_some_and(|l| *l >= key) {
            return Err(self.damaged("keys out of order"));
        }
        self.last = Some(key.clone());
        self.records += 1;
        self.bytes += u64::from(klen) + u64::from(rlen);
        Ok(Some((key, record)))
    }

    fn check_end(&self) -> Result<(), BackupError> {
        let e = &self.expect;
        let altered = |why: String| BackupError::Altered {
            node: self.node.clone(),
            why,
        };
        let checksum = format!("{:016x}", self.hash.digest());
        if (self.records, self.bytes) != (e.records, e.bytes) {
            return Err(altered(format!(
                "{} records of {} bytes, the manifest says {} of {}",
                self.records, self.bytes, e.records, e.bytes
            )));
        }
        if checksum != e.checksum {
            return Err(altered(format!(
                "checksum {checksum}, the manifest says {}",
                e.checksum
            )));
        }
        Ok(())
    }
}

/// A backup directory opened for reading.
pub struct BackupSet {
    dir: PathBuf,
    /// Its `backup.json`.
    pub index: BackupIndex,
}

impl BackupSet {
    /// Opens the backup in `dir` (its index only).
    pub fn open(dir: &Path) -> Result<Self, BackupError> {
        let path = dir.join(INDEX_FILE);
        let index: BackupIndex = read_json(&path)?;
        if let Some(bad) = index.nodes.iter().find(|n| !is_node_dir(n)) {
            return Err(BackupError::Format {
                path,
                why: format!("node {bad:?} is not a node id (a directory name)"),
            });
        }
        if index.format != FORMAT {
            return Err(BackupError::Format {
                path,
                why: format!(
                    "backup format {} (this build reads format {FORMAT})",
                    index.format
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Each node's manifest.
    pub fn manifests(&self) -> Result<Vec<NodeBackup>, BackupError> {
        self.index
            .nodes
            .iter()
            .map(|n| read_json(&self.dir.join(n).join(MANIFEST_FILE)))
            .collect()
    }

    /// Every key of every node, in storage-key order, with the copies the
    /// nodes held; each file is checked against its manifest as it ends.
    pub fn merged(&self) -> Result<Merged, BackupError> {
        let mut readers = Vec::new();
        for node in &self.index.nodes {
            let r = RecordReader::open(&self.dir, node)?;
            readers.push((r, None));
        }
        let mut merged = Merged {
            readers,
            altered: Vec::new(),
        };
        for i in 0..merged.readers.len() {
            merged.advance(i)?;
        }
        Ok(merged)
    }
}

/// The nodes' records of a backup merged by key (see [`BackupSet::merged`]).
pub struct Merged {
    readers: Vec<(RecordReader, Option<KeyRecord>)>,
    altered: Vec<String>,
}

impl Merged {
    /// Reads reader `i`'s next record into its head; a file that ends not
    /// matching its manifest is noted in `altered` (its records were read).
    fn advance(&mut self, i: usize) -> Result<(), BackupError> {
        let (r, head) = &mut self.readers[i];
        match r.next() {
            Ok(next) => *head = next,
            Err(e @ BackupError::Altered { .. }) => {
                *head = None;
                self.altered.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The files read to their end that did not match their manifests.
    pub fn altered(&self) -> Vec<String> {
        self.altered.clone()
    }

    /// The next key and every node's copy of it, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<KeyCopies>, BackupError> {
        let Some(key) = self
            .readers
            .iter()
            .filter_map(|(_, h)| h.as_ref().map(|(k, _)| k))
            .min()
            .cloned()
        else {
            return Ok(None);
        };
        let mut copies = Vec::new();
        for i in 0..self.readers.len() {
            let head = &mut self.readers[i].1;
            if head.as_ref().is_some_and(|(k, _)| *k == key) {
                if let Some((_, record)) = head.take() {
                    copies.push(record);
                }
                self.advance(i)?;
            }
        }
        Ok(Some((key, copies)))
    }
}

/// Whether `name` can name a node's directory of a backup: a node id, not
/// a path.
pub fn is_node_dir(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// One record from every node's copy of a key: their states merged (the
/// key's state in the cluster that was backed up), re-encoded in the
/// current format, and how many copies were left out because they did not
/// decode (as a node quarantines such a record and takes its replicas'
/// state). Fails if no copy decodes, or two copies are of different types.
pub fn merge_copies(copies: &[Vec<u8>]) -> Result<(Vec<u8>, usize), String> {
    let mut merged: Option<value::State> = None;
    let mut undecodable = Vec::new();
    for c in copies {
        let state = match value::decode_record(c) {
            Ok(s) => s,
            Err(e) => {
                undecodable.push(e.to_string());
                continue;
            }
        };
        match &mut merged {
            None => merged = Some(state),
            Some(m) => m.merge(state).map_err(|e| e.to_string())?,
        }
    }
    match merged {
        Some(m) => Ok((value::encode_record(&m), undecodable.len())),
        None => Err(format!("no copy decodes: {}", undecodable.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(node: &str) -> BackupManifest {
        BackupManifest {
            node: node.into(),
            snapshot: 1,
            taken_ms: 0,
            epoch: 9,
            dot_floor: 0,
            record_format: 1,
            members: vec![],
            buckets: vec![],
            keys: 0,
        }
    }

    /// Writes node `node`'s records into `dir` with its manifest.
    fn write_node(dir: &Path, node: &str, records: &[(&[u8], &[u8])]) {
        let at = dir.join(node);
        std::fs::create_dir_all(&at).unwrap();
        let mut w = RecordWriter::create(&at).unwrap();
        for (k, r) in records {
            w.write(k, r).unwrap();
        }
        let (records, bytes, checksum) = w.finish().unwrap();
        let nb = NodeBackup {
            manifest: manifest(node),
            records,
            bytes,
            checksum,
            took_ms: 1,
        };
        write_json(&at.join(MANIFEST_FILE), &nb).unwrap();
    }

    fn index(dir: &Path, nodes: &[&str]) {
        let i = BackupIndex {
            format: FORMAT,
            began_ms: 0,
            finished_ms: 1,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        };
        write_json(&dir.join(INDEX_FILE), &i).unwrap();
    }

    /// Each key with its number of copies, and the altered files.
    type Read = (Vec<(Vec<u8>, usize)>, Vec<String>);

    fn all(set: &BackupSet) -> Result<Read, BackupError> {
        let mut m = set.merged()?;
        let mut out = Vec::new();
        while let Some((k, copies)) = m.next()? {
            out.push((k, copies.len()));
        }
        Ok((out, m.altered()))
    }

    /// Nodes' files merge by key, each key with every node's copy; a
    /// changed byte is found by the checksum, a cut file and keys out of
    /// order are refused, and an unknown format is named.
    #[test]
    fn records_merge_by_key_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write_node(dir, "n1", &[(b"a", b"1"), (b"c", b"3")]);
        write_node(dir, "n2", &[(b"b", b"2"), (b"c", b"3")]);
        index(dir, &["n1", "n2"]);
        let set = BackupSet::open(dir).unwrap();
        let (keys, altered) = all(&set).unwrap();
        assert_eq!(
            keys,
            vec![(b"a".to_vec(), 1), (b"b".to_vec(), 1), (b"c".to_vec(), 2)]
        );
        assert!(altered.is_empty());

        let file = dir.join("n2").join(RECORDS_FILE);
        let good = std::fs::read(&file).unwrap();
        let mut changed = good.clone();
        *changed.last_mut().unwrap() = b'4';
        std::fs::write(&file, &changed).unwrap();
        let (keys, altered) = all(&set).unwrap();
        assert_eq!(keys.len(), 3, "an altered file is still read");
        assert_eq!(altered.len(), 1, "{altered:?}");
        assert!(altered[0].contains("checksum"), "{altered:?}");

        std::fs::write(&file, &good[..good.len() - 1]).unwrap();
        let cut = all(&set).unwrap_err();
        assert!(matches!(cut, BackupError::Mismatch { .. }), "{cut}");

        write_node(dir, "n2", &[(b"c", b"3"), (b"b", b"2")]);
        let order = all(&set).unwrap_err();
        assert!(order.to_string().contains("out of order"), "{order}");

        let mut i: BackupIndex = read_json(&dir.join(INDEX_FILE)).unwrap();
        i.format = 2;
        write_json(&dir.join(INDEX_FILE), &i).unwrap();
        let Err(e) = BackupSet::open(dir) else {
            panic!("format 2 opened")
        };
        assert!(e.to_string().contains("backup format 2"), "{e}");
    }
}
