//! Admission: what a source address and a request may hold of the node.
//! Per-source counts of connections and handshakes, and per-source shares
//! of the request slots and of the node-wide budget of request bytes
//! (see [`super::serve`] for the order of admission).

use std::sync::Arc;
use tokio::sync::Semaphore;

/// What each source address holds: its connections (and handshakes), and
/// its share of the node's budget of client request bytes.
pub(super) struct Sources {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Source>>,
    pub(super) cap: usize,
    /// KiB one source may hold of client request frames.
    pub(super) share_kib: usize,
    /// Client request slots one source may hold.
    pub(super) share_slots: usize,
}

struct Source {
    count: usize,
    bytes: Arc<Semaphore>,
    slots: Arc<Semaphore>,
}

/// One source's share, held by a connection (or handshake) while it lives:
/// its byte and slot budgets.
pub(super) struct SourceSlot(
    Arc<Sources>,
    std::net::IpAddr,
    pub(super) Arc<Semaphore>,
    pub(super) Arc<Semaphore>,
);

impl Sources {
    /// No source holds anything yet.
    pub(super) fn new(cap: usize, share_kib: usize, share_slots: usize) -> Self {
        Self {
            open: Default::default(),
            cap,
            share_kib,
            share_slots,
        }
    }

    /// A slot for `ip`, or `None` if it holds `cap` already.
    pub(super) fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceSlot> {
        use crate::util::LockExt;
        let mut open = self.open.locked();
        let (kib, slots) = (self.share_kib, self.share_slots);
        let source = open.entry(ip).or_insert_with(|| Source {
            count: 0,
            bytes: Arc::new(Semaphore::new(kib)),
            slots: Arc::new(Semaphore::new(slots)),
        });
        if source.count >= self.cap {
            return None;
        }
        source.count += 1;
        let (bytes, slots) = (source.bytes.clone(), source.slots.clone());
        Some(SourceSlot(self.clone(), ip, bytes, slots))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        use crate::util::LockExt;
        let mut open = self.0.open.locked();
        if let Some(source) = open.get_mut(&self.1) {
            source.count -= 1;
            if source.count == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Share of `max_inflight_request_bytes` and of `max_inflight_requests`
/// one source address may hold for client requests: a quarter, so a client
/// at another address is still served while one attacker holds all it can.
pub const SOURCE_SHARE_DIVISOR: usize = 4;

/// What requests in flight may hold: request slots for clients and for
/// peers, and bytes of client request frames being received or served.
#[derive(Clone)]
pub(super) struct Budgets {
    pub(super) client: Arc<Semaphore>,
    pub(super) peer: Arc<Semaphore>,
    /// In KiB.
    pub(super) client_bytes: Arc<Semaphore>,
    /// The connection's source's share of `client_bytes`, in KiB.
    pub(super) source_bytes: Option<Arc<Semaphore>>,
    /// The connection's source's share of `client`.
    pub(super) source_slots: Option<Arc<Semaphore>>,
}

/// `bytes` in whole KiB, at least 1.
pub(super) fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// The bytes a request holds of its source's share and of the node's
/// budget, released when dropped.
pub(super) type Held = (
    Option<tokio::sync::OwnedSemaphorePermit>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// Reads a whole frame of at most `max` bytes, taking each chunk's bytes
/// from the budgets (if any: the source's share first, then the node's)
/// into `held` before keeping them: when a budget is spent, reading waits,
/// and QUIC flow control stops the sender.
pub(super) async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
    budget: Option<&(Arc<Semaphore>, Arc<Semaphore>)>,
    held: &mut Held,
) -> Result<Vec<u8>, quinn::ReadToEndError> {
    let mut buf = Vec::new();
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.bytes.len() > max {
                    return Err(quinn::ReadToEndError::TooLong);
                }
                if let Some((source, node)) = budget {
                    let units = u32::try_from(kib(chunk.bytes.len())).unwrap_or(u32::MAX);
                    for (budget, slot) in [(source, &mut held.0), (node, &mut held.1)] {
                        let Ok(p) = budget.clone().acquire_many_owned(units).await else {
                            let closed = quinn::ReadError::ClosedStream;
                            return Err(quinn::ReadToEndError::Read(closed));
                        };
                        // One permit per budget, grown chunk by chunk: no
                        // allocation per request.
                        match slot {
                            Some(h) => h.merge(p),
                            None => *slot = Some(p),
                        }
                    }
                }
                buf.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(quinn::ReadToEndError::Read(e)),
        }
    }
}
