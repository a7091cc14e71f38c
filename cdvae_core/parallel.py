"""A process pool that cannot deadlock: used for CrystalNN graphs and fingerprints.

Why not ``multiprocessing.Pool`` with the ``fork`` context (what this package used before):
forking a process that runs other threads (a Streamlit server, a Jupyter kernel, torch's
OpenMP pool) copies locks held by those threads into a child that will never release them, and
a child stuck that way, or killed, leaves ``Pool.imap`` waiting forever. Here:

- Workers come from the ``forkserver`` context on Linux (``spawn`` elsewhere): a fresh,
  single-threaded server process is started with exec, and workers are forked from *it*, never
  from the caller. Each worker imports only the module of the function it runs.
- The pool is :class:`concurrent.futures.ProcessPoolExecutor`, which notices a worker that died
  (``BrokenProcessPool``) instead of waiting for its lost task; the error names the items that
  were not done (for a dataset: its name and the row range).
- A chunk that makes no progress for ``stall_timeout_s`` seconds is an error too, so no call
  waits without bound.
- A worker whose caller is gone (killed, say by a session's end or ``kill``) exits within
  :data:`PARENT_POLL_S` seconds instead of living on: its parent is the forkserver, not the
  caller, so nothing else would tell it (found: the two workers of a killed ``cdvae rescore``
  were still there 16 minutes later).

This module imports nothing from the rest of the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["WorkerError", "process_map", "pool_context", "DEFAULT_STALL_TIMEOUT_S"]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds without any finished chunk after which a pool is declared stuck.
DEFAULT_STALL_TIMEOUT_S = 600.0
#: How often a worker checks that the process that started the pool is still alive.
PARENT_POLL_S = 1.0


class WorkerError(RuntimeError):
    """A worker process died or stalled; the message names the work that was not done."""


def pool_context():
    """The multiprocessing context of every pool in the package: ``forkserver`` on Linux (never
    ``fork``: see the module docstring), ``spawn`` elsewhere."""
    return mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_main_module_for_children():
    """While workers start, ``__main__`` is a bare module, so that they do not import the
    caller's main script.

    multiprocessing's spawn and forkserver children import ``sys.modules["__main__"]`` from
    its file before they run anything (as ``__mp_main__``), so that functions defined there can
    be unpickled. Our workers run library functions only; the main script can be anything:
    under Streamlit it is the app's page script (Streamlit runs each page as ``__main__``), and
    a worker importing it ran the app, or died at its first import (found in the test suite,
    where a pool started during an AppTest run). The swap lasts only while the pool starts its
    processes (``submit``), under a lock; functions defined in ``__main__`` cannot be sent to
    a pool then, which the package never does.
    """
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _exit_with_caller(caller_pid: int) -> None:
    """Pool initializer: a daemon thread ends this worker once ``caller_pid`` is gone.

    Checked by pid (``os.kill(pid, 0)``): the worker's parent is the forkserver, which outlives
    the caller, so ``os.getppid()`` cannot tell, and ``prctl(PR_SET_PDEATHSIG)`` would watch the
    wrong process for the same reason."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            try:
                os.kill(caller_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-caller", daemon=True).start()


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(x) for x in chunk]


def process_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    *,
    desc: str = "",
    progress: bool = True,
    chunksize: int = 16,
    what: str = "items",
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` processes, in order, with a progress bar.

    Args:
        fn: a module-level function (workers import its module, nothing else of the caller).
        items: inputs, sent to the workers in chunks of ``chunksize``.
        workers: processes (>= 1; 1 still runs in a child process).
        desc: progress-bar label, also the subject of error messages ("perov_5/test.csv").
        what: what an item is, for error messages ("rows", "structures").
        stall_timeout_s: seconds without any finished chunk before the pool is declared stuck.
        on_progress: called with (done, total) after every finished chunk (the app's bar).

    Raises:
        WorkerError: a worker died (killed, out of memory, crashed in C) or the pool stalled;
            the message names ``desc`` and the index ranges of ``items`` left undone.
    """
    items = list(items)
    total = len(items)
    chunks = [(i, items[i : i + chunksize]) for i in range(0, total, chunksize)]
    results: dict[int, list[R]] = {}
    bar = tqdm(total=total, desc=desc, disable=not progress, unit=what.rstrip("s") or "item",
               mininterval=1.0)
    executor = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=pool_context(),
                                   initializer=_exit_with_caller, initargs=(os.getpid(),))
    pending = {}
    try:
        with _no_main_module_for_children():  # the workers (and forkserver) start in here
            pending = {executor.submit(_run_chunk, fn, chunk): start for start, chunk in chunks}
        done_count = 0
        while pending:
            finished, _ = wait(pending, timeout=stall_timeout_s, return_when=FIRST_COMPLETED)
            if not finished:
                raise WorkerError(
                    f"{desc}: no progress for {stall_timeout_s:.0f} s; stopped the workers. "
                    f"{_undone(pending.values(), chunksize, total, what)}"
                )
            for fut in finished:
                start = pending.pop(fut)
                try:
                    results[start] = fut.result()
                except BrokenProcessPool:
                    pending[fut] = start  # its chunk is undone too
                    raise WorkerError(
                        f"{desc}: a worker process died (killed, out of memory, or crashed). "
                        f"{_undone(pending.values(), chunksize, total, what)} Nothing was "
                        "cached from this run; earlier results are intact. Run again, or with "
                        "fewer workers if memory is short."
                    ) from None
                done_count += len(results[start])
                bar.update(len(results[start]))
                if on_progress is not None:
                    on_progress(done_count, total)
    finally:
        bar.close()
        _stop(executor, bool(pending))
    return [r for start, _ in chunks for r in results[start]]


def _undone(starts, chunksize: int, total: int, what: str) -> str:
    """'Not done: rows 0-63, 128-191.' for the chunks starting at ``starts``."""
    spans = sorted((s, min(s + chunksize, total) - 1) for s in starts)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a == merged[-1][1] + 1:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in merged[:8])
    more = f" and {len(merged) - 8} more ranges" if len(merged) > 8 else ""
    return f"Not done: {what} {text}{more} (0-based)."


def _stop(executor: ProcessPoolExecutor, abandon: bool) -> None:
    """Shut the pool down; after an error, kill workers that may be stuck instead of waiting."""
    if not abandon:
        executor.shutdown(wait=True)
        return
    procs = list(getattr(executor, "_processes", {}).values())  # no public handle exists
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()
    deadline = time.monotonic() + 5.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
