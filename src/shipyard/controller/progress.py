"""The progress receiver: ranks' shipyard.progress reports in, status.progress out.

Ranks POST `{"rank", "pod", "step", "total_steps", "metrics"}` to
/v1/progress/<namespace>/<experiment> with `Authorization: Bearer <token>`, the token
of the Secret `<experiment>-progress` the controller created with the gang (mounted
into its pods), so one experiment cannot write another's progress. Tokens are read
on demand and kept a while (a wrong one is refused from the cache, not from the API
server). Reports only update memory, timed by this receiver's clock; each experiment's
`status.progress` is written at most once per interval, through the writer's ROUTINE
lane, and only when something new came in.

HTTP/1.1 with kept-alive connections, served on the controller's own event loop: a
report costs a few dozen microseconds, and no thread contends with the scheduler.
`bench/progress_load.py` measured it against gRPC (see docs/monitoring.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.controller.views import ExperimentView, format_time
from shipyard.controller.writer import Writer, log_write_failure
from shipyard.core.progress import (
    WINDOW_S,
    Persistent,
    Window,
    keep_metrics,
    status_fields,
    stragglers,
    summarize,
)
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError, NotFound
from shipyard.kube.resources import SECRETS
from shipyard.monitor.progress import ProgressMetrics
from shipyard.render.runtime import PROGRESS_TOKEN_KEY, progress_secret_name

log = logging.getLogger(__name__)
INTERVAL_S = 10.0  # at most one status.progress write per experiment this often
TOKEN_TTL_S = 60.0  # a token read is trusted this long (a Secret's token never changes)
MISSING_TTL_S = 5.0  # an experiment without a Secret is asked for again after this
MAX_BODY = 16 * 1024
MAX_RANKS = 100_000  # per experiment; more reports are refused (a bound on memory)
PATH_PREFIX = "/v1/progress/"
GRPC_SERVICE = "shipyard.Progress"  # method Report
STRAGGLER_CHECKS = 3  # intervals in a row a rank must be slow to be called a straggler


class Tokens:
    """Experiment -> its token, read from its Secret on demand and cached; concurrent
    first reports of one experiment wait on one read. A token that does not match is
    checked against the Secret again if the cached one is older than MISSING_TTL_S (an
    experiment deleted and made again has a new token), so wrong tokens cost at most
    one read per experiment per MISSING_TTL_S."""

    def __init__(self, client: ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.cache: dict[tuple[str, str], tuple[float, str | None, float]] = {}  # expires, token, read
        self.reading: dict[tuple[str, str], asyncio.Future[str | None]] = {}
        self.reads = 0

    async def token(self, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        hit = self.cache.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        pending = self.reading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.reading[key] = future
        try:
            value = await self._read(namespace, name)
            future.set_result(value)
            ttl = TOKEN_TTL_S if value else MISSING_TTL_S
            now = self.clock()
            self.cache[key] = (now + ttl, value, now)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self.reading[key]

    async def _read(self, namespace: str, name: str) -> str | None:
        self.reads += 1
        try:
            secret = await self.client.get(SECRETS, progress_secret_name(name), namespace)
        except NotFound:
            return None
        data = (secret.get("data") or {}).get(PROGRESS_TOKEN_KEY)
        return base64.b64decode(data).decode().strip() if data else None

    async def valid(self, namespace: str, name: str, token: str) -> bool:
        expected = await self.token(namespace, name)
        if expected and hmac.compare_digest(expected.encode(), token.encode()):
            return True
        hit = self.cache.get((namespace, name))
        if hit is None or self.clock() - hit[2] < MISSING_TTL_S:
            return False
        del self.cache[(namespace, name)]  # maybe made again since: read its Secret once more
        expected = await self.token(namespace, name)
        if not expected:
            return False
        return hmac.compare_digest(expected.encode(), token.encode())

    def forget(self, namespace: str, name: str) -> None:
        self.cache.pop((namespace, name), None)


@dataclass(slots=True)
class ExperimentProgress:
    ranks: dict[str, Window] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)  # rank -> pod it reported from
    total: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    changed: bool = False
    written_at: float | None = None  # monotonic


class Hub:
    """Every experiment's reports, in memory; `due` says which to write now."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.experiments: dict[tuple[str, str], ExperimentProgress] = {}
        self.reports = 0

    def report(self, namespace: str, name: str, body: Mapping[str, Any], now: float) -> None:
        """Raises ValueError for a report that is not one."""
        step = body.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError("step: expected an integer")
        total = body.get("total_steps")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise ValueError("total_steps: expected an integer or null")
        metrics = body.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise ValueError("metrics: expected an object")
        rank = str(body.get("rank", "0"))[:63]
        exp = self.experiments.setdefault((namespace, name), ExperimentProgress())
        window = exp.ranks.get(rank)
        if window is None:
            if len(exp.ranks) >= MAX_RANKS:
                raise ValueError("too many ranks")
            window = exp.ranks[rank] = Window()
        window.add(now, step)
        if body.get("pod"):
            exp.pods[rank] = str(body["pod"])[:253]
        if total is not None:
            exp.total = total
        exp.metrics = keep_metrics(exp.metrics, metrics)
        exp.changed = True
        self.reports += 1

    def due(self, now: float, wall: float) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """(experiment, status.progress) for each that has news and was not written in
        the last interval; marked written. `now` on the reports' clock; `wall` (epoch)
        is where that clock is for the RFC 3339 times."""
        out = []
        offset = wall - now
        for key, exp in self.experiments.items():
            if not exp.changed or (exp.written_at is not None and now - exp.written_at < self.interval_s):
                continue
            summary = summarize(exp.ranks.values(), exp.total, exp.metrics, now)
            exp.changed = False
            if summary is None:
                continue
            exp.written_at = now
            out.append((key, status_fields(summary, functools.partial(_format_shifted, offset))))
        return out

    def forget(self, key: tuple[str, str]) -> None:
        self.experiments.pop(key, None)


class Receiver:
    """Checks each report's token and hands it to the hub; writes what is due."""

    def __init__(self, client: ApiClient, writer: Writer,
                 experiments: Callable[[], Mapping[str, ExperimentView]],
                 interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 node_of: Callable[[str, str], str | None] = lambda key, pod: None,
                 metrics: ProgressMetrics | None = None) -> None:
        """`node_of(experiment key, pod)`: the pod's node (for the Straggler Event)."""
        self.writer = writer
        self.experiments = experiments
        self.node_of = node_of
        self.metrics = metrics
        self.slow: dict[tuple[str, str], Persistent] = {}  # experiment -> its slow ranks' streaks
        self.hub = Hub(interval_s)
        self.tokens = Tokens(client, clock)
        self.clock = clock
        self.refused = 0
        self.writes = 0
        self.servers: list[Any] = []
        self.grpc_servers: list[Any] = []
        self.leading = True  # False on a standby: only the leader keeps and writes progress

    async def accept(self, namespace: str, name: str, token: str, body: Any,
                     transport: str = "http") -> int:
        """An HTTP status code: 204 taken, 400 not a report, 403 not this experiment's token,
        503 not the leader (a standby's Service endpoint: the rank reconnects, and lands
        on another replica)."""
        if not self.leading:
            return 503
        if not token or not await self.tokens.valid(namespace, name, token):
            self.refused += 1
            if self.metrics is not None:
                self.metrics.refused.labels(transport).inc()
            return 403
        if not isinstance(body, dict):
            return 400
        try:
            self.hub.report(namespace, name, body, self.clock())
        except ValueError:
            return 400
        if self.metrics is not None:
            self.metrics.reports.labels(transport).inc()
        return 204

    async def write_due(self) -> None:
        items = self.experiments()
        for (namespace, name), fields in self.hub.due(self.clock(), time.time()):
            exp = items.get(f"{namespace}/{name}")
            if exp is None:
                self.forget((namespace, name))
                continue
            try:
                await self.writer.patch_progress(exp, fields)
                self.writes += 1
                if self.metrics is not None:
                    self.metrics.writes.inc()
            except ApiError as exc:
                log_write_failure(log, f"{exp.key}: progress", exc)
            await self._stragglers(exp)

    def forget(self, key: tuple[str, str]) -> None:
        """An experiment deleted: its reports and streaks go."""
        self.hub.forget(key)
        self.slow.pop(key, None)
        self.tokens.forget(*key)

    async def _stragglers(self, exp: ExperimentView) -> None:
        """Once per interval per experiment: a rank below half the median step rate in
        STRAGGLER_CHECKS checks in a row gets a Warning Event (once, until it recovers)."""
        key = (exp.namespace, exp.name)
        record = self.hub.experiments.get(key)
        if record is None:
            return
        now = self.clock()
        recent = {rank: w.rate() for rank, w in record.ranks.items()
                  if w.updated is not None and now - w.updated < WINDOW_S}
        found = self.slow.setdefault(key, Persistent(STRAGGLER_CHECKS)).check(stragglers(recent))
        if not found:
            return
        median = statistics.median(r for r in recent.values() if r > 0)
        for rank in found:
            pod = record.pods.get(rank, "")
            node = self.node_of(exp.key, pod) if pod else None
            message = (f"rank {rank} (pod {pod or '?'} on node {node or '?'}) makes "
                       f"{recent[rank]:.3g} steps/s, the gang's median {median:.3g}")
            if self.metrics is not None and exp.spec is not None:
                self.metrics.stragglers.labels(exp.spec.queue).inc()
            await self.writer.event(exp, "Straggler", message, time.time(), "Warning")

    async def run_writes(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.hub.interval_s / 4))
            await self.write_due()

    def last_reports(self, exp: ExperimentView, now: float) -> dict[str, float]:
        """Pod -> when it last reported, on the clock `now` is read from (for hangs.hung)."""
        record = self.hub.experiments.get((exp.namespace, exp.name))
        if record is None:
            return {}
        offset = now - self.clock()
        last: dict[str, float] = {}
        for rank, pod in record.pods.items():
            updated = record.ranks[rank].updated
            if updated is not None:
                last[pod] = max(last.get(pod, updated + offset), updated + offset)
        return last

    # -- HTTP ---------------------------------------------------------------------

    async def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Start listening; the port (0: any free one, returned)."""
        server = await asyncio.start_server(self._connection, host, port)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for grpc_server in self.grpc_servers:
            await grpc_server.stop(0)

    async def serve_grpc(self, port: int, host: str = "127.0.0.1") -> int:
        """The same receiver over gRPC (grpcio, a dev extra): unary shipyard.Progress/Report,
        the JSON report with "namespace" and "experiment" as the message, the token in the
        `authorization` metadata. Kept to measure the two side by side (bench/progress_load.py)."""
        import grpc

        async def report(request: bytes, context: Any) -> bytes:
            auth = dict(context.invocation_metadata()).get("authorization", "")
            try:
                body = json.loads(request)
            except ValueError:
                body = None
            ns, name = (body.get("namespace"), body.get("experiment")) if isinstance(body, dict) else ("", "")
            if not isinstance(ns, str) or not isinstance(name, str) or not ns or not name:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "namespace and experiment needed")
                return b""  # abort raises; this says so to the type checker
            code = await self.accept(ns, name, auth[7:].strip() if auth[:7].lower() == "bearer " else "",
                                     body, "grpc")
            if code == 403:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not this experiment's token")
            if code == 503:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leader")
            if code != 204:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a progress report")
            return b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            GRPC_SERVICE, {"Report": grpc.unary_unary_rpc_method_handler(report)}),))
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        self.grpc_servers.append(server)
        return bound

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                code, keep = await self._request(head, reader)
                writer.write(_RESPONSES[code] if keep else _RESPONSES[code].replace(
                    b"keep-alive", b"close"))
                if not keep:
                    await writer.drain()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _request(self, head: bytes, reader: asyncio.StreamReader) -> tuple[int, bool]:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0]
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        keep = headers.get("connection", "").lower() != "close"
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return 400, False
        if length > MAX_BODY or length < 0:
            return 413, False
        body = await reader.readexactly(length) if length else b""
        parts = path[len(PATH_PREFIX):].split("/") if path.startswith(PATH_PREFIX) else []
        if method != "POST" or len(parts) != 2 or not all(parts):
            return 404, keep
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        try:
            return await self.accept(parts[0], parts[1], token, data), keep
        except ApiError as exc:  # the Secret could not be read: try again later
            log.debug("progress token of %s/%s: %s", parts[0], parts[1], exc)
            return 503, keep


def _format_shifted(offset: float, t: float) -> str:
    return format_time(t + offset)


def _response(code: int, reason: str) -> bytes:
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
            ).encode()


_RESPONSES = {204: _response(204, "No Content"), 400: _response(400, "Bad Request"),
              403: _response(403, "Forbidden"), 404: _response(404, "Not Found"),
              413: _response(413, "Payload Too Large"), 503: _response(503, "Service Unavailable")}


def only_progress_changed(old: ExperimentView | None, new: ExperimentView | None) -> bool:
    """A watch event that is just a progress write: nothing for the scheduler to do."""
    if old is None or new is None or old.uid != new.uid:
        return False
    strip = ("progress",)
    return ({k: v for k, v in old.status.items() if k not in strip}
            == {k: v for k, v in new.status.items() if k not in strip}
            and old.status.get("progress") != new.status.get("progress")
            and (old.spec, old.error, old.cancel_requested, old.deleting, old.held)
            == (new.spec, new.error, new.cancel_requested, new.deleting, new.held))
