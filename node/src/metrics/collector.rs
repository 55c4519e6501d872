//! The scrape-time collectors: copy what the node's subsystems keep
//! (hint and anti-entropy counts, liveness, ring share, storage size; the
//! QUIC transport's peer round-trip times) into the registry at each scrape.

use super::{self as metrics, Metrics};
use crate::cluster::liveness::Liveness;
use crate::cluster::membership::Membership;
use crate::repair::exchange::AntiEntropy;
use crate::repair::hints::Hints;
use crate::rpc::quic::QuicTransport;
use crate::storage::Store;
use std::sync::Arc;

/// Copies what other modules keep (hint and anti-entropy counts, liveness,
/// ring share, storage size) into the registry at each scrape.
pub fn collector(
    store: Store,
    hints: Hints,
    aae: Arc<AntiEntropy>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
) -> metrics::Collector {
    use std::sync::atomic::Ordering::Relaxed;
    // Taken here, in the runtime: a scrape may render on a blocking thread.
    let runtime = tokio::runtime::Handle::try_current().ok();
    Box::new(move |m: &Metrics| {
        if let Some(rt) = &runtime {
            m.gauge(metrics::RUNTIME_WORKERS, &[])
                .set(rt.metrics().num_workers() as f64);
        }
        let h = hints.stats();
        m.counter(metrics::HINTS_STORED, &[])
            .absolute(h.stored.load(Relaxed));
        m.counter(metrics::HINTS_DELIVERED, &[])
            .absolute(h.delivered.load(Relaxed));
        m.counter(metrics::HINTS_DROPPED, &[])
            .absolute(h.dropped.load(Relaxed));
        m.gauge(metrics::HINTS_PENDING, &[])
            .set(h.pending.load(Relaxed) as f64);
        m.gauge(metrics::HINTS_BYTES, &[])
            .set(h.bytes.load(Relaxed) as f64);
        m.gauge(metrics::HINT_OLDEST_AGE, &[])
            .set(hints.oldest_age().as_secs_f64());
        m.counter(metrics::AAE_KEYS_REPAIRED, &[])
            .absolute(aae.stats().keys_repaired.load(Relaxed));
        m.counter(metrics::EXPIRED_REAPED, &[])
            .absolute(aae.expired_removed());
        m.gauge(metrics::AAE_TREES_BUILT, &[])
            .set(if aae.built() { 1.0 } else { 0.0 });
        let me = membership.me().id.clone();
        let (mut up, mut down) = (0u32, 0u32);
        for member in membership.members() {
            let is_up = liveness.is_up(&member.id);
            if is_up {
                up += 1;
            } else {
                down += 1;
            }
            if member.id != me {
                m.gauge(metrics::PEER_UP, &[("peer", member.id.as_str())])
                    .set(if is_up { 1.0 } else { 0.0 });
            }
        }
        m.gauge(metrics::MEMBERS, &[("state", "up")])
            .set(f64::from(up));
        m.gauge(metrics::MEMBERS, &[("state", "down")])
            .set(f64::from(down));
        m.gauge(metrics::RING_OWNERSHIP, &[])
            .set(membership.ring().ownership(&me));
        if let Some(size) = store.size() {
            m.gauge(metrics::STORAGE_DISK_BYTES, &[])
                .set(size.disk_bytes as f64);
            m.gauge(metrics::STORAGE_KEYS, &[]).set(size.keys as f64);
        }
        if let Some(disk) = store.disk() {
            m.gauge(metrics::DISK_FREE_BYTES, &[])
                .set(disk.space.free as f64);
            m.gauge(metrics::DISK_WATERMARK_BYTES, &[])
                .set(disk.client_floor as f64);
            // A store whose commit failed refuses every write, whatever
            // the free space says now.
            let refusing = if store.has_failed() {
                2
            } else {
                disk.pressure as u8
            };
            m.gauge(metrics::DISK_REFUSING, &[])
                .set(f64::from(refusing));
        }
        m.gauge(metrics::STORAGE_COMMIT_RUNNING, &[])
            .set(store.commit_running().as_secs_f64());
    })
}

/// Copies the QUIC transport's open peer connections and their round-trip
/// times into the registry at each scrape.
pub fn peer_connections(
    quic: Arc<QuicTransport>,
    membership: Arc<Membership>,
) -> metrics::Collector {
    Box::new(move |m: &Metrics| {
        let open = quic.open_connections();
        m.gauge(metrics::CONNECTIONS, &[("kind", "peer_out")])
            .set(open.len() as f64);
        for (addr, rtt) in open {
            if let Some(peer) = membership.id_at(addr) {
                m.gauge(metrics::PEER_RTT, &[("peer", peer.as_str())])
                    .set(rtt.as_secs_f64());
                m.gauge(metrics::PEER_PROTOCOL, &[("peer", peer.as_str())])
                    .set(f64::from(quic.version_for(addr)));
            }
        }
    })
}
