//! A relay port's UDP socket, registered with the runtime for readability
//! only.
//!
//! Tokio's `UdpSocket` registers for reading and writing, and a fresh
//! socket is writable at once: every registration (four per offer) put an
//! event in the epoll set and woke the idle runtime worker, only to record
//! a readiness nobody waited for. Here the registration asks for reading
//! alone, so opening a port wakes no one. Sends go straight to the
//! non-blocking socket; in the rare case it is full, [`MediaSocket::send_to`]
//! waits through a second, write-only registration made for that wait.
//!
//! The methods mirror the `UdpSocket` ones the forwarder uses.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsFd, AsRawFd, RawFd},
};

use tokio::io::{unix::AsyncFd, Interest};

/// A non-blocking UDP socket whose readiness to read the runtime tracks.
#[derive(Debug)]
pub struct MediaSocket {
    inner: AsyncFd<UdpSocket>,
}

impl MediaSocket {
    /// Registers `socket` (already non-blocking) with the current runtime.
    pub fn from_std(socket: UdpSocket) -> io::Result<Self> {
        Ok(MediaSocket {
            inner: register(socket, Interest::READABLE)?,
        })
    }

    /// Whether the socket may have a datagram (or an error) to read; if
    /// not yet, `cx`'s waker is woken when it may (the runtime's reactor
    /// wakes it, on a worker thread). Readiness is kept either way.
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.inner.poll_read_ready(cx).map(drop)
    }

    /// Waits until the socket may have a datagram (or an error) to read.
    pub async fn readable(&self) -> io::Result<()> {
        // Dropping the guard keeps the readiness: `try_io` clears it.
        self.inner.readable().await.map(drop)
    }

    /// Runs `io` on the socket. For reading, only while it is known to be
    /// readable, and a `WouldBlock` from `io` clears that; for writing, at
    /// once (no write readiness is tracked: the socket is non-blocking).
    pub fn try_io<R>(
        &self,
        interest: Interest,
        io: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        if interest.is_readable() {
            self.inner.try_io(Interest::READABLE, |_| io())
        } else {
            io()
        }
    }

    /// Sends `payload` to `dest` if the send buffer has room now (a STUN
    /// response: one the peer retransmits for if it is lost).
    pub fn try_send_to(&self, payload: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.inner.get_ref().send_to(payload, dest)
    }

    /// Sends `payload` to `dest`, waiting for room in the send buffer.
    pub async fn send_to(&self, payload: &[u8], dest: SocketAddr) -> io::Result<usize> {
        match self.inner.get_ref().send_to(payload, dest) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            sent => return sent,
        }
        // The socket is full: wait on a duplicate descriptor registered for
        // writing (the epoll set cannot hold the same descriptor twice).
        let writer = register(
            self.inner.get_ref().as_fd().try_clone_to_owned()?,
            Interest::WRITABLE,
        )?;
        loop {
            let mut ready = writer.writable().await?;
            match ready.try_io(|_| self.inner.get_ref().send_to(payload, dest)) {
                Ok(sent) => return sent,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Registers an owned descriptor with the current runtime for `interest`.
fn register<T: AsRawFd + AsFd>(owned: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` owns its descriptor (a socket or an `OwnedFd`), which stays
    // open and unchanged until the `AsyncFd` holding it is dropped.
    unsafe { AsyncFd::register_with_interest(owned, interest) }.map_err(|e| e.into_parts().1)
}

impl AsRawFd for MediaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bound() -> (MediaSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let local = socket.local_addr().unwrap();
        (MediaSocket::from_std(socket).unwrap(), local)
    }

    #[tokio::test]
    async fn reads_when_a_datagram_arrives_and_sends_at_once() {
        let (a, a_addr) = bound();
        let (b, b_addr) = bound();
        // Nothing to read yet: a fresh socket is not "ready".
        let early = tokio::time::timeout(Duration::from_millis(50), a.readable()).await;
        assert!(early.is_err(), "readable without a datagram");
        assert_eq!(b.send_to(b"ping", a_addr).await.unwrap(), 4);
        let sent = b.try_io(Interest::WRITABLE, || {
            b.inner.get_ref().send_to(b"two", a_addr)
        });
        assert_eq!(sent.unwrap(), 3);
        tokio::time::timeout(Duration::from_secs(5), a.readable())
            .await
            .expect("readable")
            .unwrap();
        let mut buf = [0u8; 16];
        let mut read = || a.try_io(Interest::READABLE, || a.inner.get_ref().recv_from(&mut buf));
        assert_eq!(read().unwrap(), (4, b_addr));
        assert_eq!(read().unwrap(), (3, b_addr));
        // Drained: the WouldBlock clears the readiness, so the next read
        // is refused until a new datagram arrives.
        assert_eq!(read().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(read().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
