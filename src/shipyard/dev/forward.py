"""Forward 127.0.0.1 ports of the host into a dev cluster's network namespace.

The control plane of a cluster with real nodes runs inside its namespace (so that
kubelets, pods and the API server reach each other); tests, the CLI and
kubeconfigs keep talking to https://127.0.0.1:PORT on the host. This process
listens on those host ports and, per connection, opens a socket *inside* the
namespace (a socket belongs to the namespace its thread was in when it was made)
to the same port on the namespace's 127.0.0.1. Nothing listens anywhere else.

Run as `python -m shipyard.dev.forward --netns /run/netns/NAME PORT...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys

from shipyard.dev.netns import setns

_CHUNK = 256 * 1024


class Forwarder:
    def __init__(self, netns_path: str) -> None:
        self.host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.target_fd = os.open(netns_path, os.O_RDONLY)

    def inner_socket(self) -> socket.socket:
        # Single-threaded event loop: the switch and back are never interleaved.
        setns(self.target_fd)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            setns(self.host_fd)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    async def handle(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        inner = self.inner_socket()
        try:
            await loop.sock_connect(inner, ("127.0.0.1", port))
        except OSError:
            inner.close()
            writer.close()
            return
        r2, w2 = await asyncio.open_connection(sock=inner)
        await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))

    async def serve(self, ports: list[int]) -> None:
        servers = [
            await asyncio.start_server(functools.partial(self.handle, p), "127.0.0.1", p,
                                       reuse_address=True)
            for p in ports
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"forwarding 127.0.0.1:{ports} into the namespace", flush=True)
        await stop.wait()
        for s in servers:
            s.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shipyard.dev.forward")
    p.add_argument("--netns", required=True, help="path of the namespace, /run/netns/NAME")
    p.add_argument("ports", nargs="+", type=int)
    a = p.parse_args(argv)
    asyncio.run(Forwarder(a.netns).serve(a.ports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
