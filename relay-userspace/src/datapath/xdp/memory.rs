//! Kernel memory the program's maps hold, as the kernel accounts it (the
//! `memlock` line of a map descriptor's fdinfo, what `bpftool map show`
//! prints), so an operator sizing `--max-streams` sees what it costs.

use std::{
    fmt,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::maps::MapData;

use super::MAP_NAMES;

/// Memory of each pinned map, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapMemory {
    /// (map name, bytes), in [`MAP_NAMES`] order.
    pub maps: Vec<(&'static str, u64)>,
}

impl MapMemory {
    /// Reads the memory of every map pinned under `dir`; maps that are not
    /// pinned (or whose fdinfo has no memlock line) are left out.
    pub fn of_pins(dir: &Path) -> Self {
        let maps = MAP_NAMES
            .iter()
            .filter_map(|name| {
                let map = MapData::from_pin(dir.join(name)).ok()?;
                Some((*name, memlock(&map)?))
            })
            .collect();
        Self { maps }
    }

    /// All maps together.
    pub fn total(&self) -> u64 {
        self.maps.iter().map(|(_, bytes)| bytes).sum()
    }

    /// One map's bytes.
    pub fn of(&self, name: &str) -> Option<u64> {
        self.maps.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }
}

impl fmt::Display for MapMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", mib(self.total()))?;
        let mut first = true;
        for (name, bytes) in &self.maps {
            let sep = if first { " (" } else { ", " };
            first = false;
            write!(f, "{sep}{name} {}", mib(*bytes))?;
        }
        if !first {
            write!(f, ")")?;
        }
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The kernel's `memlock` figure for `map`.
pub fn memlock(map: &MapData) -> Option<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    parse_memlock(&info)
}

fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\n\
                    key_size:\t4\nvalue_size:\t192\nmax_entries:\t65536\nmap_flags:\t0x400\n\
                    map_extra:\t0x0\nmemlock:\t12587008\nmap_id:\t42\n";
        assert_eq!(parse_memlock(info), Some(12_587_008));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
    }

    #[test]
    fn shows_total_and_each_map() {
        let m = MapMemory {
            maps: vec![("streams", 16 << 20), ("stream_state", 12 << 20)],
        };
        assert_eq!(m.total(), 28 << 20);
        assert_eq!(m.of("stream_state"), Some(12 << 20));
        assert_eq!(
            m.to_string(),
            "28.0 MiB (streams 16.0 MiB, stream_state 12.0 MiB)"
        );
    }
}
