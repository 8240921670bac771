"""Headless Chromium driven through the DevTools protocol over a pipe (no extra Python package).

``--remote-debugging-pipe`` makes Chromium read protocol commands from file descriptor 3 and
write replies and events to descriptor 4, each a JSON object ended by a NUL byte. Debian's
``chromium`` package is used (``/usr/bin/chromium``; .ci/run installs it).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("SUPERRETINA_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    pass


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """One browser with one page; ``evaluate`` runs JavaScript in it, ``screenshot`` saves a PNG."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child's ends become its descriptors 3 and 4 through bash's redirections (no
        # preexec_fn, unsafe in a process with threads, as pytest's is once a model is loaded);
        # moved to >= 10 first so that the redirections cannot overwrite one of them.
        to_child_r, from_child_w = _above_nine(to_child_r), _above_nine(from_child_w)
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                "about:blank"]
        self.proc = subprocess.Popen(["/bin/bash", "-c", f'exec 3<&{to_child_r} 4>&{from_child_w} "$@"', "sh", *args],
                                     pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.console: list[str] = []
        self.failed_requests: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Network.enable"):
            self.call(domain, session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # -- protocol --------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise BrowserError("no reply from chromium in time")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, ev: dict) -> None:
        if ev.get("method") == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in ev["params"]["args"]))
        elif ev.get("method") == "Runtime.exceptionThrown":
            self.console.append("exception: " + ev["params"]["exceptionDetails"].get("text", ""))
        elif ev.get("method") == "Network.loadingFailed":
            self.failed_requests.append(ev["params"].get("errorText", "") + " " + ev["params"].get("requestId", ""))

    # -- page ------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str):
        """Value of a JavaScript expression (promises awaited); JS exceptions raise BrowserError."""
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:60]}...: {r['exceptionDetails'].get('text')} "
                               f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        while not self.evaluate(f"Boolean({condition})"):
            if time.monotonic() - t0 > timeout:
                raise BrowserError(f"timed out waiting for {condition}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
