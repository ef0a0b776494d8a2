//! Ctrl-C (or SIGTERM) in the middle of a benchmark: the process would die
//! without running the guards that delete its network namespaces and bpffs
//! pins, so a watcher thread does that work and then exits.
//!
//! The handler only sets a flag (all a signal handler may safely do); the
//! daemons the bench started get the terminal's SIGINT themselves, and
//! handlers (unlike blocked signals) do not carry over into them at exec.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use nix::sys::{
    signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
    wait::{waitpid, WaitPidFlag, WaitStatus},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers and starts the watcher.
pub fn clean_up_on_signal() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action)? };
    }
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(100));
        if INTERRUPTED.load(Ordering::SeqCst) {
            eprintln!("interrupted: removing this run's namespaces and pins");
            remove_leftovers(std::process::id());
            std::process::exit(130);
        }
    });
    Ok(())
}

/// Stops this process's children, then deletes the namespaces and pin
/// directories named after its PID (`relay_tests` puts `-PID-` in both).
fn remove_leftovers(pid: u32) {
    let tag = format!("-{pid}-");
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string()])
        .status();
    // Reap them: nobody else will once this process is gone.
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    for (dir, remove) in [("/run/netns", true), ("/sys/fs/bpf/xrelay-test", false)] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.contains(&tag) {
                continue;
            }
            if remove {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            } else {
                let _ = std::fs::remove_dir_all(Path::new(dir).join(&name));
            }
        }
    }
}
