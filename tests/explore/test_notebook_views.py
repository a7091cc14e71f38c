"""Figures and 3D views of the notebooks carry their JavaScript (3Dmol.js, plotly.js) once per
notebook and never name a CDN; the browser checks are in ``tests/test_notebooks_browser.py``."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from cdvae_core.explore import notebook_views
from cdvae_core.explore.notebook_views import NotebookView, carry_library, offline_notebook


@pytest.fixture(autouse=True)
def fresh_kernel(monkeypatch):
    """As in a new kernel session: nothing carried yet, plotly's renderer restored after."""
    monkeypatch.setattr(notebook_views, "_carried", {})
    default = pio.renderers.default
    yield
    pio.renderers.default = default


def _in_cell(monkeypatch, cell, request):
    monkeypatch.setattr(notebook_views, "_execution", lambda: (cell, request))


def test_a_library_is_carried_once_and_again_when_its_cell_reruns(monkeypatch):
    _in_cell(monkeypatch, "cell-a", "run-1")
    assert carry_library("3dmol")
    assert not carry_library("3dmol")  # a second view in the same run of the cell
    _in_cell(monkeypatch, "cell-b", "run-2")
    assert not carry_library("3dmol")
    assert carry_library("plotly")  # each library on its own
    _in_cell(monkeypatch, "cell-a", "run-3")  # cell-a again: its old output is replaced
    assert carry_library("3dmol")
    _in_cell(monkeypatch, None, None)  # papermill sends no cell id: once per kernel session
    assert not carry_library("3dmol")


def test_view_embeds_3dmol_once_and_never_a_cdn(monkeypatch, tmp_path):
    fake = tmp_path / "3Dmol-min.js"
    fake.write_text("window.$3Dmol = {createViewer: function () {}};")
    monkeypatch.setenv("CDVAE_3DMOL_JS", str(fake))
    view = NotebookView("<div id='v'></div><script>$3Dmolpromise.then(draw)</script>", atoms=3)
    first, second = view._repr_html_(), view._repr_html_()
    assert first.count("window.$3Dmol = {createViewer") == 1
    assert "createViewer" not in second and "$3Dmolpromise.then(draw)" in second
    assert 'data-atoms="3"' in first
    for html in (first, second):
        assert "https://" not in html and "http://" not in html
        assert "3D view not drawn" in html  # shown only where the page lacks 3Dmol.js


def test_library_script_hides_amd_and_escapes_script_ends(monkeypatch, tmp_path):
    fake = tmp_path / "3Dmol-min.js"
    fake.write_text("var s = '</script>'; window.$3Dmol = {};")
    monkeypatch.setenv("CDVAE_3DMOL_JS", str(fake))
    script = notebook_views.library_script("3dmol")
    assert script.count("</script") == 1 and "<\\/script>'" in script
    assert "(function (define, exports, module)" in script
    with pytest.raises(ValueError, match="unknown library"):
        notebook_views.library_script("jquery")


def test_offline_plotly_renderer_carries_plotlyjs_once_and_no_cdn():
    offline_notebook()
    assert pio.renderers.default == notebook_views.PLOTLY_RENDERER
    fig = go.Figure(go.Scatter(x=[1, 2], y=[2, 1]))
    first, second = fig._repr_mimebundle_(), fig._repr_mimebundle_()
    for bundle in (first, second):
        assert "application/vnd.plotly.v1+json" in bundle  # JupyterLab's extension draws this
        assert "<script src=" not in bundle["text/html"]  # no CDN, no MathJax
        assert "Plotly.newPlot" in bundle["text/html"]
    assert "window.Plotly = Plotly" in first["text/html"]
    assert "window.Plotly = Plotly" not in second["text/html"]
