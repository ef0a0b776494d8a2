//! Two endpoints handshaking in memory.

use std::time::{Duration, Instant};

use super::*;
use crate::SrtpProfile;

fn cert() -> DtlsCertificate {
    DtlsCertificate::generate(CertKey::Prime256v1, CertSignature::Sha256).unwrap()
}

fn ctx(cert: &DtlsCertificate, profiles: &[SrtpProfile]) -> DtlsContext {
    let config = DtlsConfig {
        profiles: profiles.to_vec(),
        ..DtlsConfig::default()
    };
    DtlsContext::new(cert, config).unwrap()
}

struct Pair {
    client: DtlsEndpoint,
    server: DtlsEndpoint,
}

fn pair(client_profiles: &[SrtpProfile], server_profiles: &[SrtpProfile]) -> Pair {
    let (cc, sc) = (cert(), cert());
    let client = DtlsEndpoint::new(
        &ctx(&cc, client_profiles),
        DtlsRole::Client,
        sc.fingerprint(FingerprintHash::Sha256).unwrap(),
    )
    .unwrap();
    let server = DtlsEndpoint::new(
        &ctx(&sc, server_profiles),
        DtlsRole::Server,
        cc.fingerprint(FingerprintHash::Sha256).unwrap(),
    )
    .unwrap();
    Pair { client, server }
}

/// Move datagrams both ways until neither side has more, or an error.
fn pump(p: &mut Pair, now: Instant) -> Result<usize, (DtlsRole, DtlsError)> {
    let mut moved = 0;
    for _ in 0..50 {
        let mut any = false;
        while let Some(d) = p.client.poll_transmit() {
            any = true;
            moved += 1;
            p.server
                .handle_datagram(&d, now)
                .map_err(|e| (DtlsRole::Server, e))?;
        }
        while let Some(d) = p.server.poll_transmit() {
            any = true;
            moved += 1;
            p.client
                .handle_datagram(&d, now)
                .map_err(|e| (DtlsRole::Client, e))?;
        }
        if !any {
            break;
        }
    }
    Ok(moved)
}

fn assert_crosswise(p: &Pair, profile: SrtpProfile) {
    let (c, s) = (p.client.keys().unwrap(), p.server.keys().unwrap());
    assert_eq!(c.profile, profile);
    assert_eq!(s.profile, profile);
    assert_eq!(c.local, s.remote);
    assert_eq!(c.remote, s.local);
    assert_ne!(c.local, c.remote);
    for k in [&c.local, &c.remote] {
        assert_eq!(k.key.len(), profile.key_len());
        assert_eq!(k.salt.len(), profile.salt_len());
    }
}

#[test]
fn handshake_yields_crosswise_keys_for_each_profile() {
    for profile in SrtpProfile::DTLS {
        let mut p = pair(&[profile], &SrtpProfile::DTLS);
        let now = Instant::now();
        assert_eq!(p.server.state(), DtlsState::New);
        p.client.start(now).unwrap();
        assert_eq!(p.client.state(), DtlsState::Connecting);
        assert!(p.client.poll_timeout().is_some());
        pump(&mut p, now).unwrap();
        assert_eq!(p.client.state(), DtlsState::Connected, "{profile:?}");
        assert_eq!(p.server.state(), DtlsState::Connected, "{profile:?}");
        assert_crosswise(&p, profile);
        assert_eq!(p.client.poll_timeout(), None);
    }
}

#[test]
fn server_picks_by_its_own_preference_among_offered_profiles() {
    let mut p = pair(
        &[
            SrtpProfile::AesCm128HmacSha1_32,
            SrtpProfile::AesCm128HmacSha1_80,
        ],
        &[
            SrtpProfile::AesCm128HmacSha1_80,
            SrtpProfile::AesCm128HmacSha1_32,
        ],
    );
    let now = Instant::now();
    p.client.start(now).unwrap();
    pump(&mut p, now).unwrap();
    // OpenSSL's server takes the first of its own list the client offers.
    let chosen = p.client.keys().unwrap().profile;
    assert!(matches!(
        chosen,
        SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32
    ));
    assert_crosswise(&p, chosen);
}

#[test]
fn a_browser_offer_gets_gcm_256_and_older_offers_keep_theirs() {
    // Chromium's use_srtp list (GCM-256, GCM-128, AES-CM-128-80), then one
    // without GCM-256: relayd's default server takes the strongest offered.
    for (offer, want) in [
        (
            &[
                SrtpProfile::AeadAes256Gcm,
                SrtpProfile::AeadAes128Gcm,
                SrtpProfile::AesCm128HmacSha1_80,
            ][..],
            SrtpProfile::AeadAes256Gcm,
        ),
        (
            &[SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm][..],
            SrtpProfile::AeadAes128Gcm,
        ),
        (
            &[SrtpProfile::AesCm128HmacSha1_80][..],
            SrtpProfile::AesCm128HmacSha1_80,
        ),
    ] {
        let mut p = pair(offer, &DtlsConfig::default().profiles);
        let now = Instant::now();
        p.client.start(now).unwrap();
        pump(&mut p, now).unwrap();
        assert_eq!(p.server.keys().unwrap().profile, want, "{offer:?}");
        assert_crosswise(&p, want);
    }
}

#[test]
fn suites_without_a_dtls_profile_are_refused_in_the_config() {
    for profile in SrtpProfile::ALL {
        let config = DtlsConfig {
            profiles: vec![profile],
            ..DtlsConfig::default()
        };
        let r = DtlsContext::new(&cert(), config);
        if SrtpProfile::DTLS.contains(&profile) {
            assert!(r.is_ok(), "{profile:?}");
        } else {
            assert!(
                matches!(r, Err(DtlsError::NotDtlsProfile(p)) if p == profile),
                "{profile:?}"
            );
        }
    }
}

#[test]
fn no_common_profile_fails() {
    let mut p = pair(
        &[SrtpProfile::AesCm128HmacSha1_32],
        &[SrtpProfile::AeadAes128Gcm],
    );
    let now = Instant::now();
    p.client.start(now).unwrap();
    // The server completes without use_srtp; whoever finishes finds no profile.
    let err = pump(&mut p, now).unwrap_err();
    assert!(matches!(err.1, DtlsError::NoSrtpProfile), "{:?}", err.1);
    assert!(p.client.keys().is_none());
    assert!(p.server.keys().is_none());
}

#[test]
fn fingerprint_mismatch_fails_on_both_sides() {
    let (cc, sc, other) = (cert(), cert(), cert());
    // The server expects a different certificate than the client presents.
    let mut p = Pair {
        client: DtlsEndpoint::new(
            &ctx(&cc, &SrtpProfile::DTLS),
            DtlsRole::Client,
            sc.fingerprint(FingerprintHash::Sha256).unwrap(),
        )
        .unwrap(),
        server: DtlsEndpoint::new(
            &ctx(&sc, &SrtpProfile::DTLS),
            DtlsRole::Server,
            other.fingerprint(FingerprintHash::Sha256).unwrap(),
        )
        .unwrap(),
    };
    let now = Instant::now();
    p.client.start(now).unwrap();
    let err = pump(&mut p, now).unwrap_err();
    assert_eq!(err.0, DtlsRole::Server);
    assert!(
        matches!(err.1, DtlsError::FingerprintMismatch),
        "{:?}",
        err.1
    );
    assert_eq!(p.server.state(), DtlsState::Failed);
    assert!(p.server.keys().is_none());
    // And the other way round: the client checks the server (sha-1 this time).
    let mut p = Pair {
        client: DtlsEndpoint::new(
            &ctx(&cc, &SrtpProfile::DTLS),
            DtlsRole::Client,
            other.fingerprint(FingerprintHash::Sha1).unwrap(),
        )
        .unwrap(),
        server: DtlsEndpoint::new(
            &ctx(&sc, &SrtpProfile::DTLS),
            DtlsRole::Server,
            cc.fingerprint(FingerprintHash::Sha256).unwrap(),
        )
        .unwrap(),
    };
    p.client.start(now).unwrap();
    let err = pump(&mut p, now).unwrap_err();
    assert_eq!(err.0, DtlsRole::Client);
    assert!(
        matches!(err.1, DtlsError::FingerprintMismatch),
        "{:?}",
        err.1
    );
    assert_eq!(p.client.state(), DtlsState::Failed);
}

#[test]
fn sha1_and_sha512_fingerprints_are_accepted() {
    for hash in [FingerprintHash::Sha1, FingerprintHash::Sha512] {
        let (cc, sc) = (cert(), cert());
        let mut p = Pair {
            client: DtlsEndpoint::new(
                &ctx(&cc, &SrtpProfile::DTLS),
                DtlsRole::Client,
                sc.fingerprint(hash).unwrap(),
            )
            .unwrap(),
            server: DtlsEndpoint::new(
                &ctx(&sc, &SrtpProfile::DTLS),
                DtlsRole::Server,
                cc.fingerprint(hash).unwrap(),
            )
            .unwrap(),
        };
        let now = Instant::now();
        p.client.start(now).unwrap();
        pump(&mut p, now).unwrap();
        assert_eq!(p.server.state(), DtlsState::Connected);
    }
}

#[test]
fn a_lost_flight_is_retransmitted() {
    let mut p = pair(&SrtpProfile::DTLS, &SrtpProfile::DTLS);
    let t0 = Instant::now();
    p.client.start(t0).unwrap();
    // Lose the ClientHello.
    let mut lost = 0;
    while p.client.poll_transmit().is_some() {
        lost += 1;
    }
    assert!(lost >= 1);
    let due = p.client.poll_timeout().expect("a retransmission timer");
    assert!(due > t0 && due <= t0 + Duration::from_secs(2), "{due:?}");
    // Too early: nothing is sent.
    p.client.handle_timeout(t0).unwrap();
    assert!(p.client.poll_transmit().is_none());
    // OpenSSL's retransmission clock is the wall clock: wait it out.
    std::thread::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(20));
    let now = Instant::now();
    p.client.handle_timeout(now).unwrap();
    let again: Vec<Vec<u8>> = std::iter::from_fn(|| p.client.poll_transmit()).collect();
    assert!(!again.is_empty(), "ClientHello retransmitted");
    // The timer backs off (RFC 6347 §4.2.4.1).
    let next = p.client.poll_timeout().unwrap();
    assert!(next > now + Duration::from_millis(1500), "{:?}", next - now);
    for d in again {
        p.server.handle_datagram(&d, now).unwrap();
    }
    pump(&mut p, now).unwrap();
    assert_eq!(p.client.state(), DtlsState::Connected);
    assert_crosswise(&p, p.client.keys().unwrap().profile);
}

#[test]
fn a_lost_final_flight_is_answered_again_after_connecting() {
    let mut p = pair(&SrtpProfile::DTLS, &SrtpProfile::DTLS);
    let now = Instant::now();
    p.client.start(now).unwrap();
    // ClientHello -> ServerHello..Done -> client's Certificate..Finished.
    for _ in 0..2 {
        while let Some(d) = p.client.poll_transmit() {
            p.server.handle_datagram(&d, now).unwrap();
        }
        if p.server.state() == DtlsState::Connected {
            break;
        }
        while let Some(d) = p.server.poll_transmit() {
            p.client.handle_datagram(&d, now).unwrap();
        }
    }
    assert_eq!(p.server.state(), DtlsState::Connected);
    // The server's ChangeCipherSpec+Finished is lost.
    while p.server.poll_transmit().is_some() {}
    assert_eq!(p.client.state(), DtlsState::Connecting);
    std::thread::sleep(
        p.client
            .poll_timeout()
            .unwrap()
            .saturating_duration_since(Instant::now())
            + Duration::from_millis(20),
    );
    let later = Instant::now();
    p.client.handle_timeout(later).unwrap();
    pump(&mut p, later).unwrap();
    assert_eq!(p.client.state(), DtlsState::Connected);
    assert_crosswise(&p, p.client.keys().unwrap().profile);
}

#[test]
fn handshake_times_out() {
    let cfg = DtlsConfig {
        handshake_timeout: Duration::from_secs(5),
        ..DtlsConfig::default()
    };
    let c = cert();
    let ctx = DtlsContext::new(&c, cfg).unwrap();
    let mut e = DtlsEndpoint::new(
        &ctx,
        DtlsRole::Client,
        c.fingerprint(FingerprintHash::Sha256).unwrap(),
    )
    .unwrap();
    let t0 = Instant::now();
    e.start(t0).unwrap();
    e.handle_timeout(t0 + Duration::from_secs(4)).unwrap();
    assert!(matches!(
        e.handle_timeout(t0 + Duration::from_secs(5)),
        Err(DtlsError::Timeout)
    ));
    assert_eq!(e.state(), DtlsState::Failed);
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn a_server_never_contacted_times_out() {
    let c = cert();
    let cfg = DtlsConfig {
        handshake_timeout: Duration::from_secs(5),
        ..DtlsConfig::default()
    };
    let ctx = DtlsContext::new(&c, cfg).unwrap();
    let fp = c.fingerprint(FingerprintHash::Sha256).unwrap();
    let mut e = DtlsEndpoint::new(&ctx, DtlsRole::Server, fp).unwrap();
    let t0 = Instant::now();
    assert_eq!(e.poll_timeout(), None, "not started: no clock");
    e.start(t0).unwrap();
    assert_eq!(e.state(), DtlsState::New);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    e.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    assert!(matches!(
        e.handle_timeout(t0 + Duration::from_secs(5)),
        Err(DtlsError::Timeout)
    ));
    assert_eq!(e.state(), DtlsState::Failed);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut p = pair(&SrtpProfile::DTLS, &SrtpProfile::DTLS);
    let now = Instant::now();
    // Not DTLS by RFC 7983 (RTP, STUN, too short).
    for d in [&[0x80u8; 40][..], &[0u8; 20][..], &[22u8; 5][..], &[][..]] {
        assert!(matches!(
            p.server.handle_datagram(d, now),
            Err(DtlsError::NotDtls)
        ));
    }
    // DTLS-looking garbage: a handshake record header with junk behind it,
    // and pseudo-random bytes from a fixed seed.
    let mut x: u32 = 0x1234_5678;
    for len in [13usize, 14, 25, 100, 300, 1200, 1500] {
        let mut d: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        d[0] = 22;
        d[1] = 0xfe;
        d[2] = 0xfd;
        // Errors are fine; a panic or a connection is not.
        let _ = p.server.handle_datagram(&d, now);
        assert_ne!(p.server.state(), DtlsState::Connected);
    }
    // A client never started refuses input.
    assert!(p.client.handle_datagram(&[22u8; 20], now).is_err());
}

#[test]
fn garbage_after_connecting_does_not_break_the_association() {
    let mut p = pair(&SrtpProfile::DTLS, &SrtpProfile::DTLS);
    let now = Instant::now();
    p.client.start(now).unwrap();
    pump(&mut p, now).unwrap();
    let keys = p.server.keys().unwrap().clone();
    let mut d = vec![23u8, 0xfe, 0xfd];
    d.extend_from_slice(&[0xab; 60]);
    let _ = p.server.handle_datagram(&d, now);
    assert_eq!(p.server.state(), DtlsState::Connected);
    assert_eq!(p.server.keys().unwrap(), &keys);
}
