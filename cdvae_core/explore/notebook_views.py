"""3D views and plotly figures that draw with no network: in JupyterLab, and in the HTML that
``jupyter nbconvert --to html`` makes of an executed notebook.

Both JavaScript libraries come from this machine: 3Dmol.js from the copy the setup installs
(:mod:`cdvae_core.explore.offline`), plotly.js from the ``plotly`` package. Each is embedded
**once per notebook**: the first output that needs it carries it (a ``<script>`` that defines it
only where the page lacks it), later outputs use the page's copy. "Once" is counted per kernel
session, and an output made again by the cell whose earlier output carried a library carries it
again (that earlier output is being replaced), so a saved notebook and its export keep one copy.

- :class:`NotebookView` wraps the HTML of any 3D view that draws with the global ``$3Dmol``
  (py3Dmol's, or another renderer's): ``tutorial.structures_view`` returns one.
- :func:`offline_notebook` (a notebook calls it once, before its first figure) makes plotly
  figures carry, beside the JupyterLab mimetype (drawn by the ``jupyterlab-plotly`` extension,
  served by the Jupyter server), an HTML copy drawn by the embedded plotly.js, which is what an
  nbconvert export shows; plotly's own ``notebook`` renderer would load MathJax from a CDN.
"""

from __future__ import annotations

import html as html_lib
import json
from typing import Any

__all__ = ["NotebookView", "offline_notebook", "carry_library", "library_script",
           "PLOTLY_RENDERER", "NO_NETWORK_JS"]

#: the plotly renderers set by :func:`offline_notebook`: JupyterLab's mimetype, and offline HTML
PLOTLY_RENDERER = "plotly_mimetype+cdvae_offline_html"
#: py3Dmol's ``js=``: a script that loads nothing (the view never fetches 3Dmol.js itself)
NO_NETWORK_JS = "data:text/javascript,"

# library -> (cell id, execute request id) of the execution whose output carried it
_carried: dict[str, tuple[str | None, str | None]] = {}

_GLOBALS = {"3dmol": "$3Dmol", "plotly": "Plotly"}


def _library_source(name: str) -> str:
    if name == "3dmol":
        from cdvae_core.explore.offline import threedmol_js

        return threedmol_js()
    if name == "plotly":
        from plotly.offline import get_plotlyjs

        return "window.PlotlyConfig = {MathJaxConfig: 'local'};\n" + get_plotlyjs()
    raise ValueError(f"unknown library {name!r}; known: {sorted(_GLOBALS)}")


def library_script(name: str) -> str:
    """A ``<script>`` that defines library ``name`` (``"3dmol"`` or ``"plotly"``) as a global
    where the page lacks it. It runs with ``define``, ``exports`` and ``module`` hidden, so the
    bundles attach to ``window`` also beside require.js (nbconvert's page loads it when online)."""
    source = _library_source(name).replace("</script", "<\\/script")
    return (f"<script>\nif (typeof window.{_GLOBALS[name]} === 'undefined') {{\n"
            f"(function (define, exports, module) {{\n{source}\n}}).call(window);\n}}\n</script>\n")


def _execution() -> tuple[str | None, str | None]:
    """(cell id, execute request id) of the running cell; (None, None) outside a kernel.
    JupyterLab sends the cell id; papermill does not (then once per kernel session)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None, None
    shell = get_ipython()
    parent = getattr(shell, "parent_header", None) or {}
    cell = (parent.get("metadata") or {}).get("cellId")
    return cell, (parent.get("header") or {}).get("msg_id")


def carry_library(name: str) -> bool:
    """Whether the output being made now must carry library ``name`` (and, if so, records that
    it does): the first time in this kernel session, or again when the cell that carried it runs
    again (its old output, with the library, is replaced by this one)."""
    cell, request = _execution()
    before = _carried.get(name)
    if before is not None and not (cell is not None and before[0] == cell
                                   and before[1] != request):
        return False
    _carried[name] = (cell, request)
    return True


_MISSING = """<script>
(function (box) {{
  if (typeof window.$3Dmol !== 'undefined') {{
    window.$3Dmolpromise = Promise.resolve(window.$3Dmol);
  }} else {{
    window.$3Dmolpromise = new Promise(function () {{}});  // never fetched from a network
    if (box) box.insertAdjacentHTML('afterbegin', {message});
  }}
}})(document.currentScript && document.currentScript.closest('.cdvae-view'));
</script>
"""


class NotebookView:
    """A 3D view for a notebook: ``body_html`` (HTML whose scripts draw with the global
    ``$3Dmol``, and which may wait on ``$3Dmolpromise`` as py3Dmol's views do) with the local
    3Dmol.js embedded when this output must carry it (:func:`carry_library`).

    Displayed as the value of a cell or with :meth:`show`; :meth:`html` is the full HTML.
    Where the page has no 3Dmol.js (an output that relied on an earlier one which is gone), the
    view says so instead of fetching it.
    """

    def __init__(self, body_html: str, atoms: int | None = None):
        self.body_html = body_html
        self.atoms = atoms

    def html(self, with_library: bool | None = None) -> str:
        """The output's HTML; ``with_library`` None: as :func:`carry_library` decides."""
        if with_library is None:
            with_library = carry_library("3dmol")
        message = html_lib.escape(
            "3D view not drawn: this page has no 3Dmol.js. Run the notebook again from the top "
            "(its first 3D view carries the viewer).", quote=False)
        missing = _MISSING.format(message=json.dumps(f'<p style="color:#a00">{message}</p>'))
        data = f' data-atoms="{self.atoms}"' if self.atoms is not None else ""
        return ('<div class="cdvae-view"' + data + '>\n'
                + (library_script("3dmol") if with_library else "")
                + missing + self.body_html + "\n</div>")

    def _repr_html_(self) -> str:
        return self.html()

    def show(self) -> None:
        """Display the view in the running notebook."""
        from IPython.display import display

        display(self)

    def __repr__(self) -> str:
        return f"NotebookView({len(self.body_html)} characters of HTML)"


def _html_renderer():
    from plotly.io import to_html
    from plotly.io._base_renderers import MimetypeRenderer

    class OfflineHtmlRenderer(MimetypeRenderer):
        """plotly figures as HTML drawn by the plotly.js embedded once per notebook: no CDN, no
        MathJax (plotly's ``notebook`` renderer adds MathJax from cdnjs to every figure)."""

        def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
            lib = library_script("plotly") if carry_library("plotly") else ""
            div = to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                          full_html=False, default_width="100%", default_height=525,
                          validate=False)
            return {"text/html": lib + div}

    return OfflineHtmlRenderer()


def offline_notebook() -> None:
    """Make this notebook's plotly figures draw with no network in JupyterLab and in an
    nbconvert HTML export (sets ``plotly.io.renderers.default`` to :data:`PLOTLY_RENDERER`).
    3D views need no call: they carry 3Dmol.js by themselves."""
    import plotly.io as pio

    pio.renderers["cdvae_offline_html"] = _html_renderer()
    pio.renderers.default = PLOTLY_RENDERER
