//! Compiles the XDP program in `src/*.bpf.c` with clang and leaves the object
//! in OUT_DIR, where `src/lib.rs` embeds it.
//!
//! `CLANG` picks the compiler (default `clang-19`); `RELAY_BPF_CFLAGS` adds
//! flags (e.g. `-DRELAY_MAX_STREAMS=1048576`).

use std::{env, path::PathBuf, process::Command};

const PROGRAM: &str = "relay";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    let extra: Vec<String> = env::var("RELAY_BPF_CFLAGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();

    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=RELAY_BPF_CFLAGS");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=include");

    let src = manifest.join("src").join(format!("{PROGRAM}.bpf.c"));
    let obj = out_dir.join(format!("{PROGRAM}.bpf.o"));
    let mut cmd = Command::new(&clang);
    cmd.args([
        "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3",
    ])
    .arg(format!("-I{}", manifest.join("include").display()))
    .args(multiarch_include())
    .args(&extra)
    .arg("-c")
    .arg(&src)
    .arg("-o")
    .arg(&obj);

    let status = match cmd.status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "error: `{clang}` not found: install it with `apt-get install clang-19 libbpf-dev` \
                 (or set CLANG=/path/to/clang)"
            );
            std::process::exit(1);
        }
        Err(e) => panic!("running {clang}: {e}"),
    };
    if !status.success() {
        eprintln!("error: {clang} failed to compile {}", src.display());
        std::process::exit(1);
    }
}

/// `<asm/types.h>` lives under the host's multiarch directory on Debian; the
/// bpf target does not search it by itself.
fn multiarch_include() -> Vec<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        _ => return Vec::new(),
    };
    vec![format!("-I/usr/include/{triple}")]
}
