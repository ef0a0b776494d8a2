//! DTLS-SRTP on relay ports facing a WebRTC peer (relay-media does the
//! protocol): the relay's certificate, made once per process, and what a
//! party's SDP said about its DTLS.

use std::sync::OnceLock;

use relay_media::dtls::{
    CertKey, CertSignature, DtlsCertificate, DtlsConfig, DtlsContext, FingerprintHash,
};

/// A party's DTLS as its latest SDP declared it (`a=setup`, `a=fingerprint`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerDtls {
    pub setup: Option<String>,
    pub fingerprint: Option<String>,
}

/// The relay's DTLS identity: one certificate for every call, made at start,
/// so it changes with every restart (rtpengine does the same).
#[derive(Debug)]
pub struct RelayDtls {
    pub certificate: DtlsCertificate,
    pub context: DtlsContext,
}

/// How the certificate is made (rtpengine's `--dtls-*` options).
#[derive(Clone, Debug)]
pub struct DtlsSettings {
    pub key: CertKey,
    pub signature: CertSignature,
    pub config: DtlsConfig,
    /// PEM certificate and key to use instead of a generated pair.
    pub pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl Default for DtlsSettings {
    fn default() -> Self {
        DtlsSettings {
            key: CertKey::Prime256v1,
            signature: CertSignature::Sha256,
            config: DtlsConfig::default(),
            pem: None,
        }
    }
}

/// The `--dtls-*` options as given.
#[derive(Debug, Default)]
pub struct DtlsOptions<'a> {
    pub cert_cipher: Option<&'a str>,
    pub rsa_key_size: Option<u32>,
    pub signature: Option<&'a str>,
    pub ciphers: Option<String>,
    pub mtu: Option<u32>,
    pub cert_file: Option<&'a std::path::Path>,
    pub key_file: Option<&'a std::path::Path>,
}

impl DtlsSettings {
    /// Checks the options (the files are read here, so a bad path stops
    /// relayd at start, not at the first WebRTC call).
    pub fn from_options(o: DtlsOptions<'_>) -> Result<DtlsSettings, String> {
        let mut s = DtlsSettings::default();
        match o.cert_cipher.map(str::to_ascii_lowercase).as_deref() {
            None | Some("prime256v1") => {}
            Some("rsa") => s.key = CertKey::Rsa(o.rsa_key_size.unwrap_or(2048)),
            Some(other) => {
                return Err(format!(
                    "bad --dtls-cert-cipher {other:?}: prime256v1 or RSA"
                ))
            }
        }
        if let CertKey::Rsa(bits) = s.key {
            if !(1024..=16384).contains(&bits) {
                return Err(format!("bad --dtls-rsa-key-size {bits}: 1024 to 16384"));
            }
        }
        match o.signature.map(str::to_ascii_lowercase).as_deref() {
            None | Some("sha-256" | "sha256") => {}
            Some("sha-1" | "sha1") => s.signature = CertSignature::Sha1,
            Some(other) => return Err(format!("bad --dtls-signature {other:?}: SHA-256 or SHA-1")),
        }
        if let Some(c) = o.ciphers {
            s.config.ciphers = c;
        }
        if let Some(mtu) = o.mtu {
            if mtu < 576 {
                return Err(format!("bad --dtls-mtu {mtu}: at least 576"));
            }
            s.config.mtu = mtu as usize;
        }
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        s.pem = match (o.cert_file, o.key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => return Err("--dtls-cert-file and --dtls-key-file go together".into()),
        };
        Ok(s)
    }
}

static IDENTITY: OnceLock<Option<RelayDtls>> = OnceLock::new();

fn make(settings: &DtlsSettings) -> Result<RelayDtls, relay_media::dtls::DtlsError> {
    let certificate = match &settings.pem {
        Some((cert, key)) => DtlsCertificate::from_pem(cert, key)?,
        None => DtlsCertificate::generate(settings.key, settings.signature)?,
    };
    let context = DtlsContext::new(&certificate, settings.config.clone())?;
    Ok(RelayDtls {
        certificate,
        context,
    })
}

/// Makes the identity from `settings` (at start; a second call keeps the
/// first identity and says so).
pub fn init(settings: &DtlsSettings) -> Result<(), relay_media::dtls::DtlsError> {
    let made = make(settings)?;
    if let Ok(fp) = made.certificate.fingerprint(FingerprintHash::Sha256) {
        tracing::info!(fingerprint = %fp, "DTLS certificate ready");
    }
    if IDENTITY.set(Some(made)).is_err() {
        tracing::warn!("DTLS identity already set; keeping the first");
    }
    Ok(())
}

/// The relay's identity; made with the defaults on first use when `init`
/// was not called (tests, tools). None only if OpenSSL could not make one.
pub fn identity() -> Option<&'static RelayDtls> {
    IDENTITY
        .get_or_init(|| match make(&DtlsSettings::default()) {
            Ok(made) => Some(made),
            Err(e) => {
                tracing::error!("cannot make a DTLS certificate: {e}");
                None
            }
        })
        .as_ref()
}

/// The relay's `a=fingerprint` value with the hash `DTLS-fingerprint` names
/// (sha-256 when it names none or one OpenSSL lacks, as rtpengine).
pub fn fingerprint(hash: Option<&str>) -> Option<String> {
    let hash = hash
        .and_then(FingerprintHash::from_sdp_name)
        .unwrap_or(FingerprintHash::Sha256);
    identity()?
        .certificate
        .fingerprint(hash)
        .ok()
        .map(|f| f.to_string())
}

/// `UDP/TLS/RTP/SAVP` and `UDP/TLS/RTP/SAVPF`: RTP keyed by DTLS-SRTP.
pub fn is_dtls_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVP")
        || proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVPF")
}

/// The relay's `a=setup` toward a party: `actpass` in an offer; in an
/// answer the opposite of the offerer's choice, and for an offerer that
/// left it to us (`actpass` or nothing) `active`, unless `DTLS=passive`
/// asks otherwise, as rtpengine 10.5 answers.
pub fn setup_for(is_offer: bool, offerer_setup: Option<&str>, flag: Option<&str>) -> &'static str {
    if is_offer {
        return "actpass";
    }
    match offerer_setup.map(str::to_ascii_lowercase).as_deref() {
        Some("active") => "passive",
        Some("passive") => "active",
        _ if flag == Some("passive") => "passive",
        _ => "active",
    }
}

/// `DTLS=off|no|disable`: no DTLS toward the recipient.
pub fn is_off(flag: Option<&str>) -> bool {
    matches!(flag, Some("off" | "no" | "disable" | "disabled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_follows_rtpengine() {
        assert_eq!(setup_for(true, Some("active"), Some("passive")), "actpass");
        assert_eq!(setup_for(false, Some("actpass"), None), "active");
        assert_eq!(setup_for(false, None, Some("passive")), "passive");
        assert_eq!(setup_for(false, Some("ACTIVE"), Some("active")), "passive");
        assert_eq!(setup_for(false, Some("passive"), Some("passive")), "active");
    }

    #[test]
    fn fingerprint_is_stable_and_names_its_hash() {
        let a = fingerprint(None).unwrap();
        assert!(a.starts_with("sha-256 "), "{a}");
        assert_eq!(fingerprint(Some("md5")).unwrap(), a);
        assert!(fingerprint(Some("sha-1")).unwrap().starts_with("sha-1 "));
        assert_eq!(fingerprint(Some("sha-256")).unwrap(), a);
    }
}

/// Handshake trouble on one port, counted for `query` and `relayctl`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DtlsCounters {
    /// Handshakes that did not finish in time.
    pub timeouts: u64,
    /// Peer certificates that did not match the peer's `a=fingerprint`.
    pub fingerprint_mismatches: u64,
    /// Other handshake failures (alerts, no common SRTP profile, ...).
    pub failures: u64,
}

/// The DTLS-SRTP endpoint of a port facing a WebRTC party.
#[derive(Debug)]
pub struct PortDtls {
    pub endpoint: relay_media::dtls::DtlsEndpoint,
    /// The party's fingerprint the endpoint checks against.
    pub remote: relay_media::dtls::Fingerprint,
    /// Where the party's DTLS came from last (replies go there).
    pub peer: Option<std::net::SocketAddr>,
    pub counters: DtlsCounters,
}

/// What a finished handshake gives the SRTP transform: the profile and the
/// keys this port protects with toward its party (local) and the party
/// protects with (remote).
pub type PortSrtpKeys = relay_media::dtls::SrtpKeys;

/// A port's DTLS state and counters for summaries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DtlsSummary {
    /// `new`, `connecting`, `connected`, `failed`, `closed`.
    pub state: &'static str,
    /// `client` (setup active) or `server` (passive).
    pub role: &'static str,
    /// The negotiated SRTP profile once connected (its SDES name).
    pub profile: Option<&'static str>,
    pub counters: DtlsCounters,
}

impl PortDtls {
    pub fn summary(&self) -> DtlsSummary {
        DtlsSummary {
            state: self.endpoint.state().as_str(),
            role: match self.endpoint.role() {
                DtlsRole::Client => "client",
                DtlsRole::Server => "server",
            },
            profile: self.endpoint.keys().map(|k| k.profile.sdes_name()),
            counters: self.counters,
        }
    }

    /// The keys for SRTP, once the handshake finished.
    pub fn keys(&self) -> Option<&PortSrtpKeys> {
        self.endpoint.keys()
    }

    /// Counts an error of the endpoint (input that is simply not ours,
    /// or arrives after a failure, is not a new failure).
    fn count(&mut self, local: std::net::SocketAddr, e: &DtlsError) {
        match e {
            DtlsError::FingerprintMismatch => self.counters.fingerprint_mismatches += 1,
            DtlsError::Timeout => self.counters.timeouts += 1,
            DtlsError::NotDtls | DtlsError::Failed | DtlsError::Closed | DtlsError::NotStarted => {
                return;
            }
            _ => self.counters.failures += 1,
        }
        tracing::info!(%local, error = %e, "DTLS handshake failed");
    }
}

use relay_media::dtls::{DtlsEndpoint, DtlsError, DtlsRole, Fingerprint};

use super::{model::Media, port::MediaPort};

/// Gives `media`'s ports a DTLS endpoint in `role` checking the party's
/// fingerprint (keeping one that already does), or takes it away (None).
/// A client starts its handshake at once. Returns whether anything changed.
pub(crate) fn set_endpoint(media: &Media, role: Option<DtlsRole>, now: std::time::Instant) -> bool {
    let want = role.and_then(|r| {
        let fp = media.dtls.fingerprint.as_deref()?;
        match Fingerprint::parse_sdp(fp) {
            Ok(fp) => Some((r, fp)),
            Err(e) => {
                tracing::info!(error = %e, "party's DTLS fingerprint unusable: no DTLS");
                None
            }
        }
    });
    let mut changed = false;
    for (i, port) in media.ports().into_iter().enumerate() {
        // A party muxing RTCP runs one handshake, on the RTP port (RFC 5764
        // §4.1.2); an idle endpoint on the RTCP port would only time out.
        let want = if i == 1 && media.rtcp_mux {
            &None
        } else {
            &want
        };
        let mut out = Vec::new();
        let dest = {
            let mut st = port.state();
            let same = match (&st.dtls, want) {
                (Some(d), Some((r, fp))) => d.endpoint.role() == *r && d.remote == *fp,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            changed = true;
            st.dtls = None;
            let Some((r, fp)) = want else { continue };
            let Some(id) = identity() else { continue };
            let mut endpoint = match DtlsEndpoint::new(&id.context, *r, fp.clone()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "DTLS endpoint not made");
                    continue;
                }
            };
            let _ = endpoint.start(now);
            out.extend(std::iter::from_fn(|| endpoint.poll_transmit()));
            let dest = st.learner.destination(st.symmetric);
            st.dtls = Some(PortDtls {
                endpoint,
                remote: fp.clone(),
                peer: None,
                counters: DtlsCounters::default(),
            });
            dest
        };
        send(port, &out, dest);
    }
    changed
}

fn send(port: &MediaPort, datagrams: &[Vec<u8>], dest: Option<std::net::SocketAddr>) {
    let Some(dest) = dest else { return };
    for d in datagrams {
        if let Err(e) = port.socket.try_send_to(d, dest) {
            tracing::trace!(local = %port.local, %dest, error = %e, "DTLS datagram not sent");
        }
    }
}

/// Hands a datagram that looks like DTLS (RFC 7983: first byte 20..=63)
/// to `port`'s endpoint; false when the port runs none (relay it).
pub(crate) fn on_datagram(
    port: &MediaPort,
    payload: &[u8],
    src: std::net::SocketAddr,
    now: std::time::Instant,
) -> bool {
    let out = {
        let mut st = port.state();
        let Some(d) = st.dtls.as_mut() else {
            return false;
        };
        let was = d.endpoint.state();
        d.peer = Some(src);
        if let Err(e) = d.endpoint.handle_datagram(payload, now) {
            d.count(port.local, &e);
        }
        if was != d.endpoint.state()
            && d.endpoint.state() == relay_media::dtls::DtlsState::Connected
        {
            tracing::info!(
                local = %port.local,
                %src,
                profile = ?d.keys().map(|k| k.profile),
                "DTLS connected"
            );
        }
        std::iter::from_fn(|| d.endpoint.poll_transmit()).collect::<Vec<_>>()
    };
    send(port, &out, Some(src));
    true
}

/// Retransmits lost flights and fails handshakes that ran out of time
/// (the call manager's tick).
pub(crate) fn on_tick(port: &MediaPort, now: std::time::Instant) {
    let (out, dest) = {
        let mut st = port.state();
        let fallback = st.learner.destination(st.symmetric);
        let Some(d) = st.dtls.as_mut() else { return };
        if d.endpoint.poll_timeout().is_none()
            && d.endpoint.state() != relay_media::dtls::DtlsState::New
        {
            return;
        }
        if let Err(e) = d.endpoint.handle_timeout(now) {
            d.count(port.local, &e);
        }
        let out: Vec<_> = std::iter::from_fn(|| d.endpoint.poll_transmit()).collect();
        (out, d.peer.or(fallback))
    };
    send(port, &out, dest);
}

impl super::CallManager {
    /// Gives the ports of media `index` of party `tag` a DTLS endpoint in
    /// `role` (None: none), after an answer settled who is client; the
    /// ports and those sending to them leave the kernel while DTLS runs.
    pub fn set_dtls(&mut self, call_id: &str, tag: &str, index: usize, role: Option<DtlsRole>) {
        let Self { calls, kernel, .. } = self;
        let Some(call) = calls.get(call_id) else {
            return;
        };
        let Some(party) = call.find(tag) else { return };
        let Some(media) = call.monologues[party].medias.get(index) else {
            return;
        };
        if !set_endpoint(media, role, std::time::Instant::now()) {
            return;
        }
        for port in media.ports() {
            kernel.sync(port);
            let sink = port.state().sink.upgrade();
            if let Some(sink) = sink {
                kernel.sync(&sink);
            }
        }
        // Ports whose sink is this party's (the other direction).
        for other in &call.monologues {
            for md in &other.medias {
                for port in md.ports() {
                    let sink = port.state().sink.upgrade();
                    if sink.is_some_and(|s| {
                        media.ports().iter().any(|p| std::sync::Arc::ptr_eq(p, &s))
                    }) {
                        kernel.sync(port);
                    }
                }
            }
        }
    }

    /// The SRTP keys the DTLS handshake on the port bound to `local` gave,
    /// for the SRTP transform.
    pub fn dtls_keys(&self, local: std::net::SocketAddr) -> Option<PortSrtpKeys> {
        self.calls
            .values()
            .flat_map(super::model::Call::ports)
            .find(|p| p.local == local)
            .and_then(|p| p.state().dtls.as_ref().and_then(|d| d.keys().cloned()))
    }
}
