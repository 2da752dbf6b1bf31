//! A userspace UDP proxy between a worker and the leader that can drop,
//! delay, duplicate, reorder or cut traffic, decided by a seeded generator
//! so a failing run can be replayed.
//!
//! The worker dials the proxy's address; each client address gets its own
//! upstream socket to the leader. Packets in both directions pass through
//! the same fault model.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The fault model, adjustable while the proxy runs.
#[derive(Default)]
pub struct Faults {
    /// Per-mille of packets dropped.
    pub loss: AtomicU32,
    /// Per-mille of packets sent twice.
    pub duplicate: AtomicU32,
    /// Per-mille of packets held back behind later ones.
    pub reorder: AtomicU32,
    /// Extra delay of every packet, in microseconds.
    pub delay_us: AtomicU64,
    /// Drop everything.
    pub cut: AtomicBool,
}

struct Packet {
    due: Instant,
    seq: u64,
    data: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

impl PartialEq for Packet {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Packet {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Min-heap on (due, seq).
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

struct Shared {
    faults: Faults,
    rng: Mutex<u64>,
    queue: Mutex<BinaryHeap<Packet>>,
    wake: Condvar,
    seq: AtomicU64,
    stop: AtomicBool,
    /// Packets dropped so far.
    dropped: AtomicU64,
}

impl Shared {
    fn roll(&self, per_mille: u32) -> bool {
        if per_mille == 0 {
            return false;
        }
        let mut x = self.rng.lock().expect("rng");
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % 1000) < u64::from(per_mille)
    }

    fn forward(&self, data: &[u8], via: &Arc<UdpSocket>, to: SocketAddr) {
        let f = &self.faults;
        if f.cut.load(Ordering::Relaxed) || self.roll(f.loss.load(Ordering::Relaxed)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut delay = Duration::from_micros(f.delay_us.load(Ordering::Relaxed));
        if self.roll(f.reorder.load(Ordering::Relaxed)) {
            delay += Duration::from_millis(5);
        }
        let copies = if self.roll(f.duplicate.load(Ordering::Relaxed)) {
            2
        } else {
            1
        };
        let mut q = self.queue.lock().expect("queue");
        for _ in 0..copies {
            q.push(Packet {
                due: Instant::now() + delay,
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                data: data.to_vec(),
                via: via.clone(),
                to,
            });
        }
        self.wake.notify_one();
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// Where workers should connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Proxies to `leader`, with faults seeded by `seed`.
    #[must_use]
    pub fn start(leader: SocketAddr, seed: u64) -> Proxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind proxy"));
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = front.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            faults: Faults::default(),
            rng: Mutex::new(seed | 1),
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            seq: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        // Delivery of queued packets at their due time.
        {
            let s = shared.clone();
            threads.push(std::thread::spawn(move || {
                let mut q = s.queue.lock().expect("queue");
                while !s.stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    match q.peek() {
                        Some(p) if p.due <= now => {
                            let p = q.pop().expect("peeked");
                            let _ = p.via.send_to(&p.data, p.to);
                        }
                        Some(p) => {
                            let wait = p.due - now;
                            q = s.wake.wait_timeout(q, wait).expect("wait").0;
                        }
                        None => {
                            q = s
                                .wake
                                .wait_timeout(q, Duration::from_millis(50))
                                .expect("wait")
                                .0;
                        }
                    }
                }
            }));
        }
        // Client -> leader, creating an upstream socket per client.
        {
            let s = shared.clone();
            let front = front.clone();
            threads.push(std::thread::spawn(move || {
                let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                while !s.stop.load(Ordering::Relaxed) {
                    let Ok((n, client)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    let up = upstream.entry(client).or_insert_with(|| {
                        let u = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind upstream"));
                        u.set_read_timeout(Some(Duration::from_millis(50)))
                            .expect("timeout");
                        // Leader -> this client.
                        let (s2, u2, f2) = (s.clone(), u.clone(), front.clone());
                        std::thread::spawn(move || {
                            let mut b = vec![0u8; 65536];
                            while !s2.stop.load(Ordering::Relaxed) {
                                if let Ok((n, _)) = u2.recv_from(&mut b) {
                                    s2.forward(&b[..n], &f2, client);
                                }
                            }
                        });
                        u
                    });
                    s.forward(&buf[..n], up, leader);
                }
            }));
        }
        Proxy {
            addr,
            shared,
            threads,
        }
    }

    /// The fault model.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Sets the loss rate in per-mille.
    pub fn set_loss(&self, per_mille: u32) {
        self.shared.faults.loss.store(per_mille, Ordering::Relaxed);
    }

    /// Cuts (true) or heals (false) the link.
    pub fn cut(&self, cut: bool) {
        self.shared.faults.cut.store(cut, Ordering::Relaxed);
    }

    /// Packets dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
