"""A full, controlling ICE agent (aioice, the ICE library under aiortc)
against relayd's ICE-lite, driven by relay-userspace/tests/ice_lite.rs.

Protocol on stdin/stdout, one JSON object per line:
  out {"ufrag", "pwd", "candidates": [sdp...]}   local ICE, host candidates
  in  {"ufrag", "pwd", "lite", "candidates": [sdp...]}   the relay's ICE
  out {"connected": [local, remote]}             after checks and nomination
  in  {"go": n}                                  send n RTP packets
  out {"sent": n, "received": m, "echo_ok": bool}
"""

import asyncio
import json
import struct
import sys

import aioice


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1CE1CE) + bytes(160)


async def main() -> None:
    conn = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    await conn.gather_candidates()
    local = {
        "ufrag": conn.local_username,
        "pwd": conn.local_password,
        "candidates": [c.to_sdp() for c in conn.local_candidates],
    }
    print(json.dumps(local), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    remote = json.loads(await reader.readline())
    conn.remote_username = remote["ufrag"]
    conn.remote_password = remote["pwd"]
    conn.remote_is_lite = remote["lite"]
    for line in remote["candidates"]:
        await conn.add_remote_candidate(aioice.Candidate.from_sdp(line))
    await conn.add_remote_candidate(None)
    await asyncio.wait_for(conn.connect(), 10)
    pair = conn._nominated.get(1)
    print(json.dumps({"connected": [list(pair.local_addr), list(pair.remote_addr)]}), flush=True)

    go = json.loads(await reader.readline())
    n = go["go"]
    received = 0
    echo_ok = True
    bad = None

    async def receive() -> None:
        nonlocal received, echo_ok, bad
        while received < n:
            data, component = await conn.recvfrom()
            # The plain RTP peer echoes each packet back unchanged.
            if component != 1 or len(data) != 172 or data[0] != 0x80:
                echo_ok = False
                bad = [component, len(data), data[:4].hex()]
            received += 1

    task = asyncio.ensure_future(receive())
    for seq in range(n):
        await conn.send(rtp(seq))
        await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(task, 3)
    except asyncio.TimeoutError:
        pass
    print(json.dumps({"sent": n, "received": received, "echo_ok": echo_ok, "bad": bad}), flush=True)
    await conn.close()


asyncio.run(main())
