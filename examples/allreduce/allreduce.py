"""All-reduce a small array across every rank over the rendezvous address, then check it.

Rank 0 listens on MASTER_PORT (at MASTER_ADDR when that is already its own address);
every other rank connects, sends its array, and receives the sum. Every rank checks
the sum against the closed form, so a wrong environment (RANK, WORLD_SIZE, MASTER_*)
fails loudly. Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time

LENGTH = 8


def local_array(rank: int) -> list[float]:
    return [rank + i / 10 for i in range(LENGTH)]


def expected_sum(world: int) -> list[float]:
    ranks = world * (world - 1) / 2
    return [ranks + world * i / 10 for i in range(LENGTH)]


def send(sock: socket.socket, obj: object) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def receive(stream) -> object:
    line = stream.readline()
    if not line:
        raise ConnectionError("peer closed the connection")
    return json.loads(line)


def listen(host: str, port: int) -> socket.socket:
    # Bind rank 0's own address when it resolves to one of ours (the local backend's
    # 127.0.0.1). On a cluster the headless Service publishes rank 0's name a moment
    # after its container starts, and after a restart the name may still point at the
    # last attempt's pod: then listen on every address of this pod, as torch's TCPStore
    # does, rather than wait on DNS.
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        # create_server re-raises a failed lookup as a plain OSError carrying the
        # resolver's code, which is negative (EAI_AGAIN, EAI_NONAME), not a gaierror.
        unresolved = exc.errno is not None and exc.errno < 0
        if not unresolved and exc.errno != errno.EADDRNOTAVAIL:
            raise
        print(f"rank 0: {host} is not an address of this pod yet ({exc}); "
              f"listening on every address", flush=True)
        return socket.create_server(("", port))


def serve(host: str, port: int, world: int, mine: list[float]) -> list[float]:
    with listen(host, port) as server:
        server.settimeout(120)
        peers = []
        total = list(mine)
        while len(peers) < world - 1:
            conn, _ = server.accept()
            stream = conn.makefile("r")
            rank, values = receive(stream)
            print(f"rank 0: got array from rank {rank}", flush=True)
            total = [a + b for a, b in zip(total, values, strict=True)]
            peers.append(conn)
        for conn in peers:
            send(conn, total)
            conn.close()
        return total


def join(host: str, port: int, rank: int, mine: list[float]) -> list[float]:
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # rank 0 may not be listening yet
    with sock:
        sock.settimeout(120)
        send(sock, [rank, mine])
        return receive(sock.makefile("r"))


def main() -> int:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    mine = local_array(rank)
    print(f"rank {rank}/{world}: rendezvous at {host}:{port}", flush=True)
    total = serve(host, port, world, mine) if rank == 0 else join(host, port, rank, mine)
    want = expected_sum(world)
    if any(abs(a - b) > 1e-9 for a, b in zip(total, want, strict=True)):
        print(f"rank {rank}: allreduce WRONG: got {total}, want {want}", flush=True)
        return 1
    print(f"rank {rank}: allreduce OK, sum[0..2]={total[:3]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
