//! Compiles the benchmark's load generator and sink (`bpf/bench.bpf.c`) with
//! clang into OUT_DIR, where `src/bpf.rs` embeds it. Same compiler choice as
//! relay-ebpf (`CLANG`, default `clang-19`).

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf");

    let src = manifest.join("bpf/bench.bpf.c");
    let mut cmd = Command::new(&clang);
    cmd.args([
        "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3",
    ]);
    // <asm/types.h> is under the host's multiarch directory on Debian.
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => {
            cmd.arg("-I/usr/include/x86_64-linux-gnu");
        }
        Ok("aarch64") => {
            cmd.arg("-I/usr/include/aarch64-linux-gnu");
        }
        _ => {}
    }
    cmd.arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(out_dir.join("bench.bpf.o"));
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(_) => {
            eprintln!("error: {clang} failed to compile {}", src.display());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!(
                "error: running `{clang}`: {e} (apt-get install clang-19 libbpf-dev, or set CLANG)"
            );
            std::process::exit(1);
        }
    }
}
