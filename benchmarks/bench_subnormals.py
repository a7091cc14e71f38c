"""Before/after figures of the subnormal-float fix, side by side in one run on one CPU.

Three variants of the same step (``bench_model.py --one``, each in a fresh subprocess,
interleaved round by round so that a change of machine load hits all of them alike):

* ``before``: the code of ``--before-tree`` (a checkout of the commit before the fix);
* ``basis_only``: this checkout with the CPU's default subnormal handling
  (``bench_model.py --no-flush``): only the radial basis's zeroing;
* ``flushed``: this checkout as the CLI and the app run it (``configure_cpu``).

    git worktree add --detach ../wt-before 67484ed
    python benchmarks/bench_subnormals.py --before-tree ../wt-before [--threads 1] [--rounds 2]

Writes benchmarks/results/subnormals.json (medians over rounds, the CPU, the load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("train", "perov_5", 128), ("train", "perov_5", 256), ("langevin", "perov_5", 256),
         ("train", "carbon_24", 32), ("langevin", "carbon_24", 32)]


def _one(tree: Path, case, arch: str, threads: int, repeats: int, data_dir: str,
         flush: bool) -> dict:
    kind, dataset, batch = case
    cmd = [sys.executable, str(tree / "benchmarks" / "bench_model.py"), "--data-dir",
           str(Path(data_dir).resolve()), "--repeats", str(repeats), "--threads", str(threads),
           "--one", kind, dataset, str(batch), arch, *([] if flush else ["--no-flush"])]
    if not flush and tree != ROOT:
        cmd.remove("--no-flush")  # the old script has no such option (and never flushed)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--before-tree", required=True, type=Path)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--arch", default="fast+compile")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/subnormals.json")
    p.add_argument("--note", default="", help="what else ran on the machine, for the record")
    args = p.parse_args()
    variants = {"before": (args.before_tree.resolve(), False), "basis_only": (ROOT, False),
                "flushed": (ROOT, True)}
    runs: dict = {}
    for r in range(args.rounds):
        for case in CASES:
            for name, (tree, flush) in variants.items():
                res = _one(tree, case, args.arch, args.threads, args.repeats, args.data_dir,
                           flush)
                key = f"{case[0]}_{case[1]}_b{case[2]}"
                runs.setdefault(key, {}).setdefault(name, []).append(res)
                print(r, key, name, res.get("median_s", res), file=sys.stderr, flush=True)
    table = {}
    for key, by in runs.items():
        row = {}
        for name, results in by.items():
            ok = [x["median_s"] for x in results if "median_s" in x]
            row[name + "_s"] = statistics.median(ok) if ok else None
        if row.get("before_s") and row.get("flushed_s"):
            row["speedup"] = round(row["before_s"] / row["flushed_s"], 2)
        table[key] = row
    sys.path.insert(0, str(ROOT))
    from cdvae_core.utils import machine_record, write_json_result

    result = {"arch": args.arch, "threads": args.threads, "rounds": args.rounds,
              "repeats_per_run": args.repeats, "before_tree_commit": subprocess.run(
                  ["git", "-C", str(args.before_tree), "rev-parse", "HEAD"], capture_output=True,
                  text=True).stdout.strip(),
              "median_seconds_per_step": table, "runs": runs,
              "machine": machine_record(note=args.note)}
    write_json_result(args.out, result, show=table)


if __name__ == "__main__":
    main()
