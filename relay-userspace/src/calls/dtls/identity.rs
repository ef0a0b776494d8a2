//! The relay's DTLS identity: one certificate for every call, made at
//! start from rtpengine's `--dtls-*` options or loaded from PEM files.

use std::sync::OnceLock;

use relay_media::dtls::{
    CertKey, CertSignature, DtlsCertificate, DtlsConfig, DtlsContext, FingerprintHash,
};

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
