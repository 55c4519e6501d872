//! Fault injection on the real QUIC path, for tests: a wrapper of quinn's
//! UDP socket that drops datagrams between chosen addresses (two-way and
//! one-way partitions) or at random (seeded loss). Nodes started with a
//! [`Faults`] handle (see [`crate::start::start_with_faults`]) send and receive
//! through it; everything above the socket — QUIC, TLS, the node — is the
//! production code.

use crate::util::LockExt;
use quinn::{udp::RecvMeta, AsyncUdpSocket, UdpPoller};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::{HashMap, HashSet},
    fmt,
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

/// Delays recorded per directed (from, to) pair.
type HeldDelays = HashMap<(SocketAddr, SocketAddr), Vec<Duration>>;

/// Most delays [`Faults::record_delays`] keeps per directed pair.
pub const MAX_DELAY_SAMPLES: usize = 500_000;

/// The faults in force, shared by every socket of a test cluster.
pub struct Faults {
    /// Directed (from, to) pairs whose datagrams are dropped.
    blocked: Mutex<HashSet<(SocketAddr, SocketAddr)>>,
    /// Random loss, in datagrams per million.
    loss_ppm: AtomicU32,
    /// Directed (from, to) pairs whose datagrams are delayed: (base, jitter).
    delayed: Mutex<HashMap<(SocketAddr, SocketAddr), (Duration, Duration)>>,
    delayed_count: AtomicU64,
    /// Realized delays per directed pair, timed at the socket, when on.
    samples: Mutex<Option<HeldDelays>>,
    rng: Mutex<StdRng>,
    dropped: AtomicU64,
    seed: u64,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("seed", &self.seed)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// No faults yet; random loss draws from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            blocked: Mutex::new(HashSet::new()),
            loss_ppm: AtomicU32::new(0),
            delayed: Mutex::new(Default::default()),
            delayed_count: AtomicU64::new(0),
            samples: Mutex::new(None),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            dropped: AtomicU64::new(0),
            seed,
        })
    }

    /// The seed of the random loss.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn blocked(&self) -> std::sync::MutexGuard<'_, HashSet<(SocketAddr, SocketAddr)>> {
        self.blocked.locked()
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut blocked = self.blocked();
        for x in a {
            for y in b {
                blocked.insert((*x, *y));
                blocked.insert((*y, *x));
            }
        }
    }

    /// Drops what `from` sends to `to` (not the other way).
    pub fn block_one_way(&self, from: SocketAddr, to: SocketAddr) {
        self.blocked().insert((from, to));
    }

    /// Drops each datagram with probability `ppm` per million.
    pub fn set_loss_ppm(&self, ppm: u32) {
        self.loss_ppm.store(ppm.min(1_000_000), Ordering::Relaxed);
    }

    /// Delays what `from` sends to `to` by `base` plus a seeded random part
    /// of up to `jitter` (jitter reorders datagrams, which QUIC reads as loss).
    pub fn delay(&self, from: SocketAddr, to: SocketAddr, base: Duration, jitter: Duration) {
        self.delayed.locked().insert((from, to), (base, jitter));
    }

    /// Removes every partition, delay and the random loss.
    pub fn heal(&self) {
        self.blocked().clear();
        self.delayed.locked().clear();
        self.set_loss_ppm(0);
    }

    /// Starts (or stops and discards) recording how long each delayed
    /// datagram was actually held, per directed pair (at most
    /// [`MAX_DELAY_SAMPLES`] each): the drawn delay plus the timer's and the
    /// scheduler's lateness, which a loaded machine adds.
    pub fn record_delays(&self, on: bool) {
        *self.samples.locked() = on.then(HashMap::new);
    }

    /// The delays recorded so far for datagrams from `from` to `to`.
    pub fn delay_samples(&self, from: SocketAddr, to: SocketAddr) -> Vec<Duration> {
        self.samples
            .locked()
            .as_ref()
            .and_then(|m| m.get(&(from, to)).cloned())
            .unwrap_or_default()
    }

    fn record_delay(&self, from: SocketAddr, to: SocketAddr, held: Duration) {
        if let Some(m) = self.samples.locked().as_mut() {
            let v = m.entry((from, to)).or_default();
            if v.len() < MAX_DELAY_SAMPLES {
                v.push(held);
            }
        }
    }

    /// Datagrams delayed so far.
    pub fn delayed(&self) -> u64 {
        self.delayed_count.load(Ordering::Relaxed)
    }

    fn delay_of(&self, from: SocketAddr, to: SocketAddr) -> Option<Duration> {
        let (base, jitter) = *self.delayed.locked().get(&(from, to))?;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
            Duration::from_nanos(self.rng.locked().random_range(0..nanos))
        };
        self.delayed_count.fetch_add(1, Ordering::Relaxed);
        Some(base + extra)
    }

    /// Datagrams dropped so far (proof that the injector injects).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drops(&self, from: SocketAddr, to: SocketAddr) -> bool {
        let cut = self.blocked().contains(&(from, to));
        let ppm = self.loss_ppm.load(Ordering::Relaxed);
        let lost = ppm > 0 && self.rng.locked().random_range(0..1_000_000) < ppm;
        if cut || lost {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        cut || lost
    }

    /// Wraps a node's socket so that it obeys these faults.
    pub fn wrap(
        self: &Arc<Self>,
        inner: Arc<dyn AsyncUdpSocket>,
    ) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let local = inner.local_addr()?;
        Ok(Arc::new(FaultySocket {
            inner,
            local,
            faults: self.clone(),
        }))
    }
}

/// A UDP socket that drops what the [`Faults`] say.
struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    local: SocketAddr,
    faults: Arc<Faults>,
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultySocket({})", self.local)
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        if self.faults.drops(self.local, transmit.destination) {
            return Ok(()); // lost on the wire
        }
        if let Some(wait) = self.faults.delay_of(self.local, transmit.destination) {
            // On the wire for `wait`: send a copy later (if the socket is
            // busy then, the datagram is lost, as on a congested link).
            let (inner, destination, contents) = (
                self.inner.clone(),
                transmit.destination,
                transmit.contents.to_vec(),
            );
            let (ecn, src_ip) = (transmit.ecn, transmit.src_ip);
            let (faults, from) = (self.faults.clone(), self.local);
            let held_since = tokio::time::Instant::now();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let t = quinn::udp::Transmit {
                    destination,
                    ecn,
                    contents: &contents,
                    segment_size: None,
                    src_ip,
                };
                let _ = inner.try_send(&t);
                faults.record_delay(from, destination, held_since.elapsed());
            });
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = match self.inner.poll_recv(cx, bufs, meta) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        for m in meta.iter_mut().take(n) {
            if self.faults.blocked().contains(&(m.addr, self.local)) {
                self.faults.dropped.fetch_add(1, Ordering::Relaxed);
                m.len = 0; // quinn skips an empty datagram
            }
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        // One datagram per transmit, so a drop decision is per datagram.
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
