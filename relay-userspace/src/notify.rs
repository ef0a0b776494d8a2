//! systemd-style readiness notification (`Type=notify`): when
//! `NOTIFY_SOCKET` is set, relayd sends `READY=1` once it forwards, and
//! `STOPPING=1` when it begins to shut down. Tests use the same signal
//! instead of polling.

use std::os::unix::net::UnixDatagram;

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not notify NOTIFY_SOCKET");
    }
}

/// Tells the service manager that relayd is forwarding.
pub fn ready() {
    send("READY=1");
}

/// Tells the service manager that relayd is stopping.
pub fn stopping() {
    send("STOPPING=1");
}
