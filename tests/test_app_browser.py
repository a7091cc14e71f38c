"""The app in a real browser: ``streamlit run app/main.py`` on a loopback port, driven with
Playwright in headless Debian Chromium, with every request that is not to the app aborted.

Clicks a latent point, runs the denoising viewer (and plays it), the property steering and the
gallery, and checks from screenshots that the 3D viewers drew atoms. Screenshots go to
``test-artifacts/``. Set ``CDVAE_APP_URL`` to drive an app that is already running instead (for
example with a trained checkpoint).

Needs the ``playwright`` Python package and ``/usr/bin/chromium``; without them the test is
skipped, except under CI (``$CI`` set), where it fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from test_app import app_env  # noqa: F401  (a fixture: tiny checkpoint and test split)

from helpers import REPO, served_process

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CDVAE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/")
VIEWER = 'iframe[title*="viewer3d"]'


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: browser tests must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict, log_path: Path, timeout: float = 120.0):
    """``streamlit run app/main.py`` on a free loopback port with ``env`` added; yields its URL
    once the server answers its health check (after its warm-up); stopped on exit."""
    with served_process_for(REPO / "app" / "main.py", env, log_path, timeout) as url:
        yield url


@contextlib.contextmanager
def served_process_for(script: Path, env: dict, log_path: Path, timeout: float = 120.0):
    """``streamlit run <script>`` from the repository root, as :func:`streamlit_server`."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with served_process(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        f"{url}/_stcore/health", log_path, "streamlit", timeout, stop_timeout=15,
        cwd=REPO, env={**os.environ, **env},
    ):
        yield url


@pytest.fixture(scope="module")
def app_url(app_env):  # noqa: F811
    """URL of the app under test: ``$CDVAE_APP_URL``, or a fresh server on the tiny model."""
    if os.environ.get("CDVAE_APP_URL"):
        yield os.environ["CDVAE_APP_URL"].rstrip("/")
        return
    env = {"CDVAE_CHECKPOINT": str(app_env["ckpt"]), "CDVAE_DATA_DIR": str(app_env["data"]),
           "CDVAE_CACHE_DIR": str(app_env["cache"]), "CDVAE_APP_STEPS": "1"}
    with streamlit_server(env, app_env["root"] / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright Python package is not installed (pip install playwright)")
    _require(Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def offline_page(browser, url: str, timeout_ms: float = 180_000):
    """A new page on ``url`` in which every request off the loopback interface is aborted and
    recorded in ``page.blocked``; close it with ``page.context.close()``."""
    assert (REPO / "app" / "static" / "3Dmol-min.js").is_file(), (
        "app/static/3Dmol-min.js is missing: run `bash scripts/fetch_3dmol.sh` (setup does)")
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    pg = context.new_page()
    pg.blocked = []

    def route(r):
        url = r.request.url
        if LOCAL.match(url) or url.startswith(("data:", "blob:", "about:")):
            r.continue_()
        else:
            pg.blocked.append(url)
            r.abort()

    pg.route("**/*", route)
    pg.goto(url, timeout=timeout_ms)  # a notebook export is megabytes of inline script
    return pg


@pytest.fixture
def page(browser, app_url):
    """A page in which every request off the loopback interface is aborted and recorded."""
    pg = offline_page(browser, app_url)
    yield pg
    pg.context.close()


# ---------------------------------------------------------------------------- helpers
def wait_idle(pg, timeout: float = 120.0) -> None:
    """Until the script has finished (Streamlit's running indicator is gone)."""
    time.sleep(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            time.sleep(0.5)
            if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        time.sleep(0.3)
    raise AssertionError("the app kept running for longer than the timeout")


def goto_page(pg, title: str) -> None:
    pg.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    pg.get_by_role("heading", name=title).wait_for(timeout=60_000)
    wait_idle(pg)


def click_button(pg, label: str) -> None:
    pg.get_by_role("button", name=label, exact=True).first.click()
    wait_idle(pg)


def set_number(pg, label: str, value) -> None:
    box = pg.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def drawn_fraction(png: bytes, background=(255, 255, 255), tol: int = 30) -> float:
    """Fraction of pixels that differ from the background by more than ``tol``."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float((np.abs(img - np.array(background)).max(axis=-1) > tol).mean())


def check_viewer(pg, index: int, name: str, min_fraction: float = 0.01) -> int:
    """The ``index``-th 3D viewer drew atoms: its own count, and pixels on its canvas."""
    frame = pg.frame_locator(VIEWER).nth(index)
    body = frame.locator("body[data-atoms]")
    body.wait_for(timeout=60_000)
    atoms = int(body.get_attribute("data-atoms"))
    assert atoms > 0, f"viewer {index} shows no atoms"
    time.sleep(0.5)  # one animation frame for WebGL to present
    png = frame.locator("canvas").first.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    fraction = drawn_fraction(png)
    assert fraction > min_fraction, f"viewer {index}: only {fraction:.2%} non-background pixels"
    return atoms


# ---------------------------------------------------------------------------- the test
def test_app_in_a_browser(page):
    pg = page
    pg.get_by_role("heading", name="Latent explorer").wait_for(timeout=120_000)
    wait_idle(pg)
    pg.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert pg.get_by_text("No z selected").count() == 1
    pg.screenshot(path=str(ARTIFACTS / "01_latent.png"))

    # click a test material on the latent map (position from plotly's own axes)
    point = pg.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const fl = gd._fullLayout, tr = gd._fullData[0], r = gd.getBoundingClientRect();
        return {x: r.left + fl._size.l + fl.xaxis.d2p(tr.x[0]),
                y: r.top + fl._size.t + fl.yaxis.d2p(tr.y[0])};
    }""")
    pg.mouse.click(point["x"], point["y"])
    wait_idle(pg)
    pg.get_by_text("Composition drawn for").wait_for(timeout=60_000)
    assert pg.get_by_text("No z selected").count() == 0
    pg.screenshot(path=str(ARTIFACTS / "02_latent_selected.png"))

    # denoising viewer: run, check the 3D view, play
    goto_page(pg, "Denoising viewer")
    set_number(pg, "Frames kept", 20)
    click_button(pg, "Run annealed Langevin")
    pg.get_by_text("Trajectory from").wait_for(timeout=180_000)
    check_viewer(pg, 0, "03_denoise_viewer")
    assert pg.get_by_text("Mean |score|").count() >= 1
    pg.screenshot(path=str(ARTIFACTS / "03_denoise.png"), full_page=True)
    viewer_body = pg.frame_locator(VIEWER).first.locator("body")
    start = viewer_body.get_attribute("data-frame")
    pg.get_by_text("Play", exact=True).click()
    # starting to play may remount the viewer once; then the index moves 4 times a second
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen - {start, None}) < 2:
        time.sleep(0.25)
        try:
            seen.add(viewer_body.get_attribute("data-frame", timeout=1000))
        except Exception:  # the frame being replaced between two looks
            pass
    pg.screenshot(path=str(ARTIFACTS / "03_denoise_playing.png"))
    pg.get_by_text("Play", exact=True).click()
    wait_idle(pg)
    assert len(seen - {start, None}) >= 2, f"playing did not advance the viewer: {seen}"
    assert int(viewer_body.get_attribute("data-atoms")) > 0  # images on cell faces vary

    # property steering: decoded structures side by side
    goto_page(pg, "Property steering")
    set_number(pg, "Gradient steps", 20)
    set_number(pg, "Decode every k steps", 10)
    click_button(pg, "Steer")
    pg.get_by_text(re.compile(r"^start \(")).first.wait_for(timeout=180_000)
    for i in range(3):
        check_viewer(pg, i, f"04_steer_viewer_{i}")
    pg.screenshot(path=str(ARTIFACTS / "04_steer.png"), full_page=True)

    # gallery: generate a few samples, every thumbnail draws
    goto_page(pg, "Sample gallery")
    set_number(pg, "Samples", 3)
    click_button(pg, "Generate")
    pg.get_by_text("sample_00002").first.wait_for(timeout=180_000)
    for i in range(3):
        check_viewer(pg, i, f"05_gallery_viewer_{i}")
    pg.screenshot(path=str(ARTIFACTS / "05_gallery.png"), full_page=True)

    assert not pg.blocked, f"the app asked for non-local resources: {pg.blocked}"
