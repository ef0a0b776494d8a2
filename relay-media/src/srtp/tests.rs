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
            let tag = match profile {
                SrtpProfile::AesCm128HmacSha1_80 => 10,
                SrtpProfile::AesCm128HmacSha1_32 => 4,
                SrtpProfile::AeadAes128Gcm => 16,
            };
            assert_eq!(p.len(), plain.len() + tag, "{profile:?}");
            assert_ne!(p[12..plain.len()], plain[12..], "{profile:?} encrypts");
            rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, plain, "{profile:?}");
        }
        let plain = rtcp_sr(0x1111);
        let mut p = plain.clone();
        tx.protect_rtcp(&mut p).unwrap();
        // E flag + SRTCP index (4), then the tag: 80 bits even for _32.
        let tag = if profile == SrtpProfile::AeadAes128Gcm {
            16
        } else {
            10
        };
        assert_eq!(p.len(), plain.len() + 4 + tag, "{profile:?} SRTCP");
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
