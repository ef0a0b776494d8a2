//! A steady one-way packet stream, as a phone sends RTP (50 packets a
//! second), with every packet numbered so that a test can say exactly which
//! ones were lost and when they were sent.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// RTP-sized payload: a 12-byte header and 160 bytes of G.711 at 20 ms.
const PAYLOAD: usize = 172;

/// A stream running in two threads until [`PacedStream::stop`].
#[derive(Debug)]
pub struct PacedStream {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<Vec<Instant>>,
    receiver: JoinHandle<BTreeSet<u32>>,
}

/// What a stream sent and what arrived.
#[derive(Debug)]
pub struct PacedOutcome {
    /// Send time of each packet, by number.
    pub sent: Vec<Instant>,
    /// Numbers of the packets that arrived.
    pub received: BTreeSet<u32>,
}

impl PacedOutcome {
    /// Numbers of the packets that never arrived.
    pub fn lost(&self) -> Vec<u32> {
        (0..self.sent.len() as u32)
            .filter(|n| !self.received.contains(n))
            .collect()
    }

    /// Lost packets sent outside `window` (a period in which loss is allowed).
    pub fn lost_outside(&self, window: std::ops::Range<Instant>) -> Vec<u32> {
        self.lost()
            .into_iter()
            .filter(|&n| !window.contains(&self.sent[n as usize]))
            .collect()
    }

    /// Packets sent at or after `t` that arrived.
    pub fn received_after(&self, t: Instant) -> usize {
        self.received
            .iter()
            .filter(|&&n| self.sent.get(n as usize).is_some_and(|s| *s >= t))
            .count()
    }
}

impl PacedStream {
    /// Sends `pps` packets a second from `from` to `to`; counts arrivals on `rx`.
    pub fn start(from: UdpSocket, to: SocketAddr, rx: UdpSocket, pps: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gap = Duration::from_secs(1) / pps.max(1);
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                let start = Instant::now();
                let mut payload = [0u8; PAYLOAD];
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.len() as u32;
                    payload[..4].copy_from_slice(&n.to_be_bytes());
                    sent.push(Instant::now());
                    // A send error (ICMP unreachable reported on the socket)
                    // is a lost packet, not the end of the stream.
                    let _ = from.send_to(&payload, to);
                    let next = start + gap * (n + 1);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                sent
            })
        };
        let receiver = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let _ = rx.set_read_timeout(Some(Duration::from_millis(100)));
                let mut got = BTreeSet::new();
                let mut buf = [0u8; 2048];
                let mut stopped_at: Option<Instant> = None;
                loop {
                    if let Ok((n, _)) = rx.recv_from(&mut buf) {
                        if n >= 4 {
                            got.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                        }
                    }
                    // Half a second after the sender stops, for stragglers.
                    if stop.load(Ordering::Relaxed) {
                        let at = *stopped_at.get_or_insert_with(Instant::now);
                        if at.elapsed() > Duration::from_millis(500) {
                            return got;
                        }
                    }
                }
            })
        };
        PacedStream {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops sending, waits for the last packets, and says what happened.
    pub fn stop(self) -> PacedOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("sender thread");
        let received = self.receiver.join().expect("receiver thread");
        PacedOutcome { sent, received }
    }
}
