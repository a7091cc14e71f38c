"""The package's process pools: no fork of a threaded process, a dead worker is a clear error in
bounded time, and nothing is cached from a failed run (issue 14)."""

from __future__ import annotations

import ast
import multiprocessing as mp
import os
import re
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.parallel import WorkerError, pool_context, process_map

from conftest import cubic_srtio3, rocksalt_nacl
from pool_workers import die_on_13

PACKAGE = Path(__file__).resolve().parents[1] / "cdvae_core"


def _csv(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        s = cubic_srtio3(3.9 + 0.001 * i) if i % 2 else rocksalt_nacl(5.6 + 0.001 * i)
        rows.append({"material_id": f"m{i}", "cif": str(CifWriter(s)), "heat_ref": float(i)})
    pd.DataFrame(rows).to_csv(path)
    return path


def test_no_fork_context_anywhere_in_the_package():
    """A lint rule: no ``fork`` start method, no ``os.fork`` and no ``multiprocessing.Pool`` (which
    hangs when a worker dies) in the library; pools go through cdvae_core.parallel."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "fork":
                offenders.append(f"{path.name}:{node.lineno} 'fork'")
            if isinstance(node, ast.Attribute) and node.attr in {"fork", "Pool"}:
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not offenders, offenders
    assert pool_context().get_start_method() in {"forkserver", "spawn"}


@pytest.mark.timeout(180)
def test_graphs_build_while_other_threads_run(tmp_path, monkeypatch):
    """Inside Streamlit or Jupyter other threads are alive (and may hold locks) when the pool
    starts: the build completes and this process never calls fork()."""
    forks = []
    real_fork = os.fork

    def watching_fork():
        forks.append(threading.active_count())
        return real_fork()

    monkeypatch.setattr(os, "fork", watching_fork)
    lock = threading.Lock()
    stop = threading.Event()

    def busy():  # holds a lock most of the time, as a server thread would
        while not stop.is_set():
            with lock:
                time.sleep(0.01)

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        path = _csv(tmp_path / "val.csv", 24)
        ds = CrystalDataset.from_csv(path, "perov_5", cache_dir=tmp_path / "c", progress=False,
                                     workers=2)
    finally:
        stop.set()
    assert len(ds) == 24
    assert [f for f in forks if f > 1] == [], "fork() called in a process with live threads"


def test_process_map_in_order():
    assert process_map(abs, [-3, 2, -1, 0] * 10, 2, progress=False, chunksize=3) == [3, 2, 1, 0] * 10


@pytest.mark.timeout(120)
def test_dead_worker_is_an_error_naming_the_items():
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match=r"squares: a worker process died") as err:
        process_map(die_on_13, list(range(40)), 2, desc="squares", progress=False, chunksize=4)
    assert time.monotonic() - t0 < 60
    # the undone items are listed as ranges, and the one that killed its worker is among them
    spans = re.search(r"Not done: items ([0-9, -]+) \(0-based\)", str(err.value)).group(1)
    undone = set()
    for span in spans.split(", "):
        a, _, b = span.partition("-")
        undone.update(range(int(a), int(b or a) + 1))
    assert 13 in undone


@pytest.mark.timeout(300)
def test_killed_graph_worker_names_dataset_and_rows_and_caches_nothing(tmp_path):
    """A graph worker killed mid-run (out of memory, a user's kill) is a WorkerError naming the
    file and the rows left undone, within seconds; no cache file is written, and a cache written
    by an earlier run stays as it was."""
    path = _csv(tmp_path / "val.csv", 400)
    cache = tmp_path / "c"
    earlier = _csv(tmp_path / "other.csv", 8)
    CrystalDataset.from_csv(earlier, "perov_5", cache_dir=cache, progress=False)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}

    killed = []

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for child in mp.active_children():
                if "Process" in type(child).__name__ or child.name.startswith("Spawn") \
                        or child.name.startswith("ForkServer"):
                    time.sleep(1.0)  # let it start on its rows
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    return
            time.sleep(0.05)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        CrystalDataset.from_csv(path, "perov_5", cache_dir=cache, progress=False, workers=2)
    waited = time.monotonic() - t0
    th.join(5)
    assert killed
    msg = str(err.value)
    assert "perov_5/val.csv" in msg and "rows" in msg and "died" in msg
    assert waited < 120
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before


_FOREIGN_MAIN = r"""
import sys, types
# the situation under Streamlit: __main__ is a page script that must not run in a worker
page = types.ModuleType("__main__")
page.__file__ = sys.argv[1]
sys.modules["__main__"] = page
from cdvae_core.parallel import process_map
from pool_workers import square
print(process_map(square, list(range(40)), 2, progress=False, chunksize=4,
                  stall_timeout_s=120))
"""


def test_workers_do_not_run_the_callers_main_script(tmp_path):
    """Spawn and forkserver children import the caller's ``__main__`` file before they work; a
    Streamlit page script there (one that cannot even be imported outside the app) killed
    every worker of a pool started during an app run. Run in a fresh process: the forkserver
    is started once per process."""
    import subprocess
    import sys

    page = tmp_path / "page.py"
    page.write_text("import state  # the app's own module: absent outside the app\n"
                    "raise SystemExit('the page script ran in a worker')\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _FOREIGN_MAIN, str(page)], cwd=root,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{root}:{root / 'tests'}"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str([i * i for i in range(40)])


_KILLED_CALLER = """
import sys
from cdvae_core.parallel import process_map
from pool_workers import report_and_sleep
process_map(report_and_sleep, [sys.argv[1]] * 2, 2, progress=False, chunksize=1)
"""


def test_workers_exit_soon_after_their_caller_is_killed(tmp_path):
    # a caller killed outright (SIGKILL: no cleanup of its own) leaves no worker behind; their
    # parent is the forkserver, so only the workers themselves can notice
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    marker = tmp_path / "worker"
    caller = subprocess.Popen([sys.executable, "-c", _KILLED_CALLER, str(marker)], cwd=root,
                              env={**os.environ, "PYTHONPATH": f"{root}:{root / 'tests'}"})
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker.*"))) < 2:
            assert caller.poll() is None and time.monotonic() < deadline, "workers never started"
            time.sleep(0.2)
    finally:
        caller.kill()
        caller.wait()
    pids = [int(p.read_text()) for p in tmp_path.glob("worker.*")]

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie (exited, not yet reaped by the forkserver) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"

    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their caller by 15 s"
