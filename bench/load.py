#!/usr/bin/env python3
"""Load clients for bench/run.sh, standard library only (nothing to install).

Every subcommand prints one JSON object on stdout; times are in milliseconds.
ADDR is a PORT on 127.0.0.1, or IP:PORT (a bench container's own address).

  get    ADDR HOST                 one timed GET / (connect to full response)
  ws     ADDR HOST N               N sequential WebSocket echo round trips on /ws
  herd   ADDR HOSTS N              N concurrent GET / spread over the comma-separated
                                   HOSTS: all connections are opened first, then every
                                   request is written at once
  floor  CONTAINER:PORT,...        start each stopped CONTAINER at once through the
                                   Docker Engine API, then poll GET / on its PORT every
                                   2 ms until it answers; "ms" is until all answered.
                                   CONTAINER:ip:PORT polls the container's own address
                                   instead, looked up (inspect) right after the start
  unpause CONTAINER PORT          pause the running CONTAINER through the Docker Engine
                                   API, wait 300 ms, then time unpause + one GET / on
                                   its own address and PORT: the floor of a nap's wake;
                                   "unpause_ms" is the API call alone
  cold   NAME IMAGE MEMORY NETWORK PORT
                                   create (labelled dormant.bench=true, on NETWORK), start,
                                   look up its address and poll GET / on it every 2 ms:
                                   what creating a container costs at least; removed after
  helpers [CONTAINER...]           resident memory (VmRSS, kB) of Docker's per-container
                                   helper processes for these containers: docker-proxy
                                   (by published port), containerd-shim (by id),
                                   fuse-overlayfs (by upper dir); and of every docker-proxy
                                   on the host

Everything talks to 127.0.0.1 and to the bench's own containers only. Every wait is
bounded.
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


def addr(spec):
    """`PORT` (on loopback) or `IP:PORT` -> (ip, port)."""
    spec = str(spec)
    if ":" in spec:
        ip, port = spec.rsplit(":", 1)
        return ip, int(port)
    return LOOPBACK, int(spec)


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


def cmd_get(where, host, timeout=70.0):
    """One GET / with `Connection: close`, timed from connect to end of body."""
    t0 = time.perf_counter()
    with socket.create_connection(addr(where), timeout=timeout) as s:
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

    def __init__(self, where, host, timeout=10.0):
        self.sock = socket.create_connection(addr(where), timeout=timeout)
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


def cmd_ws(where, host, n):
    n = int(n)
    ws = WsClient(where, host)
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


async def herd(where, hosts, n, timeout):
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
                asyncio.open_connection(*where), timeout
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
        "min": round(min(ok), 1) if ok else None,
        "p50": pct(ok, 50, 1),
        "p99": pct(ok, 99, 1),
        "max": pct(ok, 100, 1),
    }


def cmd_herd(where, hosts, n, timeout=90.0):
    return asyncio.run(herd(addr(where), hosts.split(","), int(n), float(timeout)))


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


def engine(method, path, body=None, ok=(200, 201, 204, 304)):
    """One Engine API call on the local socket: the decoded JSON answer, or None."""
    conn = UnixHTTPConnection(docker_socket())
    try:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    if response.status not in ok:
        raise RuntimeError(f"docker {method} {path}: {response.status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def container_ip(container):
    """The container's address on its (first) network, as Docker reports it."""
    inspect = engine("GET", f"/containers/{container}/json")
    for endpoint in (inspect.get("NetworkSettings") or {}).get("Networks", {}).values():
        if endpoint.get("IPAddress"):
            return endpoint["IPAddress"]
    raise RuntimeError(f"{container} has no address on any network")


def answers_http(where):
    """One probe: does GET / at (ip, port) get a 200 status line back?"""
    try:
        with socket.create_connection(where, timeout=1.0) as s:
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


def poll_until_ready(container, where, t0, deadline_s):
    """GET / every 2 ms until it answers 200: milliseconds since t0."""
    while time.perf_counter() - t0 < deadline_s:
        if answers_http(where):
            return (time.perf_counter() - t0) * 1000
        time.sleep(0.002)
    raise RuntimeError(f"{container} did not answer at {where} within {deadline_s}s")


def start_and_wait(container, target, deadline_s):
    """`docker start` (the Engine API call, without the CLI's own start-up),
    then GET / every 2 ms until it answers 200: milliseconds in all. `target`
    is a port on loopback, or `ip:PORT` for the container's own address,
    looked up after the start (its address may change from start to start)."""
    t0 = time.perf_counter()
    engine("POST", f"/containers/{container}/start")
    if target.startswith("ip:"):
        where = (container_ip(container), int(target[3:]))
    else:
        where = (LOOPBACK, int(target))
    return poll_until_ready(container, where, t0, deadline_s)


def cmd_floor(pairs, deadline_s=60.0):
    """What any wake must at least cost: start each stopped CONTAINER:PORT of
    the comma-separated `pairs` at once and wait until each answers."""
    pairs = [p.split(":", 1) for p in pairs.split(",")]
    times, errors = [], []

    def one(container, target):
        try:
            times.append(start_and_wait(container, target, float(deadline_s)))
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


def cmd_unpause(container, port):
    """What waking a napping container must at least cost: Docker's unpause
    (the Engine API call `docker unpause` sends) and one request straight to
    the app, on a connection opened after it."""
    where = f"{container_ip(container)}:{int(port)}"
    engine("POST", f"/containers/{container}/pause")
    time.sleep(0.3)
    t0 = time.perf_counter()
    engine("POST", f"/containers/{container}/unpause")
    unpaused = time.perf_counter()
    answer = cmd_get(where, "floor")
    if answer["status"] != 200:
        raise SystemExit(f"{container} answered {answer['status']} after its unpause")
    return {
        "ms": round((time.perf_counter() - t0) * 1000, 1),
        "unpause_ms": round((unpaused - t0) * 1000, 1),
    }


def cmd_cold(name, image, memory, network, port, deadline_s=60.0):
    """What any restore must at least cost: create a container from `image`
    with the settings dormant gives its own (memory limit without swap, pids
    limit, no-new-privileges, on `network`, no published port), start it,
    look up its address and poll GET / until it answers. Removed afterwards."""
    memory = int(memory)
    body = {
        "Image": image,
        "Labels": {"dormant.bench": "true"},
        "ExposedPorts": {f"{port}/tcp": {}},
        "HostConfig": {
            "NetworkMode": network,
            "Memory": memory,
            "MemorySwap": memory,
            "PidsLimit": 1024,
            "SecurityOpt": ["no-new-privileges"],
        },
    }
    t0 = time.perf_counter()
    try:
        engine("POST", f"/containers/create?name={name}", body)
        t_created = time.perf_counter()
        engine("POST", f"/containers/{name}/start")
        t_started = time.perf_counter()
        where = (container_ip(name), int(port))
        ms = poll_until_ready(name, where, t0, float(deadline_s))
    finally:
        try:
            engine("DELETE", f"/containers/{name}?force=1&v=1", ok=(204, 404))
        except Exception:  # noqa: BLE001 - run.sh removes it by label anyway
            pass
    return {
        "ms": round(ms, 1),
        "create_ms": round((t_created - t0) * 1000, 1),
        "start_ms": round((t_started - t_created) * 1000, 1),
    }


def processes():
    """(pid, comm, argv, VmRSS kB) of every process we may read."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            rss = 0
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
        except OSError:  # gone, or a kernel thread
            continue
        yield int(pid), comm, argv, rss


def flag(argv, name):
    """The value after `name` in argv, or None."""
    for i, a in enumerate(argv[:-1]):
        if a == name:
            return argv[i + 1]
    return None


def cmd_helpers(*containers):
    """What Docker runs beside each of `containers`, in resident memory."""
    ids, ports, uppers = set(), set(), set()
    for c in containers:
        inspect = engine("GET", f"/containers/{c}/json")
        ids.add(inspect["Id"])
        for bindings in ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).values():
            for b in bindings or []:
                if b.get("HostPort"):
                    ports.add(b["HostPort"])
        upper = ((inspect.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
        if upper:
            uppers.add(upper)
    kinds = ("docker_proxy", "shim", "fuse_overlayfs", "all_docker_proxy")
    out = {kind: {"n": 0, "kb": 0} for kind in kinds}

    def add(kind, rss):
        out[kind]["n"] += 1
        out[kind]["kb"] += rss

    for _pid, comm, argv, rss in processes():
        if comm == "docker-proxy":
            add("all_docker_proxy", rss)
            if flag(argv, "-host-port") in ports:
                add("docker_proxy", rss)
        elif comm.startswith("containerd-shim"):
            if flag(argv, "-id") in ids:
                add("shim", rss)
        elif comm == "fuse-overlayfs":
            options = (flag(argv, "-o") or "").split(",")
            if any(o.startswith("upperdir=") and o[len("upperdir=") :] in uppers for o in options):
                add("fuse_overlayfs", rss)
    out["containers"] = len(ids)
    return out


COMMANDS = {"get": cmd_get, "ws": cmd_ws, "herd": cmd_herd, "floor": cmd_floor, "cold": cmd_cold,
            "unpause": cmd_unpause, "helpers": cmd_helpers}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])))
