"""The SRTP side of relay-userspace/tests/sdes_srtp.rs: pylibsrtp (libsrtp
bindings built independently of relayd's) protects what the test sends and
unprotects what it receives. JSON lines on stdin/stdout:

  {"op": "keys", "suite": "...", "tx": "<base64 key||salt>", "rx": "<base64>"}
  {"op": "protect" | "protect_rtcp" | "unprotect" | "unprotect_rtcp", "hex": "..."}
  -> {"hex": "..."} or {"error": "..."}
"""
import base64
import json
import sys

from pylibsrtp import Error, Policy, Session
from pylibsrtp._binding import ffi

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}

# Suites without a DTLS-SRTP profile number, which pylibsrtp's Policy cannot
# name: its libsrtp's srtp_crypto_policy_t filled in directly, as libsrtp's
# own setters fill it. Fields: cipher type, cipher key length (key||salt),
# auth type, auth key length, SRTP tag length, services; SRTCP's tag is
# always 10 (RFC 4568 section 6.2.2).
AES_ICM_256, NULL_CIPHER, HMAC_SHA1, AUTH, CONF_AND_AUTH = 5, 0, 3, 2, 3
RAW = {
    "AES_256_CM_HMAC_SHA1_80": (AES_ICM_256, 46, HMAC_SHA1, 20, 10, CONF_AND_AUTH),
    "AES_256_CM_HMAC_SHA1_32": (AES_ICM_256, 46, HMAC_SHA1, 20, 4, CONF_AND_AUTH),
    "NULL_HMAC_SHA1_80": (NULL_CIPHER, 30, HMAC_SHA1, 20, 10, AUTH),
    "NULL_HMAC_SHA1_32": (NULL_CIPHER, 30, HMAC_SHA1, 20, 4, AUTH),
}
# What libsrtp writes for AES_CM_128_HMAC_SHA1_80: checks the layout.
AES_128_80 = (1, 30, 3, 20, 10, 3)


def fields(crypto_policy):
    return ffi.cast("int *", ffi.addressof(crypto_policy))


def policy(suite, key, ssrc_type):
    if suite in PROFILES:
        return Policy(key=key, ssrc_type=ssrc_type, srtp_profile=PROFILES[suite])
    raw = RAW[suite]
    # Created as AES-128 (pylibsrtp checks the key is at least 30 bytes),
    # then turned into the suite.
    p = Policy(key=key, ssrc_type=ssrc_type)
    for crypto, tag in ((p._policy.rtp, raw[4]), (p._policy.rtcp, 10)):
        f = fields(crypto)
        assert tuple(f[i] for i in range(6)) == AES_128_80, "srtp_crypto_policy_t layout"
        for i, v in enumerate(raw[:4] + (tag, raw[5])):
            f[i] = v
    if len(key) != raw[1]:
        raise Error("%s needs %d bytes of key||salt, got %d" % (suite, raw[1], len(key)))
    return p


def b64(s):
    return base64.b64decode(s + "=" * (-len(s) % 4))


def main():
    tx = rx = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "keys":
                suite = req["suite"]
                tx = Session(policy(suite, b64(req["tx"]), Policy.SSRC_ANY_OUTBOUND))
                rx = Session(policy(suite, b64(req["rx"]), Policy.SSRC_ANY_INBOUND))
                out = {"ok": True}
            else:
                data = bytes.fromhex(req["hex"])
                session = tx if op.startswith("protect") else rx
                out = {"hex": getattr(session, op)(data).hex()}
        except Error as e:
            out = {"error": str(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
