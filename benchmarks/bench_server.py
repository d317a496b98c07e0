"""Latency of the search API of ``audiomoment serve`` under concurrent clients, on loopback.

What it does
------------
1. Builds (or reuses, with ``--db``) an index of ``--hours`` hours of SIMULATED joint-space
   window embeddings: :func:`audiomoment.testing.archive.simulate_archive` (seed ``--seed``)
   through :func:`audiomoment.index.ingest.index_embeddings`, float16 rows, with the
   archive's neutral embedding; random unit vectors when that simulator is not available.
   An index left by ``benchmarks/bench_index_search.py`` with the same hours and seed is
   reused as it is (same ``bench-complete.json`` marker).
2. Starts ``audiomoment serve --db INDEX`` in a subprocess on a free loopback port and waits
   for ``/api/status``.
3. For each client count of ``--clients``: that many threads, each with its own HTTP
   connection, send search requests until ``--requests`` have been sent or ``--max-seconds``
   have passed: by turns ``POST /api/search/embedding`` (query embeddings of the archive's
   captions) and ``GET /api/search/like`` (a random 3-s moment of a random recording). One
   warm-up request of each kind is not counted. No text queries: the text encoder is not
   what is measured (it adds its own time per distinct query, once).
4. Prints, per client count and kind: requests, failures (any status but 200, or a transport
   error), p50 / p95 / max latency in milliseconds (client side: sent to fully read), the
   server's own time per request (the answer's ``seconds``), and requests per second; writes
   them as JSON with ``--json FILE``. Exits 1 when any request failed.

Usage::

    .venv/bin/python benchmarks/bench_server.py --hours 5
    .venv/bin/python benchmarks/bench_server.py --hours 1000 --db /tmp/am_idx1000 \\
        --clients 1 4 --requests 100 --max-seconds 300

The 1,000-h index holds 3.6 million windows (about 7.4 GB of float16 rows; ``df -h``
first); building it takes some minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.ingest import index_embeddings
from audiomoment.index.store import MANIFEST, ArchiveIndex, ModelSpec

DONE = "bench-complete.json"
DIM = 1024


# ---------------------------------------------------------------------------- the index


def _simulated(hours: float, seed: int) -> tuple[Iterator[tuple[str, Any, float]] | None,
                                                 NDArray[np.float32] | None,
                                                 list[NDArray[np.float32]]]:
    """(items, neutral, query vectors) of the simulated archive; (None, None, []) when the
    simulator is not available."""
    try:
        from audiomoment.testing.archive import archive_space
    except ImportError:
        return None, None, []
    space = archive_space(seed)
    rng = np.random.default_rng(seed)
    queries: list[NDArray[np.float32]] = []
    seen: set[tuple[str, ...]] = set()
    for i in rng.permutation(len(space.captions)).tolist():
        concepts = space.concepts(space.captions[i])
        if concepts and concepts not in seen:
            seen.add(concepts)
            queries.append(space.query_embedding(space.captions[i]))
        if len(queries) == 32:
            break
    items = ((r.recording_id, r.embeddings, r.duration_s) for r in space.recordings(hours))
    return items, space.neutral, queries


def _unit_rows(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _random_items(hours: float, seed: int) -> Iterator[tuple[str, NDArray[np.float32], float]]:
    """Recordings of 10 minutes (the last one shorter) of random unit rows."""
    rng = np.random.default_rng(seed)
    remaining = hours * 3600.0
    k = 0
    while remaining >= 2.0:
        duration = min(600.0, math.floor(remaining))
        yield f"random_{k:06d}", _unit_rows(rng, int(duration)), duration
        remaining -= duration
        k += 1


def build_index(db: Path, hours: float, seed: int) -> tuple[list[NDArray[np.float32]], str]:
    """Index ``hours`` of simulated archive at ``db`` unless a complete one built with the
    same parameters is there. Returns query vectors and what the index holds."""
    items, neutral, queries = _simulated(hours, seed)
    kind = "simulated archive (audiomoment.testing.archive)"
    if items is None:
        rng = np.random.default_rng(seed + 1)
        items, neutral, queries = _random_items(hours, seed), _unit_rows(rng, 1)[0], list(
            _unit_rows(rng, 32))
        kind = "random unit vectors"
    params = {"hours": hours, "seed": seed, "dtype": "float16"}
    done = db / DONE
    if done.is_file():
        if json.loads(done.read_text())["params"] == params:
            return queries, kind + ", reused"
        raise SystemExit(f"{db}: holds an index built with other parameters; give another --db")
    if db.exists():
        if not (db / MANIFEST).is_file():
            raise SystemExit(f"{db}: exists and is not an index; give another --db")
        shutil.rmtree(db)
    t0 = time.perf_counter()
    index_embeddings(items, db, ModelSpec(dtype="float16"), neutral=neutral)
    done.write_text(json.dumps({"params": params,
                                "build": {"seconds": time.perf_counter() - t0}}) + "\n")
    return queries, kind


# ---------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int, timeout_s: float = 120.0) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "audiomoment", "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"the server exited: {err.strip()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the server did not answer in time")


# ---------------------------------------------------------------------------- the load


class Load:
    """Requests shared by the client threads: what to send next, and what came back."""

    def __init__(self, base: str, queries: list[NDArray[np.float32]],
                 recordings: list[tuple[int, float]], total: int, deadline: float,
                 system: int, top: int, seed: int) -> None:
        self.base = base
        self.queries = [q.astype(float).round(6).tolist() for q in queries]
        self.recordings = recordings
        self.total = total
        self.deadline = deadline
        self.system = system
        self.top = top
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.sent = 0
        self.results: list[dict[str, Any]] = []

    def next_request(self) -> tuple[str, str, dict[str, Any]] | None:
        """(kind, method, httpx keyword arguments) of the next request, or None when done."""
        with self.lock:
            if self.sent >= self.total or time.monotonic() >= self.deadline:
                return None
            k = self.sent
            self.sent += 1
            if k % 2 == 0:
                vector = self.queries[int(self.rng.integers(len(self.queries)))]
                return "embedding", "POST", {
                    "url": f"{self.base}/api/search/embedding",
                    "json": {"vector": vector, "system": self.system, "top": self.top}}
            rec_id, duration = self.recordings[int(self.rng.integers(len(self.recordings)))]
            start = float(self.rng.uniform(0.0, max(0.0, duration - 3.0)))
            return "like", "GET", {
                "url": f"{self.base}/api/search/like",
                "params": {"recording_id": rec_id, "start": round(start, 2),
                           "end": round(start + 3.0, 2), "system": self.system,
                           "top": self.top}}

    def client(self) -> None:
        import httpx

        with httpx.Client(timeout=600.0) as http:
            while (job := self.next_request()) is not None:
                kind, method, kwargs = job
                t0 = time.perf_counter()
                try:
                    r = http.request(method, **kwargs)
                    body = r.json() if r.status_code == 200 else {}
                    ok = r.status_code == 200 and "moments" in body
                    status = r.status_code
                except (httpx.HTTPError, ValueError) as exc:
                    ok, status, body = False, type(exc).__name__, {}
                latency = time.perf_counter() - t0
                with self.lock:
                    self.results.append({"kind": kind, "ok": ok, "status": status,
                                         "latency": latency,
                                         "server": body.get("seconds")})


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between order statistics."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summarise(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("all", "embedding", "like"):
        rows = [r for r in results if kind == "all" or r["kind"] == kind]
        ms = [1000.0 * r["latency"] for r in rows]
        server = [1000.0 * r["server"] for r in rows if r["server"] is not None]
        out[kind] = {
            "requests": len(rows), "failures": sum(not r["ok"] for r in rows),
            "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "server_p50_ms": round(statistics.median(server), 1) if server else None,
        }
    out["requests_per_s"] = round(len(results) / seconds, 2) if seconds > 0 else None
    out["seconds"] = round(seconds, 2)
    return out


def run_load(base: str, queries: list[NDArray[np.float32]], recordings: list[tuple[int, float]],
             clients: int, total: int, max_seconds: float, system: int, top: int,
             seed: int) -> dict[str, Any]:
    load = Load(base, queries, recordings, total, time.monotonic() + max_seconds, system, top,
                seed)
    threads = [threading.Thread(target=load.client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(load.results, time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=5.0, help="size of the simulated index")
    parser.add_argument("--db", help="index folder to build or reuse (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4],
                        help="concurrent clients, one run each (default 1 4)")
    parser.add_argument("--requests", type=int, default=200, help="requests per run")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop sending after this long, per run")
    parser.add_argument("--system", type=int, choices=[1, 2], default=1)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.hours <= 0 or args.requests < 1 or min(args.clients) < 1 or args.max_seconds <= 0:
        parser.error("--hours, --requests, --clients and --max-seconds must be positive")

    tmp = None if args.db else tempfile.mkdtemp(prefix="bench-server-")
    db = Path(args.db) if args.db else Path(tmp) / "index"  # type: ignore[arg-type]
    try:
        t0 = time.perf_counter()
        queries, kind = build_index(db, args.hours, args.seed)
        snapshot = ArchiveIndex(db).snapshot()
        recordings = [(r.id, r.duration_s) for r in snapshot.recordings if r.n_windows >= 3]
        print(f"index: {len(snapshot)} recordings, {snapshot.hours:.1f} h, "
              f"{snapshot.n_windows:,} windows ({kind}; ready in {time.perf_counter() - t0:.1f} s)")
        port = free_port()
        proc = start_server(db, port)
        base = f"http://127.0.0.1:{port}"
        figures: dict[str, Any] = {
            "index": {"hours": round(snapshot.hours, 3), "recordings": len(snapshot),
                      "windows": snapshot.n_windows, "content": kind},
            "system": args.system, "top": args.top, "runs": {}}
        try:
            run_load(base, queries, recordings, 1, 2, 600.0, args.system, args.top, args.seed)
            for clients in args.clients:
                result = run_load(base, queries, recordings, clients, args.requests,
                                  args.max_seconds, args.system, args.top, args.seed + clients)
                figures["runs"][str(clients)] = result
                a = result["all"]
                print(f"{clients} client(s): {a['requests']} requests in {result['seconds']} s "
                      f"({result['requests_per_s']}/s), failures {a['failures']}; latency "
                      f"p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms, max {a['max_ms']} ms; "
                      f"server p50 {a['server_p50_ms']} ms")
                for k in ("embedding", "like"):
                    r = result[k]
                    print(f"    {k:9s}: {r['requests']} requests, p50 {r['p50_ms']} ms, "
                          f"p95 {r['p95_ms']} ms, max {r['max_ms']} ms")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        failed = sum(r["all"]["failures"] for r in figures["runs"].values())
        done = sum(r["all"]["requests"] for r in figures["runs"].values())
        if failed or not done:
            print(f"FAILED: {failed} of {done} requests failed", file=sys.stderr)
            return 1
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
