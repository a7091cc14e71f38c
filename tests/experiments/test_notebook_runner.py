"""Every notebook runs end to end with papermill on smoke parameters (tiny data, a tiny model
trained for a few steps, few sampler steps), and the stored notebooks are clean: no outputs,
exactly one cell tagged ``parameters``."""

from __future__ import annotations

import html.parser
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.experiments.notebook_runner import main, notebook_path, parse_value, run_notebook
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import load_model, save_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.predictor.gnn import PredictorConfig, PropertyPredictor, save_predictor

from helpers import REPO, data_file

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TINY_NET = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
ROWS = 40


def _template_urls() -> frozenset[str]:
    """The nbconvert HTML template's own links (require.js, MathJax, mermaid), exactly as this
    nbconvert writes them; the notebooks use none of them."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:  # the export tests need nbconvert; the rest of this module does not
        return frozenset()
    e = HTMLExporter()
    return frozenset(getattr(e, k) for k in ("require_js_url", "mathjax_url", "mermaid_js_url",
                                             "mermaid_layout_elk_js_url") if getattr(e, k, ""))


TEMPLATE_URLS = _template_urls()


def test_the_five_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"tutorial_diffusion_on_crystals.ipynb", "latent_tour.ipynb",
            "property_optimization.ipynb", "train.ipynb", "evaluate.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has stored outputs"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"


# ---------------------------------------------------------------------------- the runner
def _toy_notebook(path: Path, body: str) -> Path:
    params = nbformat.v4.new_code_cell("x = 1\nout_dir = 'nowhere'")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3
    assert parse_value("true") is True and parse_value("None") is None
    assert parse_value("['a', 'b']") == ["a", "b"] and parse_value("{'k': 2}") == {"k": 2}
    assert parse_value("checkpoints/x.pt") == "checkpoints/x.pt"


def test_notebook_path_reads_defaults_from_the_checkout_in_a_kernel_elsewhere(tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)  # as JupyterLab starts a kernel in notebooks/
    assert notebook_path("checkpoints") == str(REPO / "checkpoints")
    (tmp_path / "checkpoints").mkdir()  # where it exists from the working directory, that one
    assert notebook_path("checkpoints") == "checkpoints"
    assert notebook_path("no/such/file.pt") == "no/such/file.pt"
    assert notebook_path(None) is None and notebook_path("/abs/x") == "/abs/x"


def test_runner_injects_parameters_and_defaults_out_dir(tmp_path):
    src = _toy_notebook(tmp_path / "toy.ipynb",
                        "from pathlib import Path\nPath(out_dir, 'x.txt').write_text(str(x * 2))")
    out = run_notebook(src, tmp_path / "run", {"x": 21})
    assert out == tmp_path / "run" / "toy.ipynb"
    assert (tmp_path / "run" / "x.txt").read_text() == "42"
    record = json.loads((tmp_path / "run" / "parameters.json").read_text())
    assert record["parameters"]["x"] == 21
    with pytest.raises(ValueError, match="no parameter"):
        run_notebook(src, tmp_path / "run2", {"y": 1})


def test_runner_cli_reports_a_failing_cell(tmp_path, capsys):
    src = _toy_notebook(tmp_path / "bad.ipynb", "raise RuntimeError('boom')")
    assert main([str(src), str(tmp_path / "run"), "-p", "x", "2"]) == 1
    assert "boom" in capsys.readouterr().err
    assert (tmp_path / "run" / "bad.ipynb").is_file()  # the partial copy, for debugging
    ok = _toy_notebook(tmp_path / "ok.ipynb", "assert x == 5")
    assert main([str(ok), str(tmp_path / "run_ok"), "-p", "x", "5"]) == 0


# ---------------------------------------------------------------------------- smoke runs
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A data folder with the first 40 rows of Perov-5 val/test, a tiny CDVAE trained for a few
    steps and an untrained tiny property predictor; kernels run on one thread."""
    root = tmp_path_factory.mktemp("smoke")
    data = root / "data" / "perov_5"
    data.mkdir(parents=True)
    for split in ("val", "test"):
        pd.read_csv(data_file("perov_5", split), nrows=ROWS).to_csv(data / f"{split}.csv",
                                                                      index=False)
    cache = root / "cache"
    train_set = CrystalDataset.from_csv(data / "val.csv", "perov_5", cache_dir=cache,
                                        progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder=TINY_NET, decoder=TINY_NET, latent_dim=8,
                                  hidden_dim=16)
    model = CDVAE(cfg, fit_scalers(train_set))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(20):
        batch = train_set.collate([(8 * step + i) % len(train_set) for i in range(8)])
        loss = model(batch, generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_model(model.eval(), root / "model.pt", {"note": "smoke test"})
    save_predictor(PropertyPredictor(PredictorConfig(hidden=16, num_layers=1)).eval(),
                   root / "predictor.pt")
    with pytest.MonkeyPatch.context() as mp:
        # a kernel inherits this; several threads per kernel only fight on a small CPU
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("CDVAE_CACHE_DIR", str(cache))
        yield {"root": root, "data_dir": str(root / "data"), "checkpoint": str(root / "model.pt"),
               "predictor": str(root / "predictor.pt"), "cache_dir": str(cache)}


def _run(smoke, name: str, **params) -> nbformat.NotebookNode:
    run_dir = smoke["root"] / "runs" / Path(name).stem
    out = run_notebook(REPO / "notebooks" / name, run_dir, params, cwd=REPO, timeout_s=300)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    check_export_offline(out, nb)
    return nb


class _Page(html.parser.HTMLParser):
    """What a page asks the browser to load (script, link, img and iframe sources) and the
    text of its inline scripts."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href") if tag in ("script", "link", "img", "iframe") else ():
            if attrs.get(key):
                self.urls.append(attrs[key])
        if tag == "script" and not attrs.get("src"):
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


#: the embedded plotly.js / 3Dmol.js (``notebook_views.library_script``): their code names URLs
_BUNDLE = re.compile(r"^\s*if \(typeof window\.\S+ === 'undefined'\) \{")
_URL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?/[^\s\"'<>`)]*")
#: a URL in a script is a fetch when it names a script or module, or stands where one is loaded
#: (an import, require.js paths, a script element's src, fetch); the template's comments also
#: cite documentation and DTD URLs, which nothing loads
_SCRIPT_FILE = re.compile(r"\.m?js(\?[^\s\"'<>`]*)?$")
_LOADER = re.compile(r"\b(import|require|paths|loadScript\w*|src|fetch)\b[^;\n]{0,40}$")


def _fetched_urls(script: str) -> set[str]:
    return {m.group(0) for m in _URL.finditer(script)
            if _SCRIPT_FILE.search(m.group(0)) or _LOADER.search(script[:m.start()][-60:])}


def _outputs(nb, kind: str) -> int:
    """Plotly figures (outputs with plotly's mimetype) or (``"view"``) 3D views (our view
    containers in the HTML outputs) of an executed notebook."""
    n = 0
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = o.get("data", {})
            if kind == "plotly":
                n += "application/vnd.plotly.v1+json" in data
            else:
                n += str(data.get("text/html", "")).count('<div class="cdvae-view"')
    return n


def check_export_offline(executed: Path, nb) -> str:
    """Export ``executed`` to HTML with nbconvert (as the README tells a user to share a run)
    and check that the page shows every plotly figure and 3D view of ``nb`` with no network:
    each is in the page, plotly.js and 3Dmol.js are embedded once each where needed, and
    neither the page's tags nor its scripts load anything off the machine but the template's own
    links (:data:`TEMPLATE_URLS`, which the notebooks do not use). Returns the page's HTML."""
    done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(executed)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"nbconvert failed on {executed}:\n{done.stderr[-3000:]}"
    page = executed.with_suffix(".html").read_text()
    parsed = _Page()
    parsed.feed(page)
    remote = [u for u in parsed.urls
              if re.match(r"^(https?:)?//", u) and u not in TEMPLATE_URLS]
    assert not remote, f"{executed.name}: the export loads {remote}"
    # no script of the page fetches anything by itself (py3Dmol's default loads 3Dmol.js from
    # a CDN, plotly's notebook_connected renderer imports plotly.js from its own)
    own = [text for text in parsed.scripts if not _BUNDLE.match(text)]
    fetched = sorted(set().union(*map(_fetched_urls, own)) - TEMPLATE_URLS)
    assert not fetched, f"{executed.name}: scripts that fetch {fetched}"
    figures, views = _outputs(nb, "plotly"), _outputs(nb, "view")
    plots = sum(text.count("Plotly.newPlot(") for text in own)
    assert plots == figures, f"{executed.name}: {plots} figures drawn, {figures} in the notebook"
    assert page.count('<div class="cdvae-view"') == views
    bundles = [text for text in parsed.scripts if _BUNDLE.match(text)]
    assert sum("window.Plotly ===" in b[:200] for b in bundles) == (figures > 0)
    assert sum("window.$3Dmol ===" in b[:200] for b in bundles) == (views > 0)
    return page


_FIGURE = ("import plotly.graph_objects as go\n"
           "go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))")


def test_a_script_url_counts_as_fetched_where_something_loads_it():
    fetched = _fetched_urls(
        "require.config({paths: {'plotly': 'https://cdn.plot.ly/plotly-2.x.min'}});\n"
        'import "https://cdn.plot.ly/plotly-3.x.min";\n'
        "loadScriptAsync('//cdnjs.cloudflare.com/ajax/libs/3Dmol/2.5.0/3Dmol-min.js');\n"
        "// spec: https://developer.mozilla.org/en-US/docs/Glossary/Void_element\n"
        "var ns = 'http://www.w3.org/2000/svg';")
    assert fetched == {"https://cdn.plot.ly/plotly-2.x.min", "https://cdn.plot.ly/plotly-3.x.min",
                       "//cdnjs.cloudflare.com/ajax/libs/3Dmol/2.5.0/3Dmol-min.js"}


@pytest.mark.slow
@pytest.mark.parametrize("setup, offline", [
    ("from cdvae_core.explore.notebook_views import offline_notebook\noffline_notebook()", True),
    # plotly's own notebook renderer fetches plotly.js from its CDN when the page opens
    ("import plotly.io as pio\npio.renderers.default = 'notebook_connected'", False),
    # so does a py3Dmol view with its default js= (3Dmol.js from a CDN)
    ("import py3Dmol\nv = py3Dmol.view(width=100, height=100)\n"
     "v.addModel('1\\n\\nC 0 0 0', 'xyz')\nv.show()\n"
     "import plotly.io as pio\npio.renderers.default = 'plotly_mimetype'", False),
])
def test_export_check_tells_an_offline_page_from_one_that_fetches(tmp_path, setup, offline):
    src = _toy_notebook(tmp_path / "toy.ipynb", setup + "\n" + _FIGURE)
    out = run_notebook(src, tmp_path / "run", {}, cwd=REPO, timeout_s=120)
    nb = nbformat.read(out, as_version=4)
    if offline:
        check_export_offline(out, nb)
    else:
        with pytest.raises(AssertionError, match="cdn.plot.ly|3Dmol"):
            check_export_offline(out, nb)


def _has_plotly(nb) -> bool:
    return any("application/vnd.plotly.v1+json" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_tutorial_notebook(smoke):
    nb = _run(smoke, "tutorial_diffusion_on_crystals.ipynb", checkpoint=smoke["checkpoint"],
              data_dir=smoke["data_dir"], cache_dir=smoke["cache_dir"], sampler="interactive",
              num_error_crystals=8)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "recovered: every atom within 0.1 Å of its site" in text
    assert _has_plotly(nb)


@pytest.mark.slow
def test_latent_tour_notebook(smoke):
    nb = _run(smoke, "latent_tour.ipynb", checkpoint=smoke["checkpoint"],
              data_dir=smoke["data_dir"], cache_dir=smoke["cache_dir"], num_points=3,
              sampler="interactive")
    assert _has_plotly(nb)


@pytest.mark.slow
def test_property_optimization_notebook(smoke):
    common = dict(checkpoint=smoke["checkpoint"], data_dir=smoke["data_dir"],
                  cache_dir=smoke["cache_dir"], num_materials=3, steps=20, decode_every=10,
                  sampler="interactive")
    nb = _run(smoke, "property_optimization.ipynb", predictor=smoke["predictor"], **common)
    assert _has_plotly(nb)
    # without a predictor the notebook still runs and says what it skipped
    nb = _run(smoke, "property_optimization.ipynb", predictor=None, **common)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "no independent predictor" in text


@pytest.mark.slow
def test_train_notebook_writes_the_run_directory(smoke):
    run_dir = smoke["root"] / "runs" / "train"
    _run(smoke, "train.ipynb", data_dir=smoke["data_dir"], cache_dir=smoke["cache_dir"],
         epochs=1, batch_size=8, limit_train_batches=2, limit_val_batches=1, encoder=TINY_NET,
         decoder=TINY_NET, model_overrides={"latent_dim": 8, "hidden_dim": 16},
         ema_decay=0.999)
    assert (run_dir / "train.ipynb").is_file()
    assert (run_dir / "model.pt").is_file() and (run_dir / "run.json").is_file()
    info = load_model(run_dir / "model.pt", with_info=True)[1]
    assert info["training"]["weight_averaging"]["ema_decay"] == 0.999
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_evaluate_notebook_writes_every_task(smoke):
    run_dir = smoke["root"] / "runs" / "evaluate"
    nb = _run(smoke, "evaluate.ipynb", checkpoint=smoke["checkpoint"],
              data_dir=smoke["data_dir"], cache_dir=smoke["cache_dir"],
              predictor=smoke["predictor"], num_reconstruct=3, num_samples=4, num_optimize=2,
              opt_steps=10, decode_every=5, sampler="interactive", batch_size=8)
    for task in ("reconstruction", "generation", "optimization"):
        assert (run_dir / task / "summary.json").is_file(), task
    assert _has_plotly(nb)
