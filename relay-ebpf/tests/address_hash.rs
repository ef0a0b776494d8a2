//! The address table's slot hash exists twice: `relay_address_hash` in
//! relay_abi.h, which the XDP program runs, and relay-common's
//! `address_slot`, which relayd places addresses with. A relay address the
//! two disagree on is one the program never finds, so this compiles the C
//! function for the host (no BPF, no root) and compares the two on IPv4,
//! IPv6 and scattered addresses.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Addresses to compare: consecutive IPv4 (as a relay's interfaces are),
/// scattered IPv4 and IPv6 from a fixed pseudo-random sequence, and edge
/// values.
fn addresses() -> Vec<[u8; 16]> {
    let mapped = |v4: u32| {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&v4.to_be_bytes());
        a
    };
    let mut out: Vec<[u8; 16]> = (0..512u32).map(|i| mapped(0x0a00_0000 + i)).collect();
    // xorshift64: reproducible without a crate.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    out.extend((0..512).map(|_| mapped(next() as u32)));
    out.extend((0..512).map(|_| {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&next().to_ne_bytes());
        a[8..].copy_from_slice(&next().to_ne_bytes());
        a
    }));
    out.extend([[0u8; 16], [0xff; 16], mapped(0), mapped(u32::MAX)]);
    out
}

/// A C program printing `relay_address_hash` of each address, one per line.
fn c_source(addresses: &[[u8; 16]]) -> String {
    let rows: Vec<String> = addresses
        .iter()
        .map(|a| {
            let bytes: Vec<String> = a.iter().map(|b| format!("{b:#04x}")).collect();
            format!("\t{{{}}},", bytes.join(", "))
        })
        .collect();
    format!(
        "#include <stdio.h>\n#include \"relay_abi.h\"\n\
         static const __u8 addresses[][16] = {{\n{}\n}};\n\
         int main(void)\n{{\n\
         \tfor (unsigned i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++)\n\
         \t\tprintf(\"%u\\n\", relay_address_hash(addresses[i]));\n\
         \treturn 0;\n}}\n",
        rows.join("\n")
    )
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compile_and_run(source: &str, dir: &Path) -> String {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let (src, exe) = (dir.join("hash.c"), dir.join("hash"));
    std::fs::write(&src, source).unwrap();
    let status = Command::new(&clang)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("-I{}", include.display()))
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running {clang} (the build needs it too): {e}"));
    assert!(
        status.success(),
        "{clang} failed on relay_abi.h for the host"
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success(), "the hash program failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn relay_address_hash_agrees_with_relay_common() {
    let dir = std::env::temp_dir().join(format!("xrelay-address-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir);
    let addresses = addresses();
    let printed = compile_and_run(&c_source(&addresses), &scratch.0);
    let from_c: Vec<u32> = printed.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(from_c.len(), addresses.len(), "one slot per address");
    for (a, c) in addresses.iter().zip(&from_c) {
        assert_eq!(
            relay_common::address_slot(a),
            *c,
            "slot of {a:02x?}: relay-common vs relay_abi.h"
        );
    }
    // A hash that put everything in a few slots would agree too.
    let distinct: std::collections::HashSet<_> = from_c.iter().collect();
    assert!(distinct.len() > 1000, "{} distinct slots", distinct.len());
}
