"""Functions the process-pool tests send to worker processes. Kept in a module of their own that
imports nothing heavy, so a worker starts in well under a second even on a busy machine."""

from __future__ import annotations

import os
import signal


def die_on_13(x: int) -> int:
    """``x * x``, except that the worker handed 13 kills itself (as the OOM killer would)."""
    if x == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def square(x: int) -> int:
    return x * x


def report_and_sleep(path: str) -> int:
    """Write this worker's pid to ``path`` (a file per worker), then sleep for a long time."""
    import time

    with open(f"{path}.{os.getpid()}", "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
    return 0
