"""The test set's latent map, prepared in a background thread with a progress report.

On a cold cache the CrystalNN graphs of a test split take a minute or more to build; doing it
inside the sidebar would block every page. A :class:`MapJob` runs the whole preparation (graphs,
encoding, projection) in one thread per (model, data), shared by every browser session; pages
read its progress and show the map once it is done. The thread calls the library only (no
Streamlit calls), and the graph pool it starts uses forkserver workers
(:mod:`cdvae_core.parallel`), so a server full of threads is never forked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """What a job is doing: ``phase`` in ("graphs", "encoding", "done", "failed")."""

    phase: str = "starting"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    phase_started: float = field(default_factory=time.monotonic)
    phase_done_at_start: int = 0

    def seconds_left(self) -> float | None:
        """Remaining seconds of this phase at its rate so far (None until it can be told)."""
        elapsed = time.monotonic() - self.phase_started
        done = self.done - self.phase_done_at_start
        if done <= 0 or elapsed < 1.0 or self.total <= 0:
            return None
        return max(0.0, (self.total - self.done) * elapsed / done)

    def line(self) -> str:
        """One line for a person: 'Building crystal graphs: 1,234 of 3,785 crystals, about 40 s
        left'."""
        what = {"starting": "Starting", "graphs": "Building crystal graphs (once, then cached)",
                "encoding": "Encoding the test set"}.get(self.phase, self.phase)
        if self.total <= 0:
            return f"{what}..."
        left = self.seconds_left()
        eta = f", about {_duration(left)} left" if left is not None else ""
        return f"{what}: {self.done:,} of {self.total:,} crystals{eta}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class MapJob:
    """Runs ``work(report, publish)`` in a daemon thread; ``report(phase, done, total)``
    updates the progress, ``publish(value)`` sets :attr:`partial`. ``result`` holds what
    ``work`` returned, ``error`` the exception it raised."""

    def __init__(self, work: Callable[..., Any], name: str):
        self._lock = threading.Lock()
        self._progress = Progress()
        self.result: Any = None
        #: what ``work`` published before it finished (``publish(value)``, its second argument):
        #: the map of the first crystals while the rest are prepared; None until then
        self.partial: Any = None
        self.error: BaseException | None = None
        self.finished_in_s: float | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _report(self, phase: str, done: int, total: int) -> None:
        with self._lock:
            p = self._progress
            if phase != p.phase:
                p.phase, p.phase_started, p.phase_done_at_start = phase, time.monotonic(), done
            p.done, p.total = done, total

    def _publish(self, value: Any) -> None:
        self.partial = value

    def _run(self, work) -> None:
        try:
            self.result = work(self._report, self._publish)
            self._report("done", self._progress.total, self._progress.total)
        except BaseException as exc:  # shown to the user; never kills the server
            self.error = exc
            self._report("failed", self._progress.done, self._progress.total)
        finally:
            self.finished_in_s = time.monotonic() - self._progress.started

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def progress(self) -> Progress:
        with self._lock:
            return Progress(**vars(self._progress))

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done
