"""A WebRTC caller behind Kamailio, for relay-userspace/tests/kamailio_e2e.rs.

aiortc (full ICE, DTLS-SRTP, rtcp-mux: what a browser's RTCPeerConnection
does) makes the offer; a minimal SIP UAC carries it to Kamailio over UDP
(INVITE, ACK, BYE through the proxy's route set), as a browser's SIP stack
would over a WebSocket. aiortc sends a 440 Hz tone; the callee (sipp
-rtp_echo) sends every packet back, so what aiortc decodes is its own tone
after two trips through the relay (SRTP -> RTP -> echo -> RTP -> SRTP).

Usage: webrtc_caller.py LOCAL_IP PROXY_IP SECONDS
Prints one JSON object: the answer SDP, the SIP status codes, the DTLS and
ICE states, the frames received and the loudest one (RMS, 0..1).
"""

import array
import asyncio
import fractions
import json
import math
import secrets
import socket
import sys
import time

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

SIP_PORT = 5080
RATE = 8000
SAMPLES = 160  # 20 ms


class Tone(MediaStreamTrack):
    """440 Hz at half scale, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = array.array("h", (
            int(16000 * math.sin(2 * math.pi * 440 * (self.pts + i) / RATE))
            for i in range(SAMPLES)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += SAMPLES
        return frame


def rms(frame):
    """RMS of a decoded s16 frame, 0..1 (all channels)."""
    count = frame.samples * len(frame.layout.channels)
    data = array.array("h")
    data.frombytes(bytes(frame.planes[0])[: 2 * count])
    if not data:
        return 0.0
    return math.sqrt(sum(x * x for x in data) / len(data)) / 32768


class Sip:
    """Just enough of a UAC over UDP for one call through a record-routing proxy."""

    def __init__(self, local_ip, proxy_ip):
        self.local, self.proxy = local_ip, (proxy_ip, 5060)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, SIP_PORT))
        self.sock.settimeout(0.5)
        self.call_id = secrets.token_hex(8) + "@xrelay-webrtc"
        self.tag = secrets.token_hex(4)
        self.to = f"<sip:callee@{proxy_ip}>"
        self.target = f"sip:callee@{proxy_ip}"
        self.routes = []

    def request(self, method, cseq, body="", cseq_method=None):
        head = [
            f"{method} {self.target} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local}:{SIP_PORT};rport;branch=z9hG4bK{secrets.token_hex(6)}",
            "Max-Forwards: 70",
            f"From: <sip:browser@{self.local}>;tag={self.tag}",
            f"To: {self.to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {cseq_method or method}",
            f"Contact: <sip:browser@{self.local}:{SIP_PORT}>",
        ]
        head += [f"Route: {r}" for r in self.routes]
        if body:
            head.append("Content-Type: application/sdp")
        head.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(head) + "\r\n\r\n" + body).encode(), self.proxy)

    def final_response(self, method, seconds):
        """(status, headers, body) of the final response to `method`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
            lines = head.split("\r\n")
            if not lines[0].startswith("SIP/2.0 "):
                continue
            status = int(lines[0].split()[1])
            headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
            cseq = next((v for k, v in headers if k.lower() == "cseq"), "")
            if status >= 200 and cseq.endswith(method):
                return status, headers, body
        return None, [], ""

    def dialog_from(self, headers):
        """The route set and remote target of a 2xx (RFC 3261 12.1.2)."""
        self.routes = [v for k, v in reversed(headers) if k.lower() == "record-route"]
        self.to = next(v for k, v in headers if k.lower() == "to")
        contact = next((v for k, v in headers if k.lower() == "contact"), None)
        if contact:
            self.target = contact.strip("<>").split(">")[0]


async def main():
    local_ip, proxy_ip, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    out = {}
    # No STUN servers: host candidates only, nothing leaves the namespace.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(Tone())
    heard = {"frames": 0, "level": 0.0}

    async def listen(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            heard["frames"] += 1
            heard["level"] = max(heard["level"], rms(frame))

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            asyncio.ensure_future(listen(track))

    await pc.setLocalDescription(await pc.createOffer())
    out["offer"] = pc.localDescription.sdp
    sip = Sip(local_ip, proxy_ip)
    loop = asyncio.get_running_loop()
    sip.request("INVITE", 1, pc.localDescription.sdp)
    status, headers, body = await loop.run_in_executor(None, sip.final_response, "INVITE", 15)
    out["invite"] = status
    out["answer"] = body
    if status != 200:
        print(json.dumps(out), flush=True)
        await pc.close()
        return
    sip.dialog_from(headers)
    sip.request("ACK", 1)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    dtls = pc.getTransceivers()[0].sender.transport
    for _ in range(150):
        if dtls.state in ("connected", "failed", "closed"):
            break
        await asyncio.sleep(0.1)
    out["dtls"] = dtls.state
    out["ice"] = pc.iceConnectionState
    await asyncio.sleep(seconds)
    out.update(heard)
    sip.request("BYE", 2)
    out["bye"], _, _ = await loop.run_in_executor(None, sip.final_response, "BYE", 10)
    await pc.close()
    print(json.dumps(out), flush=True)


asyncio.run(main())
