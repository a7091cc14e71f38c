"""CDVAE explorer: the server. ``streamlit run app/main.py`` finds the :class:`streamlit.App`
below and serves :mod:`explorer` (the script each browser session runs) with it.

Why an ``st.App`` and not the script alone: a plain Streamlit script runs only when a browser
connects, so the first visitor of a new server waited for torch and the library to import and
the model to load (several seconds) before anything was drawn. The lifespan hook below does that
work once at server start, in the process-wide caches the sessions use, and the server answers
only when it is done; on a cold cache the latent map keeps being prepared in the background and
the page shows its progress. A failed warm-up is logged and never stops the server: the
sessions then load what they need as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

import streamlit as st

log = logging.getLogger("cdvae_app")


def _warm_up() -> None:
    t0 = time.perf_counter()
    print("  Loading the model and the latent map before the first page...", flush=True)
    # the warm-up runs outside any session: Streamlit's "missing ScriptRunContext" notes about
    # the cached loaders' spinners say nothing here
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import state  # torch, pymatgen and the library come with it

        state.configure_torch()
        done = state.warm_up()
        print(f"  Warmed up in {time.perf_counter() - t0:.1f} s: {done}.", flush=True)
    except Exception as exc:  # noqa: BLE001  (the pages load it themselves then, and say why)
        log.warning("warm-up failed (%s); the first page loads the model itself", exc)
    finally:
        quiet.setLevel(level)


@asynccontextmanager
async def _lifespan(_app):
    await asyncio.to_thread(_warm_up)
    yield


app = st.App("explorer.py", lifespan=_lifespan)
