#!/usr/bin/env python3
"""Helper for scripts/bench-assets (standard library only).

  gen DIR [--files N] [--mb M] [--seed S]   deterministic tree of mixed sizes and kinds
  relay TARGET_URL STATS_FILE               counting TCP relay; prints its URL, writes
                                            {"up": bytes, "down": bytes} on SIGTERM
  report RESULTS_TSV                        the table, the ratios and the verdicts
"""

import asyncio
import json
import os
import random
import signal
import sys
from urllib.parse import urlparse

KINDS = [
    # (extension, share of small files) — a built web app: mostly JS/CSS chunks and images.
    ("js", 0.35), ("css", 0.12), ("map", 0.10), ("html", 0.05), ("svg", 0.10),
    ("png", 0.12), ("woff2", 0.04), ("json", 0.07), ("txt", 0.05),
]


def gen(args):
    out = args[0]
    files = int(_opt(args, "--files", 5000))
    mb = float(_opt(args, "--mb", 250))
    rnd = random.Random(int(_opt(args, "--seed", 1)))
    # Three bands: many small files, a body of medium ones, a few large bundles/images.
    sizes = []
    for i in range(files):
        band = i % 100
        if band < 80:
            sizes.append(rnd.randint(500, 24_000))
        elif band < 99:
            sizes.append(rnd.randint(24_000, 400_000))
        else:
            sizes.append(rnd.randint(1_000_000, 3_000_000))
    scale = mb * 1_000_000 / sum(sizes)
    sizes = [max(1, int(s * scale)) for s in sizes]
    exts = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    total = 0
    for i, size in enumerate(sizes):
        ext = rnd.choices(exts, weights)[0]
        depth = rnd.randint(0, 3)
        parts = [f"d{rnd.randint(0, 7)}" for _ in range(depth)]
        rel = os.path.join(*parts, f"f{i:05d}.{ext}") if parts else f"f{i:05d}.{ext}"
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rnd.randbytes(size))
        total += size
    print(json.dumps({"files": files, "bytes": total}))


def _opt(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def relay(args):
    target, stats_path = urlparse(args[0]), args[1]
    host, port = target.hostname, target.port or 80
    counts = {"up": 0, "down": 0, "connections": 0}

    async def pipe(reader, writer, key):
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                counts[key] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(creader, cwriter):
        counts["connections"] += 1
        try:
            sreader, swriter = await asyncio.open_connection(host, port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, swriter, "up"), pipe(sreader, cwriter, "down"))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(f"relay http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        with open(stats_path, "w") as f:
            json.dump(counts, f)

    asyncio.run(main())


def report(args):
    rows = []
    with open(args[0]) as f:
        for line in f:
            run, tool, wall, up, down, cpu, note = line.rstrip("\n").split("\t")
            rows.append(dict(run=run, tool=tool, wall=float(wall), up=int(up), down=int(down),
                             cpu=float(cpu), note=note))
    mb = lambda b: f"{b / 1_000_000:.2f}" if b >= 0 else "-"
    print(f"{'run':<16} {'tool':<22} {'wall s':>8} {'sent MB':>9} {'recv MB':>8} {'emulator CPU':>13}  note")
    for r in rows:
        share = f"{100 * r['cpu'] / r['wall']:.0f}%" if r["wall"] > 0 else "-"
        print(f"{r['run']:<16} {r['tool']:<22} {r['wall']:8.2f} {mb(r['up']):>9} "
              f"{mb(r['down']):>8} {share:>13}  {r['note']}")
    print()
    print("ratios (peer wall time / glidepath wall time; > 1 means glidepath is faster)")
    goals = {"cold": {"aws s3 sync": 3.0, "rclone --checksum": 1.5},
             "fresh copy": {"aws s3 sync": 20.0}, "same version": {"aws s3 sync": 20.0}}
    # Publishing the very same version again is measured against the peers' fresh-copy run.
    peer_run = {"same version": "fresh copy"}
    for run in dict.fromkeys(r["run"] for r in rows):
        here = [r for r in rows if r["run"] == run]
        ok = [r for r in here if not r["note"].startswith("FAILED")]
        peers = [r for r in rows if r["run"] == peer_run.get(run, run)
                 and not r["tool"].startswith("glidepath") and not r["note"].startswith("FAILED")]
        for gp in [r for r in ok if r["tool"].startswith("glidepath")]:
            parts = []
            for peer in peers:
                ratio = peer["wall"] / gp["wall"] if gp["wall"] > 0 else float("inf")
                goal = goals.get(run, {}).get(peer["tool"])
                verdict = "" if goal is None else (f" (goal >= {goal:g}x: "
                                                   f"{'met' if ratio >= goal else 'NOT met'})")
                parts.append(f"{peer['tool']} {ratio:.2f}x{verdict}")
            print(f"  {run:<12} {gp['tool']:<22} " + ("; ".join(parts) or "no peers ran"))
    cold = [r for r in rows if r["run"] == "cold" and not r["note"].startswith("FAILED")]
    walls = [r["wall"] for r in cold]
    if len(walls) > 1 and max(walls) <= 1.5 * min(walls):
        files = int(args[1]) if len(args) > 1 else 0
        busy = max(100 * r["cpu"] / r["wall"] for r in cold if r["wall"] > 0)
        print(f"\nnote: every client took about as long cold ({min(walls):.0f}-{max(walls):.0f} s): "
              f"the endpoint is the bottleneck. Each needs at least {files} PUTs, and the endpoint "
              f"served them at ~{files / min(walls):.0f} requests/s (its process up to {busy:.0f}% "
              "of a core; a single Python process). Cold ratios here say little about the "
              "clients; run with BENCH_ENDPOINT=<a faster local S3> to separate them.")


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"gen": gen, "relay": relay, "report": report}[cmd](rest)
