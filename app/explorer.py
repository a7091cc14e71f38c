"""CDVAE explorer: the script each browser session runs (``streamlit run app/main.py`` serves
it, see main.py). It only routes: the sidebar picks the model and the data, and each page
(app/pages/) calls the library.
"""

from __future__ import annotations

import state
import streamlit as st
from components.viewer import js_available

st.set_page_config(page_title="CDVAE explorer", layout="wide")
state.configure_torch()

PAGES = [
    st.Page("pages/latent.py", title="Latent explorer", default=True),
    st.Page("pages/denoise.py", title="Denoising viewer"),
    st.Page("pages/steer.py", title="Property steering"),
    st.Page("pages/upload.py", title="Upload a CIF"),
    st.Page("pages/gallery.py", title="Sample gallery"),
]
page = st.navigation(PAGES)
if not js_available():
    st.sidebar.warning(
        "3D viewer unavailable: app/static/3Dmol-min.js is missing "
        "(run `bash scripts/fetch_3dmol.sh`)."
    )
st.session_state["ctx"] = state.sidebar()
page.run()
