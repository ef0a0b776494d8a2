//! Reading a range of an array map in a few system calls
//! (`BPF_MAP_LOOKUP_BATCH`), which aya does not offer. A stream table row
//! is 65 536 entries: a lookup each took ~50 ms per relay address in
//! `relayctl streams`, a batch read of the row ~13 ms (the kernel still
//! copies entry by entry).

use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_BATCH` (include/uapi/linux/bpf.h, kernel 5.6+).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries `start .. start + count` of the array map `map` (values of
/// `size_of::<V>()` bytes, which must be the map's value size). Fewer come
/// back when the map ends first.
///
/// `V` must be plain data for which any bytes are a valid value (the ABI
/// structs of `relay_common`, which are `aya::Pod`).
pub fn read_array_range<V: aya::Pod>(
    map: BorrowedFd<'_>,
    start: u32,
    count: u32,
) -> io::Result<Vec<V>> {
    let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(count as usize);
    let mut keys: Vec<u32> = vec![0; count as usize];
    let mut filled = 0usize;
    // The batch resumes *after* its in_batch key, so "from `start`" is
    // "after start - 1", and from 0 is no in_batch at all.
    let mut after: Option<u32> = start.checked_sub(1);
    let mut next: u32 = 0;
    while filled < count as usize {
        let mut attr = BatchAttr {
            in_batch: after.as_ref().map_or(0, |k| k as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys[filled..].as_mut_ptr() as u64,
            values: values.spare_capacity_mut().as_mut_ptr() as u64,
            count: count - filled as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers with room for `attr.count` keys
        // and values, and at u32 batch keys (an array's key), all alive for
        // the call; the kernel writes at most `attr.count` of each and says
        // how many in attr.count.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let got = attr.count as usize;
        let end_of_map = rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
        if rc < 0 && !end_of_map {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `got` more values after the `filled`
        // already there, and any bytes are a valid V.
        unsafe { values.set_len(filled + got) };
        filled += got;
        if end_of_map || got == 0 {
            break;
        }
        after = Some(next);
    }
    Ok(values
        .into_iter()
        // SAFETY: every element up to len was written by the kernel.
        .map(|v| unsafe { v.assume_init() })
        .collect())
}
