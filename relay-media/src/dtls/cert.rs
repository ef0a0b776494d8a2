//! The relay's DTLS certificate: self-signed and made at start (so it rotates
//! with every restart), or loaded from PEM files. Key and signature choices
//! mirror rtpengine's `--dtls-cert-cipher`, `--dtls-rsa-key-size` and
//! `--dtls-signature`.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use super::{DtlsError, Fingerprint, FingerprintHash};

/// The key type of a generated certificate (`--dtls-cert-cipher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKey {
    /// ECDSA on P-256 (rtpengine's default, and what browsers make).
    Prime256v1,
    /// RSA with this many bits (`--dtls-rsa-key-size`, default 2048).
    Rsa(u32),
}

/// The hash of a generated certificate's self-signature (`--dtls-signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSignature {
    Sha256,
    Sha1,
}

/// A certificate and its private key, shared by every DTLS endpoint.
#[derive(Clone)]
pub struct DtlsCertificate {
    pub(super) cert: X509,
    pub(super) key: PKey<Private>,
}

impl std::fmt::Debug for DtlsCertificate {
    // The key stays out of logs; the fingerprint identifies the certificate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fp = self.fingerprint(FingerprintHash::Sha256).ok();
        f.debug_struct("DtlsCertificate")
            .field("sha256", &fp.map(|f| f.hex()))
            .finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// A fresh self-signed certificate, valid from a day ago for 30 days
    /// (peers check the fingerprint, not the dates; the margin covers skew).
    pub fn generate(key: CertKey, signature: CertSignature) -> Result<Self, DtlsError> {
        let key = match key {
            CertKey::Prime256v1 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                PKey::from_ec_key(EcKey::generate(&group)?)?
            }
            CertKey::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?)?,
        };
        let md = match signature {
            CertSignature::Sha256 => MessageDigest::sha256(),
            CertSignature::Sha1 => MessageDigest::sha1(),
        };
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "xrelay")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(63, MsbOption::MAYBE_ZERO, false)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        let (from, until) = (
            Asn1Time::from_unix(now - 86_400)?,
            Asn1Time::from_unix(now + 30 * 86_400)?,
        );
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        b.set_pubkey(&key)?;
        b.sign(&key, md)?;
        Ok(DtlsCertificate {
            cert: b.build(),
            key,
        })
    }

    /// A certificate and key from PEM (the first certificate of the chain is used).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, DtlsError> {
        let cert = X509::from_pem(cert_pem)?;
        let key = PKey::private_key_from_pem(key_pem)?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(DtlsError::KeyMismatch);
        }
        Ok(DtlsCertificate { cert, key })
    }

    /// This certificate's fingerprint, for `a=fingerprint`.
    pub fn fingerprint(&self, hash: FingerprintHash) -> Result<Fingerprint, DtlsError> {
        Fingerprint::of(&self.cert, hash)
    }

    /// The certificate in PEM, for logs or for a peer in tests.
    pub fn cert_pem(&self) -> Result<Vec<u8>, DtlsError> {
        Ok(self.cert.to_pem()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_differ_and_round_trip_through_pem() {
        let a = DtlsCertificate::generate(CertKey::Prime256v1, CertSignature::Sha256).unwrap();
        let b = DtlsCertificate::generate(CertKey::Prime256v1, CertSignature::Sha256).unwrap();
        let fa = a.fingerprint(FingerprintHash::Sha256).unwrap();
        assert_ne!(fa, b.fingerprint(FingerprintHash::Sha256).unwrap());
        let key_pem = a.key.private_key_to_pem_pkcs8().unwrap();
        let c = DtlsCertificate::from_pem(&a.cert_pem().unwrap(), &key_pem).unwrap();
        assert_eq!(c.fingerprint(FingerprintHash::Sha256).unwrap(), fa);
        let other_key = b.key.private_key_to_pem_pkcs8().unwrap();
        assert!(matches!(
            DtlsCertificate::from_pem(&a.cert_pem().unwrap(), &other_key),
            Err(DtlsError::KeyMismatch)
        ));
    }

    #[test]
    fn rsa_and_sha1_certificates_are_made_too() {
        let c = DtlsCertificate::generate(CertKey::Rsa(1024), CertSignature::Sha1).unwrap();
        assert_eq!(
            c.fingerprint(FingerprintHash::Sha1).unwrap().digest.len(),
            20
        );
    }
}
