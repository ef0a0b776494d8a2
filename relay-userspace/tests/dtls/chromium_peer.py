"""A real browser against relayd: headless Chromium (Debian's package) with
its fake audio device (a periodic beep) opens an RTCPeerConnection in a page
this script serves on loopback, driven by relay-userspace/tests/dtls.rs.

Speaks the same JSON lines as aiortc_peer.py on stdin/stdout:
  out {"offer": sdp}                                  Chromium's offer (ICE gathered)
  in  {"answer": sdp}                                 relayd's answer
  out {"dtls": state, "ice": state, "cipher": name}   once connected or failed (20 s at most)
  in  {"count": true}                                 any number of times
  out {"frames": n, "level": l, "sent": n, ...}       the page's latest getStats(), and the
                                                      loudest received audio (RMS, 0..1)
  in  {"close": true}
An error in the page, or Chromium ending, comes out as {"error": text}.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html><meta charset="utf-8"><title>xrelay webrtc</title>
<script>
const post = (path, body) => fetch(path, {method: 'POST', body: JSON.stringify(body)});
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  try {
    const pc = new RTCPeerConnection({iceServers: []});
    const mic = await navigator.mediaDevices.getUserMedia({audio: true});
    mic.getTracks().forEach(t => pc.addTrack(t, mic));
    // The loudest received audio so far (RMS of a decoded frame, 0..1).
    // Headless Chromium has no sound card, so getStats()'s totalAudioEnergy
    // stays 0; a track processor sees the decoded samples.
    let level = 0;
    pc.ontrack = async e => {
      const a = new Audio();
      a.muted = true;
      a.srcObject = e.streams[0] || new MediaStream([e.track]);
      a.play().catch(() => {});
      const frames = new MediaStreamTrackProcessor({track: e.track}).readable.getReader();
      for (;;) {
        const {value, done} = await frames.read();
        if (done) break;
        const samples = new Float32Array(value.numberOfFrames);
        value.copyTo(samples, {planeIndex: 0, format: 'f32-planar'});
        value.close();
        let sum = 0;
        for (const x of samples) sum += x * x;
        level = Math.max(level, Math.sqrt(sum / Math.max(1, samples.length)));
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    for (let i = 0; i < 50 && pc.iceGatheringState !== 'complete'; i++) await sleep(100);
    await post('/offer', {sdp: pc.localDescription.sdp});
    let answer = null;
    while (!answer) {
      const r = await fetch('/answer');
      if (r.status === 200) answer = await r.json(); else await sleep(100);
    }
    await pc.setRemoteDescription({type: 'answer', sdp: answer.sdp});
    for (;;) {
      const out = {connection: pc.connectionState, ice: pc.iceConnectionState};
      (await pc.getStats()).forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          out.frames = s.packetsReceived;
          out.energy = s.totalAudioEnergy;
          out.level = level;
          out.lost = s.packetsLost;
          out.codec_in = s.codecId;
        }
        if (s.type === 'outbound-rtp' && s.kind === 'audio') out.sent = s.packetsSent;
        if (s.type === 'transport') {
          out.dtls = s.dtlsState;
          out.cipher = s.srtpCipher;
        }
      });
      await post('/stats', out);
      await sleep(250);
    }
  } catch (e) {
    post('/error', {error: String(e)});
  }
})();
</script>
"""


class State:
    def __init__(self):
        self.lock = threading.Condition()
        self.offer = None
        self.answer = None
        self.stats = {}
        self.error = None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", kind="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            self.reply(200, PAGE.encode(), "text/html")
        elif self.path == "/answer":
            with STATE.lock:
                answer = STATE.answer
            if answer is None:
                self.reply(204)
            else:
                self.reply(200, json.dumps({"sdp": answer}).encode())
        else:
            self.reply(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        with STATE.lock:
            if self.path == "/offer":
                STATE.offer = body["sdp"]
            elif self.path == "/stats":
                STATE.stats = body
            elif self.path == "/error":
                STATE.error = body.get("error", "unknown")
            STATE.lock.notify_all()
        self.reply(200)


def wait_for(pred, seconds):
    deadline = time.monotonic() + seconds
    with STATE.lock:
        while not pred() and STATE.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            STATE.lock.wait(left)
    return pred()


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="xrelay-chromium-")
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    args = [
        browser,
        "--headless=new",
        "--no-sandbox",  # root in a test namespace
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        # Host candidates as addresses, not mDNS names relayd cannot resolve.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        f"--user-data-dir={profile}",
        f"http://127.0.0.1:{server.server_address[1]}/",
    ]
    # A session of its own, so its helper processes go with it.
    chromium = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        if not wait_for(lambda: STATE.offer is not None, 30):
            say({"error": STATE.error or f"no offer from Chromium (exit {chromium.poll()})"})
            return
        say({"offer": STATE.offer})
        answer = json.loads(sys.stdin.readline())
        with STATE.lock:
            STATE.answer = answer["answer"]
        done = lambda: STATE.stats.get("connection") in ("connected", "failed", "closed")
        wait_for(done, 20)
        with STATE.lock:
            s = dict(STATE.stats)
        say({"dtls": s.get("dtls"), "connection": s.get("connection"), "ice": s.get("ice"),
             "cipher": s.get("cipher"), "error": STATE.error})
        for line in sys.stdin:
            if json.loads(line).get("close"):
                break
            with STATE.lock:
                say(dict(STATE.stats, error=STATE.error))
    finally:
        # Our own child and its helpers (its process group); then its profile.
        try:
            os.killpg(chromium.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        chromium.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
