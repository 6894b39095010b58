"""shipyard.progress: records in memory, sends the latest at most once per interval,
never raises into training, and does nothing without a destination."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import shipyard
from shipyard.sdk.progress import FileSink, HttpSink, Reporter, reporter_from_env


def test_without_a_destination_a_call_does_nothing():
    assert reporter_from_env({}) is None
    out = subprocess.run([sys.executable, "-c", "import shipyard, threading; shipyard.progress(3, 10, loss=1);"
                          "print(threading.active_count())"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}, check=True)
    assert out.stdout.strip() == "1"  # no sender thread started


def test_many_calls_send_only_the_latest_values_once():
    sent = []
    r = Reporter(sent.append, interval_s=3600, identity={"rank": "0"})
    for step in range(1000):
        r.record(step, 1000 if step == 0 else None, {"loss": 1 / (step + 1)})
    assert sent == []  # nothing sent from the training thread
    r.flush()
    r.flush()  # nothing new: nothing sent
    assert sent == [{"rank": "0", "step": 999, "total_steps": 1000, "metrics": {"loss": 1 / 1000}}]


def test_a_failing_destination_never_raises_and_the_values_are_sent_later():
    calls = []

    def flaky(payload):
        calls.append(payload["step"])
        if len(calls) == 1:
            raise ConnectionRefusedError("receiver down")

    r = Reporter(flaky, interval_s=3600)
    r.record(5, None, {"bad": object()})  # a metric with no float is left out
    r.flush()
    assert r.errors == 1
    r.flush()  # the same values again, since they were never delivered
    assert calls == [5, 5] and r.sent == 1


def test_the_sender_thread_flushes_and_close_sends_the_last_step(tmp_path):
    path = tmp_path / "rank.json"
    got = threading.Event()
    sink = FileSink(str(path))

    def send(payload):
        sink(payload)
        got.set()

    r = Reporter(send, interval_s=0.05)
    r.record(1, 10, {})
    assert got.wait(10)
    r.record(10, None, {"acc": 0.9})
    r.close()
    data = json.loads(path.read_text())
    assert (data["step"], data["total_steps"], data["metrics"]) == (10, 10, {"acc": 0.9})
    assert [s for _, s in data["samples"]][-1] == 10


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list[tuple[str, str, dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append((self.path, self.headers["Authorization"], body))
        status = {"Bearer right": 204, "Bearer standby": 503}.get(self.headers["Authorization"], 403)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.bodies = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_sink_sends_the_token_from_its_file_and_a_refusal_is_an_error(tmp_path, receiver):
    token = tmp_path / "token"
    token.write_text("right\n")
    env = {"SHIPYARD_PROGRESS_URL": f"{receiver}/v1/progress/ns/exp", "SHIPYARD_PROGRESS_TOKEN": str(token),
           "RANK": "3", "HOSTNAME": "exp-worker-3"}
    r = reporter_from_env(env)
    r.record(7, 70, {"loss": 0.5})
    r.flush()
    r.record(8, None, {})
    r.flush()  # the same kept-alive connection
    assert r.errors == 0
    assert _Receiver.bodies[0] == ("/v1/progress/ns/exp", "Bearer right",
                                   {"rank": "3", "pod": "exp-worker-3", "step": 7, "total_steps": 70,
                                    "metrics": {"loss": 0.5}})
    token.write_text("wrong")
    r.record(9, None, {})
    r.flush()
    assert r.errors == 1


def test_an_unreachable_receiver_is_counted_not_raised():
    r = Reporter(HttpSink("http://127.0.0.1:9/v1/progress/ns/x", None), interval_s=3600)
    shipyard.progress  # the export resolves  # noqa: B018
    r.record(1, None, {})
    r.flush()
    assert r.errors == 1


def test_a_standby_receiver_makes_the_sink_reconnect_next_time(tmp_path, receiver):
    token = tmp_path / "token"
    token.write_text("standby")
    sink = HttpSink(f"{receiver}/v1/progress/ns/exp", str(token))
    with pytest.raises(RuntimeError, match="503"):
        sink({"step": 1})
    assert sink.conn is None  # a new connection: the Service may route it to the leader
    token.write_text("right")
    sink({"step": 2})
    assert [b["step"] for _, _, b in _Receiver.bodies] == [1, 2]
