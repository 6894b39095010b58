"""`shipyard logs -c`: a pod's log read that fails is tried again, not dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shipyard.api.vocab import LABEL_INDEX, LABEL_ROLE
from shipyard.cli import cluster_logs
from shipyard.kube.errors import ApiError, NotFound, Transient

POD = {"metadata": {"name": "job-worker-1", "namespace": "ns",
                    "labels": {LABEL_ROLE: "worker", LABEL_INDEX: "1"}}}


class Kubelet:
    """Serves `log` lines; each read fails as `script` says: an error before any line,
    or ("cut", n): n lines then a dropped connection."""

    def __init__(self, log: list[str], script: list[Any]) -> None:
        self.log, self.script, self.reads = log, script, 0

    async def lines(self, path: str, params: dict[str, Any] | None = None, *,
                    read_timeout_s: float | None = None) -> AsyncIterator[bytes]:
        self.reads += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, ApiError):
            raise step
        for i, line in enumerate(self.log):
            if isinstance(step, tuple) and i == step[1]:
                raise Transient(503, "ServiceUnavailable", "connection reset")
            yield line.encode()


def _read(kubelet: Kubelet, **kw: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    asyncio.run(cluster_logs._stream(kubelet, POD, True, kw.get("since_s"),  # type: ignore[arg-type]
                                     lambda r, line: out.append((r, line)), kw.get("tail")))
    return out


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(cluster_logs, "BACKOFF_S", 0.0)


LOG = [f"step {i}" for i in range(5)]


def test_a_first_read_refused_is_tried_again():
    waiting = ApiError(400, "BadRequest", 'container "main" is waiting to start')
    kubelet = Kubelet(LOG, [waiting, Transient(500, "InternalError", "proxy error")])
    assert _read(kubelet) == [("worker-1", line) for line in LOG]
    assert kubelet.reads == 3


def test_a_stream_cut_short_resumes_without_showing_a_line_twice():
    kubelet = Kubelet(LOG, [("cut", 2), ("cut", 4)])
    assert [line for _, line in _read(kubelet)] == LOG


def test_retries_are_bounded():
    kubelet = Kubelet(LOG, [Transient(503, "ServiceUnavailable", "down")] * 100)
    assert _read(kubelet) == []
    assert kubelet.reads == cluster_logs.RETRIES + 1


def test_a_pod_gone_is_not_asked_again():
    kubelet = Kubelet(LOG, [NotFound(404, "NotFound", 'pods "job-worker-1" not found')])
    assert _read(kubelet) == [] and kubelet.reads == 1


def test_with_since_a_stream_cut_after_lines_is_not_resumed():
    # Its window has moved: resuming could repeat or skip lines.
    kubelet = Kubelet(LOG, [("cut", 2)])
    assert [line for _, line in _read(kubelet, since_s=60.0)] == LOG[:2]
    assert kubelet.reads == 1


def test_a_pod_whose_init_container_failed_is_read_from_that_container():
    init_failed = {**POD, "status": {
        "initContainerStatuses": [{"name": "shipyard-unpack", "state": {"terminated": {"exitCode": 2}}}],
        "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}]}}
    unpacking = {**POD, "status": {
        "initContainerStatuses": [{"name": "shipyard-unpack", "state": {"running": {}}}],
        "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}]}}
    running = {**POD, "status": {"containerStatuses": [{"name": "main", "state": {"running": {}}}]}}
    assert cluster_logs.log_container(init_failed) == "shipyard-unpack"
    assert cluster_logs.log_container(unpacking) is None
    assert cluster_logs.log_container(running) == ""
    assert cluster_logs._params(False, None, None, "shipyard-unpack")["container"] == "shipyard-unpack"
    assert "container" not in cluster_logs._params(False, None, None, "")
