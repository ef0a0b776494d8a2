//! One DTLS 1.2 association, sans I/O: OpenSSL runs the handshake against an
//! in-memory datagram pipe; the caller feeds datagrams and the time in and
//! takes datagrams out.
//!
//! OpenSSL keeps its own retransmission clock (the wall clock); the caller's
//! `now` turns OpenSSL's remaining time into an [`Instant`] and bounds the
//! whole handshake.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foreign_types::ForeignTypeRef;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};

use super::{DtlsCertificate, DtlsError, Fingerprint};
use crate::SrtpProfile;

/// rtpengine's default `--dtls-ciphers`.
pub const DEFAULT_CIPHERS: &str =
    "DEFAULT:!NULL:!aNULL:!SHA256:!SHA384:!aECDH:!AESGCM+AES256:!aPSK";

/// RFC 5764 §4.2's exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Which side of the handshake this endpoint plays (`a=setup`: active is
/// the client, passive the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Client,
    Server,
}

/// Where an association stands; relayd shows it per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// Server waiting for a ClientHello, or client not started.
    New,
    Connecting,
    Connected,
    Failed,
    /// The peer sent close_notify.
    Closed,
}

impl DtlsState {
    pub fn as_str(self) -> &'static str {
        match self {
            DtlsState::New => "new",
            DtlsState::Connecting => "connecting",
            DtlsState::Connected => "connected",
            DtlsState::Failed => "failed",
            DtlsState::Closed => "closed",
        }
    }
}

/// Settings shared by all associations (rtpengine's `--dtls-*` options).
#[derive(Debug, Clone)]
pub struct DtlsConfig {
    /// Largest datagram to write (`--dtls-mtu`, default 1200).
    pub mtu: usize,
    /// OpenSSL cipher list for the key exchange (`--dtls-ciphers`).
    pub ciphers: String,
    /// SRTP profiles offered or accepted, in order of preference.
    pub profiles: Vec<SrtpProfile>,
    /// Give up on a handshake that has not finished in this long.
    pub handshake_timeout: Duration,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            mtu: 1200,
            ciphers: DEFAULT_CIPHERS.to_owned(),
            profiles: SrtpProfile::DTLS.to_vec(),
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// The certificate and settings, made once; each association borrows it.
#[derive(Clone)]
pub struct DtlsContext {
    ctx: SslContext,
    config: DtlsConfig,
}

impl std::fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// OpenSSL's name for a `use_srtp` profile; `None` for those it does not
/// negotiate (AES-256 CM has no DTLS-SRTP number, and OpenSSL leaves
/// out the NULL ciphers RFC 5764 registers).
fn openssl_profile_name(p: SrtpProfile) -> Option<&'static str> {
    match p {
        SrtpProfile::AesCm128HmacSha1_80 => Some("SRTP_AES128_CM_SHA1_80"),
        SrtpProfile::AesCm128HmacSha1_32 => Some("SRTP_AES128_CM_SHA1_32"),
        SrtpProfile::AeadAes128Gcm => Some("SRTP_AEAD_AES_128_GCM"),
        SrtpProfile::AeadAes256Gcm => Some("SRTP_AEAD_AES_256_GCM"),
        SrtpProfile::Aes256CmHmacSha1_80
        | SrtpProfile::Aes256CmHmacSha1_32
        | SrtpProfile::NullHmacSha1_80
        | SrtpProfile::NullHmacSha1_32 => None,
    }
}

impl DtlsContext {
    pub fn new(cert: &DtlsCertificate, config: DtlsConfig) -> Result<Self, DtlsError> {
        if config.profiles.is_empty() {
            return Err(DtlsError::NoSrtpProfile);
        }
        let mut b = SslContext::builder(SslMethod::dtls())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_certificate(&cert.cert)?;
        b.set_private_key(&cert.key)?;
        b.check_private_key()?;
        b.set_cipher_list(&config.ciphers)?;
        // Our MTU (set per association), not a query of the in-memory BIO.
        b.set_options(SslOptions::NO_QUERY_MTU);
        let names = config
            .profiles
            .iter()
            .map(|p| openssl_profile_name(*p).ok_or(DtlsError::NotDtlsProfile(*p)))
            .collect::<Result<Vec<_>, _>>()?;
        b.set_tlsext_use_srtp(&names.join(":"))?;
        Ok(DtlsContext {
            ctx: b.build(),
            config,
        })
    }

    pub fn config(&self) -> &DtlsConfig {
        &self.config
    }
}

/// SRTP master key and salt for one direction.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeyMaterial {
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeyMaterial {
    // Keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SrtpKeyMaterial({}+{} bytes)",
            self.key.len(),
            self.salt.len()
        )
    }
}

/// What a finished handshake yields: the profile, and the keys this side
/// protects with (local, write) and the peer protects with (remote, read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    pub local: SrtpKeyMaterial,
    pub remote: SrtpKeyMaterial,
}

/// The in-memory datagram "socket" OpenSSL reads and writes: one read is
/// one datagram, one write is one datagram.
#[derive(Debug, Default)]
struct Pipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// RFC 7983 demultiplexing: DTLS records start with a content type 20..=63.
pub fn looks_like_dtls(datagram: &[u8]) -> bool {
    datagram.len() >= 13 && (20..=63).contains(&datagram[0])
}

// DTLSv1_get_timeout / DTLSv1_handle_timeout are macros over SSL_ctrl.
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// One DTLS-SRTP association with one peer.
pub struct DtlsEndpoint {
    stream: SslStream<Pipe>,
    role: DtlsRole,
    state: DtlsState,
    started: Option<Instant>,
    deadline: Option<Instant>,
    handshake_timeout: Duration,
    mismatch: Arc<AtomicBool>,
    keys: Option<SrtpKeys>,
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("profile", &self.keys.as_ref().map(|k| k.profile))
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    /// An association that accepts only a peer certificate matching
    /// `remote` (the peer's `a=fingerprint`).
    pub fn new(ctx: &DtlsContext, role: DtlsRole, remote: Fingerprint) -> Result<Self, DtlsError> {
        let mut ssl = Ssl::new(&ctx.ctx)?;
        let mismatch = Arc::new(AtomicBool::new(false));
        let flag = mismatch.clone();
        // Self-signed certificates are the rule in WebRTC: trust comes from
        // the fingerprint signalled in SDP, checked on the leaf certificate.
        ssl.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |_preverified, store| {
                if store.error_depth() != 0 {
                    return true;
                }
                let ok = store
                    .current_cert()
                    .and_then(|c| Fingerprint::of(c, remote.hash).ok())
                    .is_some_and(|fp| fp == remote);
                if !ok {
                    flag.store(true, Ordering::Relaxed);
                }
                ok
            },
        );
        match role {
            DtlsRole::Client => ssl.set_connect_state(),
            DtlsRole::Server => ssl.set_accept_state(),
        }
        ssl.set_mtu(u32::try_from(ctx.config.mtu).unwrap_or(1200))?;
        let stream = SslStream::new(ssl, Pipe::default())?;
        Ok(DtlsEndpoint {
            stream,
            role,
            state: DtlsState::New,
            started: None,
            deadline: None,
            handshake_timeout: ctx.config.handshake_timeout,
            mismatch,
            keys: None,
        })
    }

    pub fn role(&self) -> DtlsRole {
        self.role
    }

    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// The negotiated profile and keys, once connected.
    pub fn keys(&self) -> Option<&SrtpKeys> {
        self.keys.as_ref()
    }

    /// Start the handshake: a client writes its ClientHello; a server only
    /// starts its handshake clock (it waits for the peer).
    pub fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.state != DtlsState::New {
            return Ok(());
        }
        self.started = Some(now);
        if self.role == DtlsRole::Client {
            self.state = DtlsState::Connecting;
            self.drive(now)?;
        }
        Ok(())
    }

    /// Feed one received datagram (the caller has demultiplexed it as DTLS).
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) -> Result<(), DtlsError> {
        if !looks_like_dtls(datagram) {
            return Err(DtlsError::NotDtls);
        }
        match self.state {
            DtlsState::Failed => return Err(DtlsError::Failed),
            DtlsState::Closed => return Err(DtlsError::Closed),
            DtlsState::New => {
                if self.role == DtlsRole::Client {
                    // A client speaks first; the peer must wait for us.
                    return Err(DtlsError::NotStarted);
                }
                self.started.get_or_insert(now);
                self.state = DtlsState::Connecting;
            }
            DtlsState::Connecting | DtlsState::Connected => {}
        }
        self.stream.get_mut().incoming.push_back(datagram.to_vec());
        if self.state == DtlsState::Connected {
            self.read_after_handshake()
        } else {
            self.drive(now)
        }
    }

    /// When [`DtlsEndpoint::handle_timeout`] should next be called: a
    /// retransmission, or the end of the handshake's time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.state, DtlsState::New | DtlsState::Connecting) {
            return None;
        }
        let give_up = self.started.map(|s| s + self.handshake_timeout);
        match (self.deadline, give_up) {
            (Some(d), Some(g)) => Some(d.min(g)),
            (d, g) => d.or(g),
        }
    }

    /// Retransmit a lost flight when due; fail a handshake that has run out of time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        // A started server still waiting for its ClientHello times out too.
        if !matches!(self.state, DtlsState::New | DtlsState::Connecting) || self.started.is_none() {
            return Ok(());
        }
        if self
            .started
            .is_some_and(|s| now.saturating_duration_since(s) >= self.handshake_timeout)
        {
            return self.fail(DtlsError::Timeout);
        }
        if self.state == DtlsState::Connecting && self.deadline.is_some_and(|d| now >= d) {
            // SAFETY: the pointer is this stream's live SSL; HANDLE_TIMEOUT
            // takes no argument (DTLSv1_handle_timeout).
            let r = unsafe {
                openssl_sys::SSL_ctrl(
                    self.stream.ssl().as_ptr(),
                    DTLS_CTRL_HANDLE_TIMEOUT,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return self.fail(DtlsError::Handshake("retransmission limit reached".into()));
            }
            self.drive(now)?;
        }
        Ok(())
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outgoing.pop_front()
    }

    fn fail(&mut self, e: DtlsError) -> Result<(), DtlsError> {
        self.state = DtlsState::Failed;
        self.deadline = None;
        Err(e)
    }

    /// Run the handshake as far as the datagrams in hand allow.
    fn drive(&mut self, now: Instant) -> Result<(), DtlsError> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.deadline = None;
                match self.export_keys() {
                    Ok(keys) => {
                        self.keys = Some(keys);
                        self.state = DtlsState::Connected;
                        Ok(())
                    }
                    Err(e) => self.fail(e),
                }
            }
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                self.deadline = self.openssl_timeout().map(|d| now + d);
                Ok(())
            }
            Err(e) => {
                if self.mismatch.load(Ordering::Relaxed) {
                    self.fail(DtlsError::FingerprintMismatch)
                } else {
                    self.fail(DtlsError::Handshake(e.to_string()))
                }
            }
        }
    }

    /// After the handshake the peer may still retransmit its last flight
    /// (OpenSSL answers it) or close; application data is not ours to take.
    fn read_after_handshake(&mut self) -> Result<(), DtlsError> {
        let mut buf = [0u8; 2048];
        // Bounded: each read consumes at least one queued datagram.
        for _ in 0..64 {
            match self.stream.ssl_read(&mut buf) {
                Ok(_) => continue,
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.state = DtlsState::Closed;
                    return Ok(());
                }
                Err(e) => return Err(DtlsError::Handshake(e.to_string())),
            }
        }
        Ok(())
    }

    /// OpenSSL's time left until it retransmits, if its timer runs.
    fn openssl_timeout(&self) -> Option<Duration> {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: GET_TIMEOUT writes one struct timeval through parg, which
        // points at `tv`, alive for the call; the SSL pointer is live.
        let running = unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                (&mut tv as *mut libc::timeval).cast(),
            )
        };
        (running > 0).then(|| {
            Duration::from_secs(tv.tv_sec.max(0) as u64)
                + Duration::from_micros(tv.tv_usec.max(0) as u64)
        })
    }

    /// RFC 5764 §4.2: client key, server key, client salt, server salt.
    fn export_keys(&self) -> Result<SrtpKeys, DtlsError> {
        let ssl = self.stream.ssl();
        let profile = ssl
            .selected_srtp_profile()
            .and_then(|p| u16::try_from(p.id().as_raw()).ok())
            .and_then(SrtpProfile::from_dtls_id)
            .ok_or(DtlsError::NoSrtpProfile)?;
        let (kl, sl) = (profile.key_len(), profile.salt_len());
        let mut m = vec![0u8; 2 * (kl + sl)];
        ssl.export_keying_material(&mut m, EXPORTER_LABEL, None)?;
        let client = SrtpKeyMaterial {
            key: m[..kl].to_vec(),
            salt: m[2 * kl..2 * kl + sl].to_vec(),
        };
        let server = SrtpKeyMaterial {
            key: m[kl..2 * kl].to_vec(),
            salt: m[2 * kl + sl..].to_vec(),
        };
        let (local, remote) = match self.role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        Ok(SrtpKeys {
            profile,
            local,
            remote,
        })
    }
}
