"""The app in a real browser (issue 14): a cold first launch shows its progress and reaches the
latent map while the other pages work, and two sessions running the denoising viewer at the
same time each get what they would get alone.

Same machinery as ``test_app_browser.py``: ``streamlit run`` on a loopback port, headless Debian
Chromium driven by Playwright, every non-loopback request aborted. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest
import test_app_browser as web  # the browser tests' helpers
from test_app import tiny_checkpoint
from test_app_browser import browser  # noqa: F401  (a fixture)

from helpers import data_file

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
COLD_ROWS = 300  # enough Perov-5 test crystals for the graphs to take a while on a cold cache


@pytest.fixture(scope="module")
def cold_env(tmp_path_factory):
    """A tiny checkpoint and the first COLD_ROWS rows of the real Perov-5 test.csv, with an
    empty cache folder (the first launch a new user makes)."""
    root = tmp_path_factory.mktemp("cold")
    ckpt = tiny_checkpoint(root / "checkpoints" / "perov_5" / "model.pt")
    (root / "data" / "perov_5").mkdir(parents=True)
    rows = pd.read_csv(data_file("perov_5", "test")).head(COLD_ROWS)
    rows.to_csv(root / "data" / "perov_5" / "test.csv", index=False)
    return {"root": root, "ckpt": ckpt, "data": root / "data", "cache": root / "cache"}


def test_cold_launch_shows_progress_then_the_map(browser, cold_env):  # noqa: F811
    env = {"CDVAE_CHECKPOINT": str(cold_env["ckpt"]), "CDVAE_DATA_DIR": str(cold_env["data"]),
           "CDVAE_CACHE_DIR": str(cold_env["cache"]), "CDVAE_APP_STEPS": "1"}
    with web.streamlit_server(env, cold_env["root"] / "streamlit.log") as url:
        t0 = time.monotonic()
        pg = web.offline_page(browser, url)
        try:
            pg.get_by_role("heading", name="Latent explorer").wait_for(timeout=120_000)
            # while the graphs are built: crystals done out of the total, and a time estimate
            progress = pg.get_by_text(re.compile(rf"of {COLD_ROWS} crystals")).first
            progress.wait_for(timeout=120_000)
            pg.screenshot(path=str(web.ARTIFACTS / "10_cold_launch_progress.png"))
            # a page that does not need the map works meanwhile
            web.goto_page(pg, "Denoising viewer")
            web.click_button(pg, "Draw z from the prior (seed 0)")
            web.set_number(pg, "Frames kept", 10)
            web.click_button(pg, "Run annealed Langevin")
            pg.get_by_text("Trajectory from").wait_for(timeout=180_000)
            web.goto_page(pg, "Latent explorer")
            pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=600_000)
            web.wait_idle(pg)
            first_map_s = time.monotonic() - t0
            count = ("() => { const p = document.querySelector('.js-plotly-plot');"
                     " return p && p._fullData ? p._fullData[0].x.length : 0; }")
            points = pg.evaluate(count)
            # the first crystals' map (state.PREVIEW_CRYSTALS), or already the whole one
            assert points in (256, COLD_ROWS), points
            pg.screenshot(path=str(web.ARTIFACTS / "11_cold_launch_first_map.png"))
            deadline = time.monotonic() + 600
            while points != COLD_ROWS:  # it fills in when the rest are done
                assert time.monotonic() < deadline, points
                time.sleep(1.0)
                points = pg.evaluate(count)
            whole_map_s = time.monotonic() - t0
            web.wait_idle(pg)
            pg.screenshot(path=str(web.ARTIFACTS / "11_cold_launch_map.png"))
            assert not pg.blocked, pg.blocked
        finally:
            pg.context.close()
    print(f"cold launch to the first map: {first_map_s:.1f} s, to the whole map of {COLD_ROWS} "
          f"crystals: {whole_map_s:.1f} s")
    # the second launch reads the graphs (and latents) from the disk cache
    with web.streamlit_server(env, cold_env["root"] / "streamlit2.log") as url:
        t0 = time.monotonic()
        pg = web.offline_page(browser, url)
        try:
            pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
            warm_s = time.monotonic() - t0
            web.wait_idle(pg)  # the settled page: a progress line of a first run may linger a moment
            assert pg.get_by_text(re.compile(rf"of {COLD_ROWS} crystals")).count() == 0
            # the test set's map, not the prior's (a map job that finished while the page
            # waited once left the prior map on screen)
            points = pg.evaluate("() => document.querySelector('.js-plotly-plot')"
                                 "._fullData[0].x.length")
            assert points == COLD_ROWS, points
        finally:
            pg.context.close()
    # the server loaded the model and the map before it answered (app/main.py's warm-up),
    # not when the first page asked for them
    log = (cold_env["root"] / "streamlit2.log").read_text()
    assert re.search(r"Warmed up in [\d.]+ s: model .*latent map of perov_5 test.csv ready",
                     log), log
    print(f"warm launch to the first map: {warm_s:.1f} s")


def _denoise_extxyz(pg, frames: int = 12) -> str:
    """Draw the seed-0 prior z, run the viewer at seed 0, return the trajectory file."""
    web.goto_page(pg, "Denoising viewer")
    pg.get_by_role("button", name="Draw z from the prior (seed 0)").wait_for(timeout=60_000)
    web.click_button(pg, "Draw z from the prior (seed 0)")
    web.set_number(pg, "Frames kept", frames)
    web.click_button(pg, "Run annealed Langevin")
    pg.get_by_text("Trajectory from").wait_for(timeout=300_000)
    web.wait_idle(pg)
    with pg.expect_download(timeout=60_000) as download:
        pg.get_by_role("button", name="Trajectory (extended XYZ)").click()
    return Path(download.value.path()).read_text()


def test_two_sessions_denoising_at_once_get_their_own_results(browser, cold_env):  # noqa: F811
    """Same seed, same frames: a run alone, then two sessions running at the same time; each
    trajectory equals the one run alone."""
    env = {"CDVAE_CHECKPOINT": str(cold_env["ckpt"]), "CDVAE_CACHE_DIR": str(cold_env["cache"]),
           "CDVAE_APP_STEPS": "2", "CDVAE_DATA_DIR": str(cold_env["root"] / "no-data-here")}
    with web.streamlit_server(env, cold_env["root"] / "streamlit_sessions.log") as url:
        alone_pg = web.offline_page(browser, url)
        try:
            alone = _denoise_extxyz(alone_pg)
        finally:
            alone_pg.context.close()
        a, b = web.offline_page(browser, url), web.offline_page(browser, url)
        try:
            for pg in (a, b):
                web.goto_page(pg, "Denoising viewer")
                pg.get_by_role("button", name="Draw z from the prior (seed 0)").wait_for(
                    timeout=60_000)
                web.click_button(pg, "Draw z from the prior (seed 0)")
                web.set_number(pg, "Frames kept", 12)
            # press Run in both before either finishes (Playwright's sync API is one thread:
            # start both clicks, then wait for both)
            for pg in (a, b):
                pg.get_by_role("button", name="Run annealed Langevin").first.click()
            for pg in (a, b):
                pg.get_by_text("Trajectory from").wait_for(timeout=300_000)
                web.wait_idle(pg)
            texts = []
            for pg in (a, b):
                with pg.expect_download(timeout=60_000) as download:
                    pg.get_by_role("button", name="Trajectory (extended XYZ)").click()
                texts.append(Path(download.value.path()).read_text())
            a.screenshot(path=str(web.ARTIFACTS / "12_session_a.png"))
            b.screenshot(path=str(web.ARTIFACTS / "12_session_b.png"))
            assert not a.blocked and not b.blocked
        finally:
            a.context.close()
            b.context.close()
    assert alone.count("Lattice=") >= 2  # a trajectory of several frames
    assert texts[0] == alone
    assert texts[1] == alone

