"""Sample gallery: generate from the prior or open an evaluation run; browse, filter, sort,
open a sample in the full viewer, download a selection."""

from __future__ import annotations

from pathlib import Path

import state
import streamlit as st
import torch
from components import gallery
from components.compare import compare_panel
from components.runs import run_decode
from components.viewer import show_structure

from cdvae_core.diffusion.presets import get_preset
from cdvae_core.metrics.evaluate import SPACEGROUP_SYMPREC

PAGE = 9
ctx = state.context()
st.title("Sample gallery")
source = st.radio("Source", ["Generate from the prior", "Open an evaluation run"],
                  horizontal=True, key="gallery_source")
if source == "Generate from the prior":
    with st.form("generate"):
        c1, c2, c3 = st.columns(3)
        n = c1.number_input("Samples", value=9, step=1)
        seed = c2.number_input("Seed", value=0, step=1)
        steps = c3.number_input("Steps per noise level", value=state.default_sampler().n_step_each,
                                step=1)
        go_gen = st.form_submit_button("Generate", type="primary")
    if go_gen:
        if not (1 <= n <= 64 and 1 <= steps <= 200 and 0 <= seed < 2**63):
            st.error("Settings not accepted: samples 1..64, steps per level 1..200, seed >= 0.")
        else:
            z = torch.randn(int(n), ctx.model.cfg.latent_dim,
                            generator=torch.Generator().manual_seed(int(seed)))
            cfg = get_preset("interactive", n_step_each=int(steps))
            names = [f"sample_{i:05d}" for i in range(int(n))]
            result = run_decode(ctx.model, z, cfg, int(seed), f"Generating {n} samples",
                                names=names)
            if result is not None:
                # a failed decode (run_decode has said so) is left out of the gallery
                structures = result.structures()
                ok = [i for i, s in enumerate(structures) if s is not None]
                st.session_state["gallery"] = gallery.build(
                    [structures[i] for i in ok], [names[i] for i in ok], ctx, z[ok])
else:
    path = st.text_input("Folder, zip or extxyz of an evaluation run (on this machine)",
                         key="gallery_path")
    upload = st.file_uploader("...or upload a zip of CIFs / an extxyz / a CIF",
                              type=["zip", "xyz", "extxyz", "cif"], key="gallery_upload")
    if st.button("Open", key="gallery_open", disabled=not (path or upload)):
        try:
            with st.spinner("Reading and describing the samples..."):
                read = (gallery.read_upload(upload.name, upload.getvalue()) if upload
                        else gallery.read_run(Path(path).expanduser()))
                st.session_state["gallery"] = gallery.build(read[0], read[1], ctx, None, read[2])
        except (ValueError, OSError) as exc:
            st.error(f"Cannot open these samples: {exc}")

gal = st.session_state.get("gallery")
if gal is None:
    st.stop()
table = gal["table"]
c1, c2, c3, c4 = st.columns(4)
validity = c1.selectbox("Validity", ["all", "valid", "invalid"], key="gal_valid")
text = c2.text_input("Formula or name contains", key="gal_text")
sortable = [c for c in table.columns if c not in ("struct_reason", "comp_reason", "validity")]
sort = c3.selectbox("Sort by", sortable, key="gal_sort")
desc = c4.checkbox("Descending", key="gal_desc")
view = gallery.filtered(table, validity, text, sort, desc)
st.caption(f"{len(view)} of {len(table)} samples · valid: {int(table['valid'].sum())} · space "
           f"groups by spglib at tolerance {SPACEGROUP_SYMPREC} Å")
pages = max(1, -(-len(view) // PAGE))
page = st.number_input("Page", 1, pages, 1, key=f"gal_page_{gal['id']}") if pages > 1 else 1

cols = st.columns(3)
for k, i in enumerate(view.index[(page - 1) * PAGE: page * PAGE]):
    row, s = table.loc[i], gal["structures"][i]
    with cols[k % 3], st.container(border=True):
        st.markdown(f"**{row['formula']}** · {row['name']}")
        show_structure(s, height=200, key=f"gal_{gal['id']}_{i}")
        st.caption(f"SG {row['spacegroup']} (tol. {SPACEGROUP_SYMPREC} Å) · "
                   f"{row['density_g_cm3']:.2f} g/cm³ · {row['validity']}" + (f" · nearest test: {row['nearest_test']}"
                                           if "nearest_test" in row else ""))
        a, b = st.columns(2)
        a.checkbox("Select", key=f"gal_pick_{gal['id']}_{i}")
        if b.button("Open", key=f"gal_open_{gal['id']}_{i}"):
            z = gal["z"][i] if gal["z"] is not None else None
            st.session_state["focus"] = {"name": row["name"], "structure": s, "z": z}
            st.switch_page("pages/denoise.py")

with st.expander("Table"):
    st.caption(f"spacegroup: international number, spglib at tolerance {SPACEGROUP_SYMPREC} Å")
    st.dataframe(view, hide_index=True)
# checkboxes only cover the page on screen; with none ticked the download takes the filter
chosen = [i for i in view.index if st.session_state.get(f"gal_pick_{gal['id']}_{i}")] or list(
    view.index)
st.download_button(
    f"Download {len(chosen)} sample(s) as a zip of CIFs",
    gallery.cif_zip([gal["structures"][i] for i in chosen], [table["name"][i] for i in chosen]),
    "samples.zip", "application/zip", key="gal_zip", disabled=not chosen,
)
compare_panel(gal, ctx, list(view["name"]))
