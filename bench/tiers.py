#!/usr/bin/env python3
"""Regional-tier simulation for bench/tiers.sh (see bench/README.md, "Regional tier").

Runs real `edge` processes on loopback in front of one origin (here, in this process) that
counts its requests, and sends Zipf(1.0) traffic over OBJECTS objects of 1 KiB, spread
round-robin over the edges. Three runs, each with fresh processes:

  1. no tier:       3 edges, each fetching its misses from the origin itself;
  2. tier:          3 edges with `[tier] parents` = 2 regional nodes;
  3. tier, failover: as 2, and one parent is killed (SIGKILL) half-way through.

Edges have small caches (`max_size = "256 KiB"`: the head of the popularity curve), parents
large ones. Prints one table row per run: origin requests, hit ratio at the edges (X-Cache
Hit/RefreshHit over all requests) and at the parents (1 - origin requests / edge misses),
p50/p99 latency seen by the viewers, failed viewer requests.
"""

import argparse
import bisect
import http.client
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"x" * 1024


class CountingOrigin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_GET(self):
        with CountingOrigin.lock:
            CountingOrigin.count += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, name):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not listen on {port} within 30 s")


class Fleet:
    def __init__(self, binary, work, origin_port, tier, parents=2, edges=3):
        self.procs = []
        token = os.path.join(work, "tier-token")
        with open(token, "w") as f:
            f.write("bench-tier-token-0123456789\n")
        common = (
            f'[origins.app]\ntype = "http"\ntargets = ["http://127.0.0.1:{origin_port}"]\n\n'
            f'[[behaviors]]\npath = "*"\norigin = "app"\n'
        )
        self.parent_urls = []
        self.parent_procs = []
        if tier:
            for i in range(parents):
                port = free_port()
                config = (
                    f'[server]\nlisten = "127.0.0.1:{port}"\n[cache]\nmax_size = "256 MiB"\n'
                    f'{common}\n[tier]\ntoken_file = "tier-token"\n'
                )
                proc = self.start(binary, work, f"parent{i}", config, port)
                self.parent_urls.append(f"http://127.0.0.1:{port}")
                self.parent_procs.append(proc)
        self.edge_ports = []
        for i in range(edges):
            port = free_port()
            tier_table = ""
            if tier:
                listed = ", ".join(f'"{u}"' for u in self.parent_urls)
                tier_table = f'\n[tier]\nparents = [{listed}]\ntoken_file = "tier-token"\n'
            config = (
                f'[server]\nlisten = "127.0.0.1:{port}"\n'
                f'[cache]\nmax_size = "256 KiB"\nmax_object_size = "64 KiB"\n'
                f"{common}{tier_table}"
            )
            self.start(binary, work, f"edge{i}", config, port)
            self.edge_ports.append(port)

    def start(self, binary, work, name, config, port):
        path = os.path.join(work, f"{name}.toml")
        with open(path, "w") as f:
            f.write(config)
        log = open(os.path.join(work, f"{name}.log"), "w")
        proc = subprocess.Popen(
            [binary, "serve", "--config", path],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        self.procs.append(proc)
        wait_listening(port, proc, name)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def zipf_paths(n_requests, objects, seed):
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / k for k in range(1, objects + 1)))
    total = cumulative[-1]
    return [
        f"/obj/{bisect.bisect_left(cumulative, rng.random() * total)}"
        for _ in range(n_requests)
    ]


def run_load(edge_ports, paths, workers, kill_at=None, kill=None):
    """Sends paths[i] to edge i % len(edges) from `workers` threads; returns stats."""
    latencies = [0.0] * len(paths)
    caches = [""] * len(paths)
    failures = []
    next_index = itertools.count()
    lock = threading.Lock()
    killed = threading.Event()

    def worker():
        conns = {}
        while True:
            with lock:
                i = next(next_index)
            if i >= len(paths):
                break
            if kill_at is not None and i == kill_at and not killed.is_set():
                killed.set()
                kill()
            port = edge_ports[i % len(edge_ports)]
            started = time.perf_counter()
            try:
                conn = conns.get(port)
                if conn is None:
                    conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                # One site name for every edge, as real viewers of a fleet use: the host is part
                # of the cache key, so per-edge addresses would make every edge's keys distinct.
                conn.request("GET", paths[i], headers={"Host": "www.example.com"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or len(body) != len(BODY):
                    failures.append((paths[i], response.status, len(body)))
                caches[i] = response.getheader("x-cache", "")
            except (OSError, http.client.HTTPException) as e:
                conns.pop(port, None)
                failures.append((paths[i], repr(e)))
            latencies[i] = time.perf_counter() - started
        for conn in conns.values():
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    hits = sum(1 for c in caches if c in ("Hit", "RefreshHit"))
    return {
        "requests": len(paths),
        "edge_hits": hits,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "failures": failures,
        "elapsed": elapsed,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", required=True, help="path to the edge binary")
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--objects", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # edges closing pooled connections when they stop

    origin = QuietServer(("127.0.0.1", 0), CountingOrigin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    origin_port = origin.server_address[1]
    paths = zipf_paths(args.requests, args.objects, args.seed)

    rows = []
    for name, tier, kill in [
        ("no tier (3 edges -> origin)", False, False),
        ("tier (3 edges -> 2 parents -> origin)", True, False),
        ("tier, one parent killed half-way", True, True),
    ]:
        with tempfile.TemporaryDirectory() as work:
            fleet = Fleet(args.edge, work, origin_port, tier)
            try:
                CountingOrigin.count = 0
                kill_fn = None
                if kill:
                    def kill_fn(proc=fleet.parent_procs[0]):
                        proc.send_signal(signal.SIGKILL)
                stats = run_load(
                    fleet.edge_ports,
                    paths,
                    args.workers,
                    kill_at=len(paths) // 2 if kill else None,
                    kill=kill_fn,
                )
            finally:
                fleet.stop()
        origin_requests = CountingOrigin.count
        edge_misses = stats["requests"] - stats["edge_hits"]
        parent_hit = (1 - origin_requests / edge_misses) if tier and edge_misses else None
        rows.append((name, origin_requests, stats, parent_hit))
        for failure in stats["failures"][:5]:
            print(f"  failed: {failure}", file=sys.stderr)

    print(f"{args.requests} requests, {args.objects} objects of 1 KiB, Zipf(1.0), "
          f"{args.workers} viewer threads, round-robin over 3 edges\n")
    print("| run | origin requests | edge hit ratio | parent hit ratio | p50 | p99 | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, origin_requests, stats, parent_hit in rows:
        parent = f"{parent_hit:.1%}" if parent_hit is not None else "-"
        print(
            f"| {name} | {origin_requests} | {stats['edge_hits'] / stats['requests']:.1%} | "
            f"{parent} | {stats['p50_ms']:.2f} ms | {stats['p99_ms']:.2f} ms | "
            f"{len(stats['failures'])} |"
        )
    without, with_tier = rows[0][1], rows[1][1]
    ratio = without / with_tier if with_tier else float("inf")
    print(f"\norigin requests without / with the tier: {ratio:.1f}x (bar: >= 3x)")
    ok = ratio >= 3 and not rows[2][2]["failures"]
    print("bars met" if ok else "BARS NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
