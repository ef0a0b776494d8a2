"""A browser-like WebRTC peer (aiortc: full ICE, DTLS-SRTP, rtcp-mux)
against relayd, driven by relay-userspace/tests/dtls.rs.

Protocol on stdin/stdout, one JSON object per line:
  out {"offer": sdp, "fingerprint": "sha-256 ..."}   aiortc's offer
  in  {"answer": sdp}                                relayd's answer
  out {"dtls": state, "ice": state, "role": role}    once DTLS connected or failed (15 s at most)
  in  {"count": true}                                optional, any number of times
  out {"frames": n, "dtls": s, "ice": s}             audio frames received (decrypted by aiortc), states
  in  {"close": true}

aiortc sends its AudioStreamTrack (silence, in the answer's first codec)
as SRTP once DTLS is connected.
"""

import asyncio
import json
import sys

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack


async def main() -> None:
    # No STUN servers: host candidates only, nothing leaves the namespace.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    received = {"frames": 0}

    async def consume(track):
        while True:
            try:
                await track.recv()
            except Exception:
                return
            received["frames"] += 1

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            asyncio.ensure_future(consume(track))

    await pc.setLocalDescription(await pc.createOffer())
    cert = pc.getTransceivers()[0].sender.transport.getLocalParameters().fingerprints[-1]
    print(json.dumps({"offer": pc.localDescription.sdp,
                      "fingerprint": f"{cert.algorithm} {cert.value}"}), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    answer = json.loads(await reader.readline())
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["answer"], type="answer"))
    dtls = pc.getTransceivers()[0].sender.transport
    for _ in range(150):
        if dtls.state in ("connected", "failed", "closed"):
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"dtls": dtls.state, "ice": pc.iceConnectionState,
                      "role": getattr(dtls, "_role", None)}), flush=True)
    while True:
        line = await reader.readline()
        if not line or json.loads(line).get("close"):
            break
        print(json.dumps({"frames": received["frames"], "dtls": dtls.state,
                          "ice": pc.iceConnectionState}), flush=True)
    await pc.close()


asyncio.run(main())
