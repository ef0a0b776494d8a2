//! Taking over what an earlier relayd left on a pin directory.
//!
//! A relayd that stops for a restart leaves its program attached and its
//! maps pinned, so kernel streams keep forwarding while no relayd runs. The
//! next relayd on the same pin directory adopts them when their layout is
//! exactly what it would create (same map types, key and value sizes and
//! sizes it configures): it loads its program on the pinned maps and swaps
//! it onto the pinned links in one `bpf_link_update` each, so no packet
//! meets an interface without a program. Anything else on the directory
//! (another layout, another ABI version, a relayd that now forwards in
//! userspace) is detached and removed, and the log says so.

use std::path::{Path, PathBuf};

use aya::{
    maps::MapInfo,
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        Xdp,
    },
};
use relay_common::{IfaceStatus, MAP_IFACES, MAP_STREAMS, MAP_STREAM_STATE};

use super::{link_pin, release_stale_link, XdpConfig, XdpError, MAP_NAMES};

/// Map flags the kernel sets by itself (a DEVMAP is created read-only for
/// programs), which the object's definition therefore lacks.
const KERNEL_SET_FLAGS: u32 = (1 << 7) | (1 << 8); // BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG

/// The maps' sizes this relayd sets at load time; every other property of
/// a map is the object's.
fn configured_entries(name: &str, config: &XdpConfig) -> Option<u32> {
    match name {
        MAP_STREAMS => Some(config.stream_entries()),
        MAP_STREAM_STATE => Some(config.max_streams),
        _ => None,
    }
}

/// Why the pins under `dir` cannot be adopted (None: they can): every map
/// the program pins must be there with the type, key and value sizes and
/// entries of the object's definition (as configured), and a link for
/// every interface. Nothing pinned at all is not adoptable either.
pub fn not_adoptable(dir: &Path, config: &XdpConfig) -> Option<String> {
    let object = match aya_obj::Object::parse(relay_ebpf::relay_object()) {
        Ok(object) => object,
        Err(e) => return Some(format!("the embedded object does not parse: {e}")),
    };
    for name in MAP_NAMES {
        let Some(def) = object.maps.get(name) else {
            return Some(format!("the object has no map {name}"));
        };
        let info = match MapInfo::from_pin(dir.join(name)) {
            Ok(info) => info,
            Err(_) => return Some(format!("map {name} is not pinned")),
        };
        let entries = configured_entries(name, config).unwrap_or(def.max_entries());
        let found = (
            info.map_type().ok().map(|t| t as u32),
            info.key_size(),
            info.value_size(),
            info.max_entries(),
            info.map_flags() & !KERNEL_SET_FLAGS,
        );
        let wanted = (
            Some(def.map_type()),
            def.key_size(),
            def.value_size(),
            entries,
            def.map_flags(),
        );
        if found != wanted {
            return Some(format!(
                "map {name} has another layout or size (type, key, value, entries, flags: \
                 {found:?}, this relayd's: {wanted:?})"
            ));
        }
    }
    if let Some(why) = rows_of_another_range(dir, config) {
        return Some(why);
    }
    config
        .interfaces
        .iter()
        .find(|iface| !live_link(dir, iface))
        .map(|iface| {
            if link_pin(dir, iface).exists() {
                format!("the pinned link for {iface} is defunct (the interface was deleted or created again)")
            } else {
                format!("no pinned link for {iface}")
            }
        })
}

/// Why the pinned relay addresses' rows do not fit this configuration
/// (rows of another port range: the same table size can hold other rows),
/// if they do not.
fn rows_of_another_range(dir: &Path, config: &XdpConfig) -> Option<String> {
    let maps = match super::RelayMaps::open_pinned(dir) {
        Ok(maps) => maps,
        Err(e) => return Some(format!("the pinned maps cannot be read: {e}")),
    };
    let other = maps
        .rows()
        .find(|a| a.row_ports() != config.row_ports)
        .copied();
    other.map(|a| {
        format!(
            "the pinned stream table has rows for ports {}-{}, this relayd's are {}-{}",
            a.row_first_port,
            a.row_last_port,
            config.row_ports.start(),
            config.row_ports.end()
        )
    })
}

/// Puts `program` on the link pinned at `from` in place of whatever runs
/// there (one atomic `bpf_link_update`), and pins the link as ours at `to`
/// (which may be `from`).
pub fn take_over_link(
    program: &mut Xdp,
    from: &Path,
    to: &Path,
    iface: &str,
) -> Result<PinnedLink, XdpError> {
    let pinned = PinnedLink::from_pin(from).map_err(XdpError::Link)?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(XdpError::Link)?;
    let program_err = |source| XdpError::Program {
        op: format!("replacing the program on {iface}"),
        source,
    };
    let id = program.attach_to_link(link).map_err(program_err)?;
    let link = program.take_link(id).map_err(program_err)?;
    let fd = FdLink::try_from(link).map_err(XdpError::Link)?;
    let pin_err = |source| XdpError::Pin {
        path: to.to_owned(),
        source,
    };
    if from == to {
        // Pinned already: the pin is never gone, not even for a moment in
        // which a crash would drop the last reference and detach.
        drop(fd);
        return PinnedLink::from_pin(to).map_err(XdpError::Link);
    }
    // Pinned where it belongs first, then the old name goes.
    let pinned = fd.pin(to).map_err(pin_err)?;
    let _ = std::fs::remove_file(from);
    Ok(pinned)
}

/// A directory beside `ours` in which a relayd of another ABI version (or
/// layout, see [`move_aside`]) left its program on every one of
/// `interfaces`: the one to take over once this relayd's maps hold the
/// restored calls.
pub fn predecessor(pin_dir: &Path, ours: &Path, interfaces: &[String]) -> Option<PathBuf> {
    versioned_dirs(pin_dir)
        .filter(|dir| dir != ours)
        .find(|dir| holds_links(dir, interfaces))
}

/// Whether `dir` holds a live pinned link for every one of `interfaces`.
pub fn holds_links(dir: &Path, interfaces: &[String]) -> bool {
    interfaces.iter().all(|i| live_link(dir, i))
}

/// Whether the link pinned in `dir` for `iface` still runs on that
/// interface: a link whose netdev was deleted (and maybe created again
/// under the same name, with another ifindex) is defunct, and updating it
/// fails.
pub fn live_link(dir: &Path, iface: &str) -> bool {
    let Ok(ifindex) = crate::netdev::ifindex(iface) else {
        return false;
    };
    link_ifindex(&link_pin(dir, iface)) == Some(ifindex)
}

/// The interface the XDP link pinned at `path` is attached to (0 when its
/// netdev is gone), read with BPF_OBJ_GET and BPF_OBJ_GET_INFO_BY_FD, which
/// aya's link info does not expose for XDP.
fn link_ifindex(path: &Path) -> Option<u32> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_XDP: u32 = 6;
    #[repr(C, align(8))]
    #[derive(Default)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C, align(8))]
    #[derive(Default)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // struct bpf_link_info: type, id, prog_id, then a union aligned to 8
    // whose `xdp` member is the ifindex.
    #[repr(C, align(8))]
    #[derive(Default)]
    struct LinkInfo {
        kind: u32,
        id: u32,
        prog_id: u32,
        _pad: u32,
        ifindex: u32,
        rest: [u32; 11],
    }
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let get = ObjGet {
        pathname: name.as_ptr() as u64,
        ..ObjGet::default()
    };
    // SAFETY: BPF_OBJ_GET reads the path string, alive for the call, and
    // returns a new descriptor (or -1).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGet,
            std::mem::size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor the kernel just returned, owned from here.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    let mut info = LinkInfo::default();
    let query = InfoByFd {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: std::mem::size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`, alive
    // for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &query as *const InfoByFd,
            std::mem::size_of::<InfoByFd>(),
        )
    };
    (rc == 0 && info.kind == BPF_LINK_TYPE_XDP).then_some(info.ifindex)
}

/// Renames versioned directory `dir` to `<dir>-replaced`, where
/// [`predecessor`] finds it (its maps do not fit this relayd's
/// configuration, but its program forwards until the takeover).
pub fn move_aside(dir: &Path) -> Result<(), XdpError> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push("-replaced");
    let aside = dir.with_file_name(name);
    if aside.exists() {
        remove_versioned(&aside);
    }
    std::fs::rename(dir, &aside).map_err(|source| XdpError::MoveAside {
        path: dir.to_owned(),
        source,
    })
}

/// How an earlier relayd attached each interface, from its `ifaces` map
/// (empty when the map cannot be read as this relayd's layout).
pub fn statuses(dir: &Path) -> Vec<IfaceStatus> {
    let read = || -> Result<Vec<IfaceStatus>, aya::maps::MapError> {
        let map =
            aya::maps::Map::from_map_data(aya::maps::MapData::from_pin(dir.join(MAP_IFACES))?)?;
        let table = aya::maps::HashMap::<_, u32, IfaceStatus>::try_from(map)?;
        table.iter().map(|e| e.map(|(_, s)| s)).collect()
    };
    read().unwrap_or_default()
}

/// The `abi-vN` directories under `pin_dir`.
fn versioned_dirs(pin_dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|dir| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("abi-v"))
        })
}

/// Detaches and removes everything pinned under instance directory
/// `pin_dir` (every ABI version but those in `keep`), logging what it
/// finds. For pins this relayd will not adopt: left in place, a program
/// nobody programs would keep forwarding dead calls and drop new ones at
/// its DoS shield (and hold the interfaces against a program of another
/// version).
pub fn remove_instance(pin_dir: &Path, keep: &[&Path]) {
    for dir in versioned_dirs(pin_dir) {
        if !keep.contains(&dir.as_path()) {
            remove_versioned(&dir);
            tracing::warn!(dir = %dir.display(), "removed the pins of an earlier relayd");
        }
    }
    if keep.is_empty() {
        let _ = std::fs::remove_dir(pin_dir);
    }
}

/// Detaches the links pinned in one versioned directory and unpins its maps.
pub fn remove_versioned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let pins: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    for path in &pins {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(iface) = name.strip_prefix("link_") {
            release_stale_link(dir, iface);
        } else if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "could not unpin");
        }
    }
    let _ = std::fs::remove_dir(dir);
}
