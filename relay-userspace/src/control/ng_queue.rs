//! The NG requests waiting to be handled, queued per sender so that one
//! flooding address cannot starve the others.
//!
//! The socket is drained as fast as datagrams arrive (a receive is cheap
//! next to handling an offer), into one queue per source address. The
//! handler takes requests round-robin over the sources, one per turn, and
//! of a source's requests those for calls that exist already (`answer`,
//! `delete`, `query`, and `ping`, which proxies use to decide whether the
//! relay is alive) before new work (`offer` and anything else): under load
//! a proxy's established calls keep being answered and torn down while its
//! new calls wait. The order between sources is fairness alone: any sender
//! can claim any command, so a class that jumped the turns would be the one
//! a flood used. A source whose queue is full, or any request when the
//! queue holds its byte budget, is shed and counted; a lone client is never
//! throttled, since a sender is only held back while others wait.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

/// Requests one source may have waiting.
pub const PER_SOURCE: usize = 512;
/// Bytes all waiting requests may take (a datagram is up to 64 KiB).
pub const BYTE_BUDGET: usize = 32 << 20;

/// Whether a request concerns an existing call (or liveness) or new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `answer`, `delete`, `query`, `ping`, `subscribe answer`,
    /// `unsubscribe`: handled first.
    Existing,
    /// `offer` and everything else.
    New,
}

impl Class {
    /// The class of an NG datagram, from its `command` value (found by a
    /// scan, not a full decode: this runs for every datagram, flood
    /// included, before anything else).
    pub fn of(datagram: &[u8]) -> Self {
        match command_of(datagram) {
            // `subscribe answer` completes and `unsubscribe` frees what a
            // call holds; `subscribe request` takes ports, like an offer.
            Some(
                b"answer" | b"delete" | b"query" | b"ping" | b"subscribe answer" | b"unsubscribe",
            ) => Class::Existing,
            _ => Class::New,
        }
    }
}

/// The value of the first `7:command` key of a bencoded datagram, if it is
/// a string.
fn command_of(datagram: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"7:command";
    let at = datagram.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &datagram[at..];
    let colon = rest.iter().take(4).position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    rest.get(colon + 1..colon + 1 + len)
}

/// One waiting request.
#[derive(Debug)]
pub struct Request {
    /// Who sent it (the reply goes back there).
    pub from: SocketAddr,
    /// The datagram.
    pub datagram: Vec<u8>,
}

#[derive(Debug, Default)]
struct Source {
    existing: VecDeque<Request>,
    new: VecDeque<Request>,
}

impl Source {
    fn len(&self) -> usize {
        self.existing.len() + self.new.len()
    }

    fn queue(&mut self, class: Class) -> &mut VecDeque<Request> {
        match class {
            Class::Existing => &mut self.existing,
            Class::New => &mut self.new,
        }
    }
}

/// Why a request was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// Its source has [`PER_SOURCE`] requests waiting.
    SourceFull,
    /// All waiting requests take [`BYTE_BUDGET`] bytes.
    BudgetFull,
}

/// Requests by source, served round-robin, each source's existing calls
/// first.
#[derive(Debug, Default)]
pub struct FairQueue {
    sources: HashMap<IpAddr, Source>,
    /// Sources with requests waiting, in turn order (each once).
    turns: VecDeque<IpAddr>,
    bytes: usize,
    waiting: usize,
}

impl FairQueue {
    /// Queues `request` behind its source's earlier ones of its class.
    pub fn push(&mut self, request: Request, class: Class) -> Result<(), Shed> {
        let ip = request.from.ip();
        if self.bytes + request.datagram.len() > BYTE_BUDGET {
            return Err(Shed::BudgetFull);
        }
        let source = self.sources.entry(ip).or_default();
        if source.len() >= PER_SOURCE {
            return Err(Shed::SourceFull);
        }
        if source.len() == 0 {
            self.turns.push_back(ip);
        }
        self.bytes += request.datagram.len();
        self.waiting += 1;
        source.queue(class).push_back(request);
        Ok(())
    }

    /// The next request to handle: the one of the source whose turn it is
    /// (its existing calls' first); that source then goes to the back.
    pub fn pop(&mut self) -> Option<Request> {
        let ip = self.turns.pop_front()?;
        let source = self.sources.get_mut(&ip)?;
        let request = source
            .existing
            .pop_front()
            .or_else(|| source.new.pop_front())?;
        if source.len() > 0 {
            self.turns.push_back(ip);
        } else {
            self.sources.remove(&ip);
        }
        self.bytes -= request.datagram.len();
        self.waiting -= 1;
        Some(request)
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from: &str, command: &str) -> (Request, Class) {
        let datagram = format!("c1 d7:command{}:{}e", command.len(), command).into_bytes();
        let class = Class::of(&datagram);
        (
            Request {
                from: from.parse().unwrap(),
                datagram,
            },
            class,
        )
    }

    fn command(r: &Request) -> String {
        String::from_utf8(command_of(&r.datagram).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn classes_come_from_the_command() {
        for (c, class) in [
            ("answer", Class::Existing),
            ("delete", Class::Existing),
            ("query", Class::Existing),
            ("ping", Class::Existing),
            ("subscribe answer", Class::Existing),
            ("unsubscribe", Class::Existing),
            ("offer", Class::New),
            ("subscribe request", Class::New),
            ("publish", Class::New),
            ("list", Class::New),
        ] {
            assert_eq!(request("10.0.0.1:1", c).1, class, "{c}");
        }
        assert_eq!(Class::of(b"garbage"), Class::New);
        assert_eq!(Class::of(b"c d7:command99999:x"), Class::New);
    }

    #[test]
    fn a_flooding_source_takes_turns_with_the_others() {
        let mut q = FairQueue::default();
        for _ in 0..100 {
            let (r, c) = request("10.0.0.66:5000", "offer");
            q.push(r, c).unwrap();
        }
        let (r, c) = request("10.0.0.2:5060", "offer");
        q.push(r, c).unwrap();
        let first: Vec<IpAddr> = (0..3).map(|_| q.pop().unwrap().from.ip()).collect();
        assert!(
            first.contains(&"10.0.0.2".parse().unwrap()),
            "the second source is served within its turn: {first:?}"
        );
        assert_eq!(q.len(), 98);
    }

    #[test]
    fn a_sources_existing_calls_go_before_its_new_work() {
        let mut q = FairQueue::default();
        for (from, c) in [
            ("10.0.0.1:1", "offer"),
            ("10.0.0.1:1", "offer"),
            ("10.0.0.1:1", "answer"),
            ("10.0.0.2:1", "offer"),
            ("10.0.0.1:1", "delete"),
        ] {
            let (r, class) = request(from, c);
            q.push(r, class).unwrap();
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|r| format!("{} {}", r.from.ip(), command(&r)))
            .collect();
        assert_eq!(
            order,
            [
                "10.0.0.1 answer",
                "10.0.0.2 offer",
                "10.0.0.1 delete",
                "10.0.0.1 offer",
                "10.0.0.1 offer",
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_ping_flood_does_not_starve_anothers_offers() {
        let mut q = FairQueue::default();
        for _ in 0..100 {
            let (r, c) = request("10.0.0.66:1", "ping");
            q.push(r, c).unwrap();
        }
        let (r, c) = request("10.0.0.2:1", "offer");
        q.push(r, c).unwrap();
        let served: Vec<String> = (0..2).map(|_| command(&q.pop().unwrap())).collect();
        assert!(served.contains(&"offer".to_owned()), "{served:?}");
    }

    #[test]
    fn a_full_source_is_shed_others_are_not() {
        let mut q = FairQueue::default();
        for _ in 0..PER_SOURCE {
            let (r, c) = request("10.0.0.66:5000", "ping");
            q.push(r, c).unwrap();
        }
        let (r, c) = request("10.0.0.66:5000", "ping");
        assert_eq!(q.push(r, c), Err(Shed::SourceFull));
        let (r, c) = request("10.0.0.2:5060", "ping");
        assert_eq!(q.push(r, c), Ok(()));
    }

    #[test]
    fn the_byte_budget_bounds_memory() {
        let mut q = FairQueue::default();
        let big = |i: u32| Request {
            from: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1)),
            datagram: vec![b'x'; 60_000],
        };
        let mut queued = 0;
        while q.push(big(queued), Class::New).is_ok() {
            queued += 1;
        }
        assert_eq!(queued as usize, BYTE_BUDGET / 60_000);
        q.pop().unwrap();
        assert!(
            q.push(big(9999), Class::New).is_ok(),
            "room again after a pop"
        );
    }
}
