use super::*;
use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// RFC 3711 appendix B.3 (key derivation): master key and salt ...
const B3_MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const B3_MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";
// ... and the session keys it derives for SRTP.
const B3_CIPHER_KEY: &str = "C61E7A93744F39EE10734AFE3FF7A087";
const B3_CIPHER_SALT: &str = "30CBBC08863D8C85D49DB34A9AE1";
const B3_AUTH_KEY: &str = "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4";

const SSRC: u32 = 0xdeca_fbad;

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x0f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&0xcafe_babe_u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    // A sender report without report blocks: 28 bytes, length field 6.
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x11; 20]);
    p
}

/// SRTP (RFC 3711 §4.1.1, §4.2) computed independently of libsrtp from the
/// B.3 session keys: AES-CM keystream over the payload, HMAC-SHA1 over the
/// packet and the ROC, 80-bit tag.
fn reference_protect(plain: &[u8], roc: u32) -> Vec<u8> {
    let seq = u16::from_be_bytes([plain[2], plain[3]]);
    let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
    let index = (u64::from(roc) << 16) | u64::from(seq);
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&hex(B3_CIPHER_SALT));
    for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
        iv[4 + i] ^= b;
    }
    for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
        iv[8 + i] ^= b;
    }
    let mut out = plain.to_vec();
    let mut cipher = ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&hex(B3_CIPHER_KEY), &iv)
        .expect("key and iv lengths");
    cipher.apply_keystream(&mut out[12..]);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&hex(B3_AUTH_KEY)).expect("hmac key");
    mac.update(&out);
    mac.update(&roc.to_be_bytes());
    out.extend_from_slice(&mac.finalize().into_bytes()[..10]);
    out
}

fn b3_key() -> SrtpKey {
    SrtpKey::new(
        SrtpProfile::AesCm128HmacSha1_80,
        &hex(B3_MASTER_KEY),
        &hex(B3_MASTER_SALT),
    )
    .unwrap()
}

fn key_for(profile: SrtpProfile, fill: u8) -> SrtpKey {
    SrtpKey::new(
        profile,
        &vec![fill; profile.key_len()],
        &vec![fill ^ 0x5a; profile.salt_len()],
    )
    .unwrap()
}

#[test]
fn protect_matches_rfc3711_b3_session_keys() {
    let mut ctx = SrtpContext::new(b3_key(), Direction::Outbound).unwrap();
    for seq in [0x1234u16, 0x1235, 0x1300] {
        let plain = rtp(seq, SSRC, &[0xab; 16]);
        let mut packet = plain.clone();
        ctx.protect_rtp(&mut packet).unwrap();
        assert_eq!(packet, reference_protect(&plain, 0), "seq {seq:#x}");
    }
}

#[test]
fn unprotect_accepts_reference_packets_and_continues_roc() {
    // A stream restored at ROC 7: the reference packet carries index 7<<16|seq.
    let mut ctx = SrtpContext::new(b3_key(), Direction::Inbound).unwrap();
    ctx.set_roc(SSRC, 7).unwrap();
    let plain = rtp(0x0042, SSRC, b"restored payload");
    let mut packet = reference_protect(&plain, 7);
    ctx.unprotect_rtp(&mut packet).unwrap();
    assert_eq!(packet, plain);
    assert_eq!(ctx.roc(SSRC), Some(7));

    // Without the ROC the same packet does not authenticate.
    let mut fresh = SrtpContext::new(b3_key(), Direction::Inbound).unwrap();
    let mut packet = reference_protect(&plain, 7);
    assert_eq!(fresh.unprotect_rtp(&mut packet), Err(SrtpError::Auth));
}

#[test]
fn round_trip_every_profile_rtp_and_rtcp() {
    for profile in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(key_for(profile, 3), Direction::Outbound).unwrap();
        let mut rx = SrtpContext::new(key_for(profile, 3), Direction::Inbound).unwrap();
        for seq in 0..50u16 {
            let plain = rtp(seq, 0x1111, &[seq as u8; 160]);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p).unwrap();
            assert_eq!(p.len(), plain.len() + profile.rtp_tag_len(), "{profile:?}");
            // The NULL suites authenticate only: the payload travels as is.
            assert_eq!(
                p[12..plain.len()] != plain[12..],
                profile.encrypts(),
                "{profile:?} encrypts or not"
            );
            rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, plain, "{profile:?}");
        }
        let plain = rtcp_sr(0x1111);
        let mut p = plain.clone();
        tx.protect_rtcp(&mut p).unwrap();
        // E flag + SRTCP index (4), then the tag: 80 bits even for _32.
        let tag = if profile.salt_len() == 12 { 16 } else { 10 };
        assert_eq!(p.len(), plain.len() + 4 + tag, "{profile:?} SRTCP");
        // The E flag says whether SRTCP is encrypted (RFC 3711 §3.4).
        assert_eq!(
            p[plain.len()] & 0x80 != 0,
            profile.encrypts(),
            "{profile:?} SRTCP E flag"
        );
        rx.unprotect_rtcp(&mut p).unwrap();
        assert_eq!(p, plain, "{profile:?} SRTCP");
    }
}

#[test]
fn replayed_and_too_old_packets_are_refused() {
    for profile in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(key_for(profile, 9), Direction::Outbound).unwrap();
        let mut rx = SrtpContext::new(key_for(profile, 9), Direction::Inbound).unwrap();
        let mut sent = Vec::new();
        for seq in 1000..1300u16 {
            let mut p = rtp(seq, 0x2222, b"payload");
            tx.protect_rtp(&mut p).unwrap();
            sent.push(p);
        }
        let mut first = sent[0].clone();
        rx.unprotect_rtp(&mut first).unwrap();
        let mut again = sent[0].clone();
        assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replay));
        let mut last = sent[299].clone();
        rx.unprotect_rtp(&mut last).unwrap();
        // 1001 is 298 behind 1299: outside the window.
        let mut old = sent[1].clone();
        assert_eq!(rx.unprotect_rtp(&mut old), Err(SrtpError::Replay));
        // Within the window and unseen: fine.
        let mut late = sent[290].clone();
        rx.unprotect_rtp(&mut late).unwrap();

        let mut rtcp = rtcp_sr(0x2222);
        tx.protect_rtcp(&mut rtcp).unwrap();
        let mut copy = rtcp.clone();
        rx.unprotect_rtcp(&mut rtcp).unwrap();
        assert_eq!(rx.unprotect_rtcp(&mut copy), Err(SrtpError::Replay));
    }
}

#[test]
fn wrong_key_and_tampering_fail_authentication() {
    for profile in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(key_for(profile, 1), Direction::Outbound).unwrap();
        let mut wrong = SrtpContext::new(key_for(profile, 2), Direction::Inbound).unwrap();
        let mut right = SrtpContext::new(key_for(profile, 1), Direction::Inbound).unwrap();
        let mut p = rtp(5, 0x3333, b"hello");
        tx.protect_rtp(&mut p).unwrap();
        let mut q = p.clone();
        assert_eq!(wrong.unprotect_rtp(&mut q), Err(SrtpError::Auth));
        let mut t = p.clone();
        t[13] ^= 1;
        assert_eq!(right.unprotect_rtp(&mut t), Err(SrtpError::Auth));
        right.unprotect_rtp(&mut p).unwrap();

        let mut r = rtcp_sr(0x3333);
        tx.protect_rtcp(&mut r).unwrap();
        assert_eq!(wrong.unprotect_rtcp(&mut r), Err(SrtpError::Auth));
    }
}

#[test]
fn roc_follows_sequence_wrap() {
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    let mut tx = SrtpContext::new(key_for(profile, 4), Direction::Outbound).unwrap();
    let mut rx = SrtpContext::new(key_for(profile, 4), Direction::Inbound).unwrap();
    assert_eq!(rx.roc(0x4444), None);
    for seq in (65530..=65535u16).chain(0..5) {
        let mut p = rtp(seq, 0x4444, b"wrap");
        tx.protect_rtp(&mut p).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
    }
    assert_eq!(tx.roc(0x4444), Some(1));
    assert_eq!(rx.roc(0x4444), Some(1));
}

#[test]
fn runts_and_bad_key_lengths_are_errors_not_panics() {
    let mut rx = SrtpContext::new(b3_key(), Direction::Inbound).unwrap();
    for len in 0..20 {
        let mut p = vec![0x80; len];
        assert!(rx.unprotect_rtp(&mut p).is_err());
        let mut p = vec![0x80; len];
        assert!(rx.unprotect_rtcp(&mut p).is_err());
    }
    let err = SrtpKey::new(SrtpProfile::AeadAes128Gcm, &[0; 16], &[0; 14]).unwrap_err();
    assert!(matches!(
        err,
        SrtpError::KeyLength {
            want: 12,
            got: 14,
            ..
        }
    ));
    assert!(SrtpContext::from_parts(
        SrtpProfile::AesCm128HmacSha1_80,
        &[0; 15],
        &[0; 14],
        Direction::Inbound
    )
    .is_err());
}

/// RFC 3711 §4.3.1 key derivation (key derivation rate 0) with the AES
/// of the master key's size (RFC 6188 §3): AES-CM keystream under the
/// master key, IV = (master salt XOR label << 48) << 16.
fn reference_kdf(master_key: &[u8], master_salt: &[u8], label: u8, len: usize) -> Vec<u8> {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label;
    let mut out = vec![0u8; len];
    match master_key.len() {
        16 => ctr::Ctr128BE::<aes::Aes128>::new_from_slices(master_key, &iv)
            .unwrap()
            .apply_keystream(&mut out),
        24 => ctr::Ctr128BE::<aes::Aes192>::new_from_slices(master_key, &iv)
            .unwrap()
            .apply_keystream(&mut out),
        32 => ctr::Ctr128BE::<aes::Aes256>::new_from_slices(master_key, &iv)
            .unwrap()
            .apply_keystream(&mut out),
        n => panic!("no AES with a {n}-byte key"),
    }
    out
}

/// SRTP of one packet under `key` at ROC 0, computed from the master key
/// without libsrtp: the session keys by [`reference_kdf`], AES-CM over the
/// payload (none for the NULL suites), HMAC-SHA1 tag of the profile's length.
fn reference_protect_with(key: &SrtpKey, plain: &[u8]) -> Vec<u8> {
    reference_protect_raw(
        &key.key,
        &key.salt,
        key.profile.rtp_tag_len(),
        key.profile.encrypts(),
        plain,
    )
}

fn reference_protect_raw(
    mk: &[u8],
    ms: &[u8],
    tag_len: usize,
    encrypts: bool,
    plain: &[u8],
) -> Vec<u8> {
    let cipher_key = reference_kdf(mk, ms, 0, mk.len());
    let cipher_salt = reference_kdf(mk, ms, 2, 14);
    let auth_key = reference_kdf(mk, ms, 1, 20);
    let seq = u16::from_be_bytes([plain[2], plain[3]]);
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&cipher_salt);
    for (i, b) in plain[8..12].iter().enumerate() {
        iv[4 + i] ^= b;
    }
    for (i, b) in seq.to_be_bytes().iter().enumerate() {
        iv[12 + i] ^= b;
    }
    let mut out = plain.to_vec();
    if encrypts {
        let body = &mut out[12..];
        match cipher_key.len() {
            16 => ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&cipher_key, &iv)
                .unwrap()
                .apply_keystream(body),
            24 => ctr::Ctr128BE::<aes::Aes192>::new_from_slices(&cipher_key, &iv)
                .unwrap()
                .apply_keystream(body),
            _ => ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&cipher_key, &iv)
                .unwrap()
                .apply_keystream(body),
        }
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&auth_key).unwrap();
    mac.update(&out);
    mac.update(&0u32.to_be_bytes());
    out.extend_from_slice(&mac.finalize().into_bytes()[..tag_len]);
    out
}

#[test]
fn reference_kdf_matches_rfc3711_b3() {
    let (mk, ms) = (hex(B3_MASTER_KEY), hex(B3_MASTER_SALT));
    assert_eq!(reference_kdf(&mk, &ms, 0, 16), hex(B3_CIPHER_KEY));
    assert_eq!(reference_kdf(&mk, &ms, 2, 14), hex(B3_CIPHER_SALT));
    assert_eq!(reference_kdf(&mk, &ms, 1, 20), hex(B3_AUTH_KEY));
}

#[test]
fn counter_mode_and_null_suites_match_an_independent_implementation() {
    // Every HMAC-SHA1 suite, the master key's size choosing the AES of
    // both the key derivation and the cipher (RFC 6188 §3); the NULL
    // suites derive their authentication key from the full master key too.
    for profile in SrtpProfile::ALL.into_iter().filter(|p| p.salt_len() == 14) {
        let key = SrtpKey::new(
            profile,
            &(0..profile.key_len() as u8).collect::<Vec<_>>(),
            &(0..14u8).map(|b| b.wrapping_mul(17)).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut ctx = SrtpContext::new(key.clone(), Direction::Outbound).unwrap();
        for seq in [1u16, 2, 0x7fff] {
            let plain = rtp(seq, SSRC, &[0x3c; 40]);
            let mut packet = plain.clone();
            ctx.protect_rtp(&mut packet).unwrap();
            assert_eq!(
                packet,
                reference_protect_with(&key, &plain),
                "{profile:?} seq {seq}"
            );
        }
        // And libsrtp accepts the reference's packets.
        let mut rx = SrtpContext::new(key.clone(), Direction::Inbound).unwrap();
        let plain = rtp(9, SSRC, b"reference");
        let mut packet = reference_protect_with(&key, &plain);
        rx.unprotect_rtp(&mut packet).unwrap();
        assert_eq!(packet, plain, "{profile:?}");
    }
}

#[test]
fn every_profile_checks_its_own_key_lengths() {
    for profile in SrtpProfile::ALL {
        let (k, s) = (profile.key_len(), profile.salt_len());
        assert!(SrtpKey::new(profile, &vec![1; k], &vec![2; s]).is_ok());
        for (kl, sl) in [(k - 1, s), (k + 8, s), (k, s + 2), (k, s - 2)] {
            let err = SrtpKey::new(profile, &vec![1; kl], &vec![2; sl]).unwrap_err();
            assert!(
                matches!(err, SrtpError::KeyLength { profile: p, .. } if p == profile),
                "{profile:?} {kl}/{sl}: {err:?}"
            );
        }
    }
}

/// Why relayd has no AES_192_CM suites: libsrtp2 (up to 2.7) runs the
/// AES-256 key derivation for them, over the 24-byte master key padded
/// with the salt (cisco/libsrtp#763), so its packets differ from RFC 6188's.
/// When this fails, the linked libsrtp derives AES-192 keys as the RFC
/// says and the two suites can join `SrtpProfile`.
#[test]
fn libsrtp_aes_192_key_derivation_is_not_rfc_6188() {
    let (mk, ms): (Vec<u8>, Vec<u8>) = ((0..24).collect(), (0..14).map(|b| b * 3).collect());
    let material = [&mk[..], &ms[..]].concat();
    let policy = srtp::StreamPolicy {
        rtp: CryptoPolicy::aes_cm_192_hmac_sha1_80(),
        rtcp: CryptoPolicy::aes_cm_192_hmac_sha1_80(),
        key: &material,
        window_size: 0,
        allow_repeat_tx: false,
        encrypt_extension_headers: &[],
    };
    let mut session = Session::with_outbound_template(policy).unwrap();
    let plain = rtp(1, SSRC, &[0x3c; 40]);
    let mut packet = plain.clone();
    session.protect(&mut packet).unwrap();
    assert_ne!(
        packet,
        reference_protect_raw(&mk, &ms, 10, true, &plain),
        "libsrtp's AES-192 now follows RFC 6188: add the AES_192_CM suites"
    );
}
