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

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


def b64(s):
    return base64.b64decode(s + "=" * (-len(s) % 4))


def main():
    tx = rx = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "keys":
                profile = PROFILES[req["suite"]]
                tx = Session(Policy(key=b64(req["tx"]), ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                    srtp_profile=profile))
                rx = Session(Policy(key=b64(req["rx"]), ssrc_type=Policy.SSRC_ANY_INBOUND,
                                    srtp_profile=profile))
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
