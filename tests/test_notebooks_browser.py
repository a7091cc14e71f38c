"""The notebooks as a student sees them, in a real browser with no network: JupyterLab on a
loopback port runs the tutorial (smoke parameters) top to bottom, and the HTML that nbconvert
makes of a papermill run is opened as a file is shared. Both in headless Debian Chromium with
every request off the loopback interface aborted, checking from the pixels that the plotly
figures and the 3D views drew. Screenshots go to ``test-artifacts/``.

Needs JupyterLab and nbconvert (``scripts/setup.sh`` installs them), the ``playwright`` Python
package and ``/usr/bin/chromium``; without them the tests are skipped, except under CI.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from experiments.test_notebook_runner import (  # noqa: F401  (smoke: a fixture)
    TEMPLATE_URLS,
    smoke,
)
from test_app_browser import (  # noqa: F401  (browser: a fixture)
    ARTIFACTS,
    _free_port,
    _require,
    browser,
    drawn_fraction,
    offline_page,
)

from cdvae_core.experiments.notebook_runner import run_notebook

from helpers import REPO, served_process

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

TUTORIAL = "tutorial_diffusion_on_crystals.ipynb"
FIGURES, VIEWS = 5, 4  # plotly figures and 3D views of the tutorial


def _tutorial_parameters(smoke) -> dict:  # noqa: F811
    """The tutorial's smoke parameters (as ``tests/experiments/test_notebook_runner.py``)."""
    return {"checkpoint": smoke["checkpoint"], "data_dir": smoke["data_dir"],
            "cache_dir": smoke["cache_dir"], "sampler": "interactive", "num_error_crystals": 8}


def _kernel_env() -> dict:
    """This checkout first on the kernel's path (a shared environment may hold another)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def jupyter_lab(root: Path, home: Path, timeout: float = 120.0):
    """``jupyter lab`` serving ``root`` on a free loopback port with a token, its user
    configuration, data, runtime, settings and workspaces in ``home`` (the user's are untouched);
    yields ``(url, token)``; stopped on exit. Otherwise started as the README's notebook line
    starts it: no news, update check or root refusal switched off here, so these rest on what
    ``scripts/setup.sh`` configured in the environment."""
    _require(subprocess.run([sys.executable, "-c", "import jupyterlab"]).returncode == 0,
             "JupyterLab is not installed (bash scripts/setup.sh installs it)")
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {**_kernel_env(), "JUPYTER_CONFIG_DIR": str(dirs["config"]),
           "JUPYTER_DATA_DIR": str(dirs["data"]), "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
           "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
           "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
           "IPYTHONDIR": str(home / "ipython")}
    port, token = _free_port(), "cdvae-test-token"
    url = f"http://127.0.0.1:{port}"
    with served_process(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
         "--port", str(port), "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}"],
        f"{url}/api/status?token={token}", home / "jupyterlab.log", "jupyter lab", timeout,
        cwd=root, env=env,
    ):
        yield url, token


@contextlib.contextmanager
def file_server(root: Path):
    """``root`` served over HTTP on a free loopback port (a shared HTML file, opened)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_drawn(pg, name: str) -> tuple[int, int]:
    """Every plotly figure and every 3D view of the page drew: pixels of each (scrolled into
    view, screenshot in ``test-artifacts/<name>_...png``). Returns (figures, views)."""
    figures = pg.locator(".js-plotly-plot")
    views = pg.locator("div.cdvae-view")  # a 3D view of the library (a grid of cells)
    assert pg.get_by_text("3D view not drawn").count() == 0, "a view found no 3Dmol.js"
    for i in range(figures.count()):
        fig = figures.nth(i)
        fig.locator(".main-svg .scatterlayer .trace").first.wait_for(state="attached",
                                                                      timeout=60_000)
        png = fig.screenshot(path=str(ARTIFACTS / f"{name}_figure_{i}.png"))
        fraction = drawn_fraction(png)
        assert fraction > 0.01, f"figure {i}: only {fraction:.2%} non-background pixels"
    for i in range(views.count()):
        view = views.nth(i)
        canvas = view.locator("canvas").first
        canvas.wait_for(timeout=60_000)
        canvas.scroll_into_view_if_needed()
        time.sleep(0.5)  # a frame for WebGL to present
        png = canvas.screenshot(path=str(ARTIFACTS / f"{name}_view_{i}.png"))
        fraction = drawn_fraction(png)
        assert fraction > 0.01, f"3D view {i}: only {fraction:.2%} non-background pixels"
    return figures.count(), views.count()


def _wait_all_ran(pg, timeout: float = 600.0) -> int:
    """Until every code cell shows an execution count and the kernel is idle; returns the
    number of code cells. A failing cell stops Run All, so the cells after it never count."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = pg.evaluate("""() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return {prompts: prompts.map(p => p.textContent.trim()),
                    idle: !status || status.getAttribute('data-status') === 'idle'};
        }""")
        if state["prompts"] and state["idle"] and all(
                re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]):
            return len(state["prompts"])
        time.sleep(1.0)
    raise AssertionError(f"the notebook did not finish running: {state}")


def _save_and_read_stderr(pg, path: Path, code_cells: int, tries: int = 3) -> list[str]:
    """File > Save Notebook, then the stderr texts of the notebook at ``path`` once it is saved
    with every code cell run (asked again if a save does not land within 20 s)."""
    counts = None
    for _ in range(tries):
        pg.get_by_role("menuitem", name="File", exact=True).click()
        pg.locator('li[data-command="docmanager:save"]').click()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # read while JupyterLab writes it
                nb = nbformat.read(path, as_version=4)
                code = [c for c in nb.cells if c.cell_type == "code"]
                counts = [c.execution_count for c in code]
                if len(code) == code_cells and all(counts):
                    return [o.get("text", "") for c in code for o in c.outputs
                            if o.get("name") == "stderr"]
            time.sleep(0.5)
    raise AssertionError(f"{path.name} was not saved with its outputs after {tries} saves "
                         f"(execution counts on disk: {counts})")


def test_tutorial_runs_in_jupyterlab_offline(browser, smoke, tmp_path):  # noqa: F811
    import papermill

    root = tmp_path / "notebooks"
    root.mkdir()
    # as papermill injects the parameters, opened in JupyterLab instead of executed
    nb = papermill.iorw.load_notebook_node(str(REPO / "notebooks" / TUTORIAL))
    nb = papermill.parameterize.parameterize_notebook(nb, _tutorial_parameters(smoke))
    nbformat.write(nb, root / TUTORIAL)
    code_cells = sum(c.cell_type == "code" for c in nb.cells)

    with jupyter_lab(root, tmp_path / "jupyter") as (url, token):
        pg = offline_page(browser, f"{url}/lab/tree/{TUTORIAL}?token={token}")
        try:
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            # the status bar: "Python 3 (ipykernel) | Idle" once the kernel has started
            pg.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=180_000)
            pg.screenshot(path=str(ARTIFACTS / "notebook_01_opened.png"))
            t0 = time.monotonic()
            pg.get_by_role("menuitem", name="Run", exact=True).click()
            pg.locator('li[data-command="runmenu:run-all"]').click()  # Run All Cells
            assert _wait_all_ran(pg) == code_cells
            print(f"run all: {time.monotonic() - t0:.0f} s")
            pg.screenshot(path=str(ARTIFACTS / "notebook_02_ran.png"), full_page=True)
            assert not pg.blocked, f"requests that would have left the machine: {pg.blocked}"
            assert check_drawn(pg, "notebook_lab") == (FIGURES, VIEWS), errors
            # setup's settings: no prompt to fetch news from jupyter.org
            assert pg.get_by_text(re.compile("Jupyter news", re.I)).count() == 0
            # the outputs as saved (JupyterLab keeps only the cells in view in the page): no
            # warning for the student, e.g. tqdm's "IProgress not found" without ipywidgets
            streams = _save_and_read_stderr(pg, root / TUTORIAL, code_cells)
            assert not [t for t in streams if "Warning" in t], streams
        finally:
            pg.context.close()


def test_exported_tutorial_shows_figures_and_views_offline(browser, smoke, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    out = run_notebook(REPO / "notebooks" / TUTORIAL, run_dir, _tutorial_parameters(smoke),
                       cwd=REPO, timeout_s=300)
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(out)], check=True,
                   env=_kernel_env(), capture_output=True)
    html = out.with_suffix(".html")
    assert html.is_file()
    with file_server(run_dir) as url:
        pg = offline_page(browser, f"{url}/{html.name}")
        try:
            pg.wait_for_load_state("load")
            pg.screenshot(path=str(ARTIFACTS / "notebook_03_export.png"), full_page=True)
            assert check_drawn(pg, "notebook_export") == (FIGURES, VIEWS)
            others = [u for u in pg.blocked if u not in TEMPLATE_URLS]
            assert not others, f"the export asked for non-local resources: {others}"
        finally:
            pg.context.close()


@contextlib.contextmanager
def _view_page(browser, view, folder: Path):  # noqa: F811
    """A library view saved as a standalone page in ``folder``, opened offline; on exit, no
    request left the machine and the page is closed."""
    (folder / "views.html").write_text(f"<html><body>{view.html(with_library=True)}</body></html>")
    with file_server(folder) as url:
        pg = offline_page(browser, f"{url}/views.html")
        try:
            yield pg
            assert not pg.blocked, f"the page asked for non-local resources: {pg.blocked}"
        finally:
            pg.context.close()


def test_notebook_views_draw_their_labels(browser, tmp_path):  # noqa: F811
    """A library 3D view shows its label (the formula) in its top-left corner: the same crystal
    drawn with a label and with an empty one differ there by dark text pixels."""
    from cdvae_core.explore import scene as scn

    from conftest import cubic_srtio3

    view = scn.show_structures([cubic_srtio3(), cubic_srtio3()], labels=["SrTiO3 label", ""],
                               columns=2)
    with _view_page(browser, view, tmp_path) as pg:
        canvases = pg.locator("div.cdvae-view canvas")
        canvases.nth(1).wait_for(timeout=60_000)
        time.sleep(0.5)  # a frame for WebGL to present
        corners = []
        for i in range(2):
            png = canvases.nth(i).screenshot(path=str(ARTIFACTS / f"label_view_{i}.png"))
            corners.append(_corner_dark_fraction(png))
        assert corners[0] > corners[1] + 0.02, (
            f"the labelled view's corner has {corners[0]:.1%} dark pixels, the unlabelled "
            f"one {corners[1]:.1%}: the label was not drawn")


def _corner_dark_fraction(png: bytes) -> float:
    """Fraction of near-black pixels in the top-left 120 x 24 pixels of a screenshot."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(int)
    return float((img[:24, :120] < 80).mean())


def test_notebook_view_grids_wrap_in_a_narrow_output_area(browser, tmp_path):  # noqa: F811
    """A grid of four 260-pixel views on a page 700 pixels wide wraps to fewer columns: every
    view and its legend stay fully on the page (a notebook beside its file browser)."""
    from cdvae_core.explore import scene as scn

    from conftest import cubic_srtio3

    view = scn.show_structures([cubic_srtio3()] * 4, columns=4)
    with _view_page(browser, view, tmp_path) as pg:
        pg.set_viewport_size({"width": 700, "height": 1100})
        cells = pg.locator("div.cdvae-cell")
        cells.nth(3).locator("canvas").wait_for(timeout=60_000)
        boxes = [cells.nth(i).bounding_box() for i in range(4)]
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= 700 for b in boxes), boxes
        assert len({b["y"] for b in boxes}) > 1  # more than one row
