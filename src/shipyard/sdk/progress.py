"""`shipyard.progress(step, total_steps=None, **metrics)`: cheap enough for every step.

A call only records into memory (under a lock no sender holds while it sends). A
daemon thread sends the latest values at most once per interval, and once more when
the program exits. Nothing here raises into training or blocks it: a failed send is
counted and logged once, and the next interval tries again.

Where reports go is read from the environment the backend gives every rank:
  SHIPYARD_PROGRESS_URL    (cluster) POST to the controller's receiver, with the token
  SHIPYARD_PROGRESS_TOKEN  (cluster) the file holding the experiment's token
  SHIPYARD_PROGRESS_FILE   (local) a JSON file the supervisor's run folder keeps
  SHIPYARD_PROGRESS_INTERVAL  seconds between sends (default 5)
Without either destination (plain `python train.py`) a call does nothing.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("shipyard.progress")
DEFAULT_INTERVAL_S = 5.0
SEND_TIMEOUT_S = 3.0
FILE_SAMPLES = 32  # (time, step) pairs a local progress file keeps for the rate

Send = Callable[[dict[str, Any]], None]


class Reporter:
    """Latest values in memory; a thread sends them every `interval_s` when they changed."""

    def __init__(self, send: Send, interval_s: float = DEFAULT_INTERVAL_S,
                 identity: dict[str, Any] | None = None) -> None:
        self.send = send
        self.interval_s = max(interval_s, 0.05)
        self.identity = dict(identity or {})
        self.lock = threading.Lock()
        self.step: int | None = None
        self.total: int | None = None
        self.metrics: dict[str, float] = {}
        self.changed = False
        self.errors = 0
        self.sent = 0
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def record(self, step: int, total: int | None, metrics: dict[str, Any]) -> None:
        with self.lock:
            self.step = int(step)
            if total is not None:
                self.total = int(total)
            for name, value in metrics.items():
                try:  # a tensor or a numpy scalar has its float
                    self.metrics[name] = float(value)
                except (TypeError, ValueError):
                    continue
            self.changed = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shipyard-progress",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.interval_s)
            if self._stopped:
                return
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.changed or self.step is None:
                return
            payload = {**self.identity, "step": self.step, "total_steps": self.total,
                       "metrics": dict(self.metrics)}
            self.changed = False
        try:
            self.send(payload)
            self.sent += 1
        except Exception as exc:  # never into training
            self.errors += 1
            if self.errors == 1:
                log.warning("shipyard.progress: could not send a report (%s); will retry, "
                            "and say nothing more of later failures", exc)
            with self.lock:
                self.changed = True  # the values are still the latest: send them next time

    def close(self) -> None:
        """The final flush (at exit): the last step is worth one more send."""
        self._stopped = True
        self._wake.set()
        self.flush()


class FileSink:
    """The local backend: the rank's latest report and recent (time, step) samples,
    written atomically so `shipyard status` never reads half a file."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.samples: list[list[float]] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        self.samples = [*self.samples, [self.clock(), payload["step"]]][-FILE_SAMPLES:]
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**payload, "samples": self.samples}, f)
        os.replace(tmp, self.path)


class HttpSink:
    """The cluster: POST to the controller's receiver over one kept-alive connection."""

    def __init__(self, url: str, token_file: str | None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SHIPYARD_PROGRESS_URL={url!r}: not an http(s) URL")
        self.parts = parts
        self.host: str = parts.hostname
        self.path = parts.path or "/"
        self.token_file = token_file
        self.conn: Any = None

    def _token(self) -> str:
        if not self.token_file:
            return ""
        with open(self.token_file, encoding="utf-8") as f:
            return f.read().strip()

    def __call__(self, payload: dict[str, Any]) -> None:
        import http.client

        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._token()}"}
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more
            if self.conn is None:
                cls = (http.client.HTTPSConnection if self.parts.scheme == "https"
                       else http.client.HTTPConnection)
                self.conn = cls(self.host, self.parts.port, timeout=SEND_TIMEOUT_S)
            try:
                self.conn.request("POST", self.path, body, headers)
                response = self.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if response.status >= 300:
                if response.status == 503:  # a standby replica: the next try reconnects
                    self.conn.close()
                    self.conn = None
                raise RuntimeError(f"the receiver answered {response.status} {response.reason}")
            return


def reporter_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> Reporter | None:
    """The reporter the environment asks for, or None (no destination: a no-op)."""
    try:
        interval = float(env.get("SHIPYARD_PROGRESS_INTERVAL") or DEFAULT_INTERVAL_S)
    except ValueError:
        interval = DEFAULT_INTERVAL_S
    rank = env.get("RANK") or env.get("SHIPYARD_POD_NAME") or env.get("HOSTNAME") or "0"
    identity = {"rank": rank, "pod": env.get("SHIPYARD_POD_NAME") or env.get("HOSTNAME") or ""}
    if env.get("SHIPYARD_PROGRESS_URL"):
        sink: Send = HttpSink(env["SHIPYARD_PROGRESS_URL"], env.get("SHIPYARD_PROGRESS_TOKEN"))
    elif env.get("SHIPYARD_PROGRESS_FILE"):
        sink = FileSink(env["SHIPYARD_PROGRESS_FILE"])
    else:
        return None
    return Reporter(sink, interval, identity)


_reporter: Reporter | None = None
_configured_pid: int | None = None
_failures = 0


def progress(step: int, total_steps: int | None = None, **metrics: float) -> None:
    """Report training progress: the current `step`, the number of steps in all (once is
    enough; it is remembered) and any last metric values, e.g. loss=0.31. Records into
    memory only; never raises, never blocks on the network."""
    global _reporter, _configured_pid, _failures
    try:
        if _configured_pid != os.getpid():  # first call, or a forked child: its own reporter
            _configured_pid = os.getpid()
            _reporter = reporter_from_env()
        if _reporter is not None:
            _reporter.record(step, total_steps, metrics)
    except Exception as exc:
        _failures += 1
        if _failures == 1:
            log.warning("shipyard.progress ignored a report it could not record: %s", exc)
