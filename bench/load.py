#!/usr/bin/env python3
"""Load clients for bench/run.sh, standard library only (nothing to install).

Every subcommand prints one JSON object on stdout; times are in milliseconds.

  get    PORT HOST                 one timed GET / (connect to full response)
  ws     PORT HOST N               N sequential WebSocket echo round trips on /ws
  herd   PORT HOSTS N              N concurrent GET / spread over the comma-separated
                                   HOSTS: all connections are opened first, then every
                                   request is written at once
  floor  CONTAINER:PORT,...        start each stopped CONTAINER at once through the
                                   Docker Engine API, then poll GET / on its PORT every
                                   2 ms until it answers; "ms" is until all answered

Everything talks to 127.0.0.1 only. Every wait is bounded.
"""

import asyncio
import base64
import http.client
import json
import math
import os
import socket
import struct
import sys
import threading
import time

LOOPBACK = "127.0.0.1"


def pct(values, p, digits=3):
    """Nearest-rank percentile of `values` (p in 0..100)."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return round(s[k], digits)


def status_of(response: bytes):
    """The status code of a raw HTTP response, or None."""
    line = response.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None


def request_bytes(host, path="/"):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


# --- get -------------------------------------------------------------------


def cmd_get(port, host, timeout=70.0):
    """One GET / with `Connection: close`, timed from connect to end of body."""
    t0 = time.perf_counter()
    with socket.create_connection((LOOPBACK, int(port)), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request_bytes(host))
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    ms = (time.perf_counter() - t0) * 1000
    return {"ms": round(ms, 1), "status": status_of(b"".join(chunks))}


# --- ws --------------------------------------------------------------------


class WsClient:
    """The smallest WebSocket client that can echo text frames (RFC 6455)."""

    def __init__(self, port, host, timeout=10.0):
        self.sock = socket.create_connection((LOOPBACK, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if status_of(head) != 101:
            raise RuntimeError(f"no WebSocket upgrade: {head[:200]!r}")
        self.buf = bytearray(rest)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send_text(self, payload: bytes):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        else:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv_frame(self):
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        if b1 & 0x80:
            self._take(4)  # servers never mask, but be lenient
        return b0 & 0x0F, self._take(n)

    def close(self):
        try:
            self.sock.sendall(struct.pack("!BB", 0x88, 0x80) + os.urandom(4))
        finally:
            self.sock.close()


def cmd_ws(port, host, n):
    n = int(n)
    ws = WsClient(port, host)
    times = []
    try:
        for i in range(5):  # warm-up, not counted
            ws.send_text(b"warm-up %d" % i)
            ws.recv_frame()
        for i in range(n):
            payload = b"round trip %08d" % i
            t0 = time.perf_counter()
            ws.send_text(payload)
            opcode, got = ws.recv_frame()
            times.append((time.perf_counter() - t0) * 1000)
            if opcode != 1 or got != payload:
                raise RuntimeError(f"bad echo {opcode} {got!r}")
    finally:
        ws.close()
    return {"n": n, "p50": pct(times, 50), "p99": pct(times, 99), "max": pct(times, 100)}


# --- herd ------------------------------------------------------------------


async def herd(port, hosts, n, timeout):
    go = asyncio.Event()
    attempted = 0
    results = []  # (ok, ms, error)

    def attempt_done():
        nonlocal attempted
        attempted += 1
        if attempted == n:
            go.set()

    async def one(host):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, port), timeout
            )
        except Exception as e:  # noqa: BLE001 - every failure is counted
            attempt_done()
            results.append((False, None, f"connect: {type(e).__name__} {e}"))
            return
        attempt_done()
        await go.wait()
        t0 = time.perf_counter()
        try:
            writer.write(request_bytes(host))
            await writer.drain()
            data = await asyncio.wait_for(reader.read(-1), timeout)
            ms = (time.perf_counter() - t0) * 1000
            status = status_of(data)
            if status == 200:
                results.append((True, ms, None))
            else:
                results.append((False, ms, f"status {status}: {data[:120]!r}"))
        except Exception as e:  # noqa: BLE001
            results.append((False, None, f"request: {type(e).__name__} {e}"))
        finally:
            writer.close()

    t_all = time.perf_counter()
    tasks = [asyncio.create_task(one(hosts[i % len(hosts)])) for i in range(n)]
    await asyncio.wait_for(go.wait(), timeout)
    t_go = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout + 5)
    t_end = time.perf_counter()
    ok = [ms for good, ms, _ in results if good]
    errors = [err for good, _, err in results if not good]
    return {
        "n": n,
        "ok": len(ok),
        "errors": len(errors),
        "first_errors": errors[:3],
        "connect_ms": round((t_go - t_all) * 1000, 1),
        "wall_ms": round((t_end - t_go) * 1000, 1),
        "p50": pct(ok, 50, 1),
        "p99": pct(ok, 99, 1),
        "max": pct(ok, 100, 1),
    }


def cmd_herd(port, hosts, n, timeout=90.0):
    return asyncio.run(herd(int(port), hosts.split(","), int(n), float(timeout)))


# --- floor -----------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def docker_socket():
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise SystemExit(f"floor needs a unix Docker socket, DOCKER_HOST is {host}")
    return host[len("unix://") :]


def answers_http(port):
    """One probe: does GET / on the port get an HTTP status line back?"""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request_bytes("localhost"))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return status_of(data) == 200
    except OSError:
        return False


def start_and_wait(container, port, deadline_s):
    """`docker start` (the Engine API call, without the CLI's own start-up),
    then GET / every 2 ms until it answers 200: milliseconds in all."""
    conn = UnixHTTPConnection(docker_socket())
    t0 = time.perf_counter()
    conn.request("POST", f"/containers/{container}/start")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status not in (204, 304):
        raise RuntimeError(f"docker start {container}: {response.status} {body!r}")
    while time.perf_counter() - t0 < deadline_s:
        if answers_http(port):
            return (time.perf_counter() - t0) * 1000
        time.sleep(0.002)
    raise RuntimeError(f"{container} did not answer on port {port} within {deadline_s}s")


def cmd_floor(pairs, deadline_s=60.0):
    """What any wake must at least cost: start each stopped CONTAINER:PORT of
    the comma-separated `pairs` at once and wait until each answers."""
    pairs = [p.rsplit(":", 1) for p in pairs.split(",")]
    times, errors = [], []

    def one(container, port):
        try:
            times.append(start_and_wait(container, int(port), float(deadline_s)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("; ".join(errors[:3]))
    return {
        "ms": round((time.perf_counter() - t0) * 1000, 1),
        "p50": pct(times, 50, 1),
        "max": pct(times, 100, 1),
    }


COMMANDS = {"get": cmd_get, "ws": cmd_ws, "herd": cmd_herd, "floor": cmd_floor}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])))
