#!/usr/bin/env python3
"""Helper for scripts/bench-assets (standard library only).

  gen DIR [--files N] [--mb M] [--seed S]   deterministic tree of mixed sizes and kinds
  run RESULT_JSON OUT ERR -- CMD...         run CMD; its wall time and client CPU (user +
                                            sys of its process tree) to RESULT_JSON
  report RESULTS_TSV                        per setting: median table, ratios, goal verdicts
"""

import json
import os
import random
import subprocess
import sys
import time

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


def run(args):
    """Run the command after `--`, its output to OUT/ERR; write its wall time and the CPU
    (user + sys) of it and every descendant it waited for to RESULT_JSON; exit with its code."""
    result, out, err = args[0], args[1], args[2]
    cmd = args[args.index("--") + 1:]
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
    with open(result, "w") as f:
        json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}, f)
    sys.exit(os.waitstatus_to_exitcode(status))


# Goals from the issue, per setting and round: peer wall time / glidepath wall time at least.
GOALS = {
    ("fast-rtt", "cold", "glidepath", "s5cmd"): 1.5,
    ("fast-rtt", "fresh copy", "glidepath (hashed)", "aws s3 sync"): 20.0,
}
# ...and glidepath's client CPU at most this share of the peer's.
CPU_GOALS = {("fast-rtt", "cold", "glidepath", "s5cmd"): 0.5}


def report(args):
    rows = []
    with open(args[0]) as f:
        for line in f:
            setting, _run, round_, tool, wall, cpu, up, down, reqs, note = \
                line.rstrip("\n").split("\t")
            rows.append(dict(setting=setting, round=round_, tool=tool, wall=float(wall),
                             cpu=float(cpu), up=int(up), down=int(down), reqs=int(reqs),
                             note=note))
    groups = {}
    for r in rows:
        groups.setdefault((r["setting"], r["round"], r["tool"]), []).append(r)

    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    med = {}
    for key, rs in groups.items():
        ok = [r for r in rs if not r["note"].startswith("FAILED")]
        failed = [r for r in rs if r["note"].startswith("FAILED")]
        med[key] = dict(
            wall=median([r["wall"] for r in ok]) if ok else None,
            cpu=median([r["cpu"] for r in ok]) if ok else None,
            walls=[r["wall"] for r in ok],
            up=median([r["up"] for r in ok]) if ok and ok[0]["up"] >= 0 else None,
            reqs=median([r["reqs"] for r in ok]) if ok and ok[0]["reqs"] >= 0 else None,
            note=(failed[0]["note"] if failed else ok[-1]["note"]),
            failed=len(failed), runs=len(rs))
    ratio = lambda a, b: f"{a / b:5.2f}x" if a and b else "    -"
    for setting in dict.fromkeys(r["setting"] for r in rows):
        print(f"== {setting}")
        print(f"{'round':<13} {'tool':<19} {'wall s':>7} {'(runs)':<20} {'CPU s':>6} {'sent MB':>8} {'reqs':>6}"
              f" {'speed':>7} {'hashed':>7} {'cpu':>6}  note")
        for round_ in dict.fromkeys(r["round"] for r in rows if r["setting"] == setting):
            tools = [k[2] for k in med if k[0] == setting and k[1] == round_]
            gp = med.get((setting, round_, "glidepath"))
            gph = med.get((setting, round_, "glidepath (hashed)"))
            for tool in tools:
                m = med[(setting, round_, tool)]
                runs_s = " ".join(f"{w:.2f}" for w in m["walls"])
                wall = f"{m['wall']:7.2f}" if m["wall"] is not None else "      -"
                cpu = f"{m['cpu']:6.2f}" if m["cpu"] is not None else "     -"
                up = f"{m['up'] / 1e6:8.1f}" if m["up"] is not None else "       -"
                reqs = f"{m['reqs']:6.0f}" if m["reqs"] is not None else "     -"
                # Speed-up of glidepath over this tool, and this tool's CPU over glidepath's.
                peer = not tool.startswith("glidepath")
                speed = ratio(m["wall"], gp["wall"]) if gp and peer else "       "
                speed_h = ratio(m["wall"], gph["wall"]) if gph and peer else "       "
                cpu_r = ratio(m["cpu"], gp["cpu"]) if gp and peer else "      "
                fail = f" ({m['failed']} of {m['runs']} runs FAILED)" if m["failed"] else ""
                print(f"{round_:<13} {tool:<19} {wall} {'(' + runs_s + ')':<20} {cpu} {up} {reqs}"
                      f" {speed:>7} {speed_h:>7} {cpu_r:>6}  {m['note']}{fail}")
        print()
    print("speed, hashed: the peer's median wall time / glidepath's, versioned and hashed layout")
    print("  (> 1: glidepath is faster); cpu: the peer's median client CPU / glidepath's (versioned)")
    print("sent MB, reqs: bytes to the server and HTTP responses, counted by the latency relay")
    verdicts = []
    for (setting, round_, gp_tool, peer), goal in GOALS.items():
        g, p = med.get((setting, round_, gp_tool)), med.get((setting, round_, peer))
        if not g or not p or not g["wall"] or not p["wall"]:
            continue
        r = p["wall"] / g["wall"]
        verdicts.append(f"  {setting} {round_}: {gp_tool} vs {peer}: {r:.2f}x faster "
                        f"(goal >= {goal:g}x: {'met' if r >= goal else 'NOT met'})")
    for (setting, round_, gp_tool, peer), share in CPU_GOALS.items():
        g, p = med.get((setting, round_, gp_tool)), med.get((setting, round_, peer))
        if not g or not p or not g["cpu"] or not p["cpu"]:
            continue
        r = g["cpu"] / p["cpu"]
        verdicts.append(f"  {setting} {round_}: {gp_tool} CPU is {r:.2f} of {peer}'s "
                        f"(goal < {share:g}: {'met' if r < share else 'NOT met'})")
    if verdicts:
        print("goals (issue 18):")
        print("\n".join(verdicts))


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"gen": gen, "run": run, "report": report}[cmd](rest)
