"""A real headless Chromium driven over the Chrome DevTools protocol (its websocket).

Only what the dashboard's tests need: open a page, evaluate script in it, click,
read what it requested and what it logged, take a screenshot. The browser runs
in its own process group, which :meth:`Chromium.stop` ends, and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.waiting import wait_until

EXECUTABLE = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--remote-debugging-port=0", "--window-size=1400,900")
CALL_TIMEOUT = 30.0


class CannotStart(Exception):
    """Chromium is not installed, or did not open its debugging port."""


class Chromium:
    """One browser process with its own profile directory."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = profile.parent / "chromium.log"

    def start(self, within: float = 30) -> str:
        """Start it; the websocket URL of its first page."""
        executable = shutil.which(EXECUTABLE)
        if executable is None:
            raise CannotStart(f"{EXECUTABLE} is not installed (Debian: apt-get install chromium)")
        self.profile.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        try:
            wait_until(lambda: self._running() and port_file.exists()
                       and len(port_file.read_text().splitlines()) >= 2,
                       within, "Chromium to open its debugging port")
        except AssertionError as exc:
            self.stop()
            raise CannotStart(f"{exc}; its log:\n{self.log.read_text(errors='replace')}") from None
        port = int(port_file.read_text().splitlines()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        return str(page["webSocketDebuggerUrl"])

    def _running(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Chromium exited with {self.proc.returncode}")
        return True

    def stop(self) -> None:
        """End the browser's process group (its renderers and helpers with it)."""
        if self.proc is None:
            return
        group = self.proc.pid
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, signum)
            except ProcessLookupError:
                break
            with contextlib.suppress(AssertionError):
                wait_until(lambda: self.proc is not None and self.proc.poll() is not None
                           and not _group_alive(group), 10, "Chromium's processes to end")
                break
        self.proc.wait(10)
        self.proc = None


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class CdpError(Exception):
    pass


class Page:
    """One tab, over its own DevTools websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=900,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=CALL_TIMEOUT))
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def pump(self) -> None:
        """Take in the events that arrived meanwhile."""
        while True:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=0)))
            except (TimeoutError, ConnectionClosed):
                return

    def open(self, url: str, within: float = 20) -> None:
        """Navigate and wait for the load event; events start afresh for the page."""
        self.events.clear()
        self.call("Page.navigate", url=url)

        def loaded() -> bool:
            self.pump()
            return any(e.get("method") == "Page.loadEventFired" for e in self.events)

        wait_until(loaded, within, f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def holds(self, expression: str) -> bool:
        """Whether ``expression`` is true now; false while the page is being replaced
        (a reload destroys the context an evaluation runs in)."""
        try:
            return bool(self.evaluate(expression))
        except CdpError:
            return False

    def click(self, selector: str) -> None:
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " if (!e) return false; e.click(); return true; })()")
        assert found, f"nothing on the page matches {selector!r}"

    def requested(self) -> list[str]:
        self.pump()
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and the browser's own error log entries."""
        self.pump()
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                    for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("exception: " + str(details.get("exception", {})
                                                 .get("description", details.get("text"))))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} ({entry.get('url', '')})")
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path
