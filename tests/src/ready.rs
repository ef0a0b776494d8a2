//! Waiting for relayd's `READY=1` (see relay_userspace::notify) instead of
//! polling for side effects that may precede readiness.

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::netns::ChildGuard;

/// A notify socket for one relayd; removed on drop.
#[derive(Debug)]
pub struct ReadySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl ReadySocket {
    /// Binds a fresh socket under the temp directory.
    pub fn new() -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("xrelay-notify-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(ReadySocket { sock, path })
    }

    /// Points `cmd`'s NOTIFY_SOCKET here.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.env("NOTIFY_SOCKET", &self.path);
    }

    /// Waits up to 20 s for `READY=1`, failing early if relayd exits.
    pub fn wait(&self, child: &mut ChildGuard) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Some(status) = child.0.try_wait()? {
                bail!("relayd exited during start-up: {status}");
            }
            if let Ok(n) = self.sock.recv(&mut buf) {
                if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") {
                    return Ok(());
                }
            }
        }
        bail!("relayd did not report READY=1 within 20 s")
    }
}

impl Drop for ReadySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts `cmd` (a relayd) and waits for its `READY=1`.
pub fn spawn_ready(cmd: &mut Command) -> Result<ChildGuard> {
    let ready = ReadySocket::new()?;
    ready.configure(cmd);
    let mut child = ChildGuard(cmd.spawn()?);
    ready.wait(&mut child)?;
    Ok(child)
}
