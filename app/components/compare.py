"""The gallery's compare panel: a sample beside a nearest test crystal, in the same view
settings (cell choice, supercell, bonds) and the same starting orientation, with the
fingerprint distances of the evaluation (:mod:`cdvae_core.explore.compare`)."""

from __future__ import annotations

import pandas as pd
import state
import streamlit as st

from cdvae_core.explore import compare
from cdvae_core.explore import scene as scn
from components.structure_view import view_options
from components.viewer import show_structure


def _test_structure(ctx: state.Context, material_id: str):
    ids = list(ctx.test.table["material_id"].astype(str))  # in the test set's order
    return ctx.test.dataset.structure(ids.index(material_id))


def _distances(gal: dict, i: int, ctx: state.Context, ids: list[str]) -> pd.DataFrame:
    """Fingerprint distances of sample ``i`` to test crystals ``ids``, kept for the session."""
    cache = st.session_state.setdefault("compare_fp", {})
    key = (gal["id"], int(i), tuple(ids))
    if key not in cache:
        with st.spinner("Fingerprinting the sample and its candidates (CrystalNN, Magpie)..."):
            cache[key] = compare.fingerprint_distances(
                gal["structures"][i], [_test_structure(ctx, m) for m in ids])
    return cache[key]


def compare_panel(gal: dict, ctx: state.Context, names: list[str]) -> None:
    """Pick a sample (of ``names``, the gallery's filtered order) and compare it."""
    st.subheader("Compare with the nearest test crystal")
    if ctx.test is None:
        st.info("No test set is loaded (choose a data folder in the sidebar): there is no test "
                "crystal to compare with.")
        return
    if ctx.whole_test is None:
        st.info("The test set is still being prepared (see the sidebar): the nearest test "
                "crystal is searched for once all of it is loaded.")
        return
    if not names:
        st.info("No sample passes the filter: nothing to compare.")
        return
    table = gal["table"]
    name = st.selectbox("Sample", names, key=f"cmp_sample_{gal['id']}")
    i = int(table.index[table["name"] == name][0])
    row = table.loc[i].to_dict()
    nearest = row.get("nearest_test")  # "formula (material_id)" of the element-fraction search
    comp_id = nearest.rsplit("(", 1)[-1].rstrip(")") if isinstance(nearest, str) else None
    candidates = compare.candidate_ids(row, comp_id, list(ctx.test.table["material_id"]))
    if not candidates:
        st.info("No test crystal was named as nearest to this sample.")
        return
    ids = list(candidates)
    dist = _distances(gal, i, ctx, ids)
    ref = ctx.test.table.set_index(ctx.test.table["material_id"].astype(str))
    shown = pd.DataFrame({
        "material_id": ids, "formula": [ref["formula"][m] for m in ids],
        "named as": ["; ".join(candidates[m]) for m in ids],
        "structure fingerprint distance": dist["struct_dist"],
        "composition fingerprint distance": dist["comp_dist"]})
    by_struct = [m for m, f in zip(ids, dist["nearest_struct"], strict=True) if f]
    by_comp = [m for m, f in zip(ids, dist["nearest_comp"], strict=True) if f]
    pick = st.selectbox("Test crystal shown", ids, key=f"cmp_ref_{gal['id']}_{i}",
                        index=ids.index(by_struct[0]) if by_struct else 0,
                        format_func=lambda m: f"{ref['formula'][m]} ({m})")
    k = ids.index(pick)
    st.markdown(
        f"Structure fingerprint distance **{dist['struct_dist'][k]:.3f}**, composition "
        f"fingerprint distance **{dist['comp_dist'][k]:.3f}** (Euclidean; CrystalNN and "
        f"standardised Magpie fingerprints, as in the coverage metrics). Nearest by structure: "
        f"**{', '.join(by_struct) or 'none (no fingerprint)'}**; by composition: "
        f"**{', '.join(by_comp) or 'none (no fingerprint)'}**"
        + (" (over the whole test set, per the evaluation)" if "nearest_struct_ref_id" in row
           else " (among these candidates)") + ".")
    st.dataframe(shown, hide_index=True)
    opts = view_options(f"cmp_{gal['id']}")
    left, right = st.columns(2)
    for col, structure, label, key in (
            (left, gal["structures"][i], f"{row['name']} · {row.get('formula', '')}", "cmp_a"),
            (right, _test_structure(ctx, pick),
             f"test {ref['formula'][pick]} ({pick})", "cmp_b")):
        with col:
            try:
                shown_s = scn.shown_structure(structure, opts)
            except Exception as exc:  # spglib fails on some noisy cells
                st.warning(f"This cell choice failed here ({exc}); shown as given.")
                shown_s = structure
            show_structure(shown_s, label, height=340, key=f"{key}_{gal['id']}",
                           options=scn.SceneOptions(bonds=opts.bonds, polyhedra=opts.polyhedra,
                                                    images=opts.images))
    st.caption(f"Both in the same view settings: {opts.describe()}; both open in the same "
               "orientation (a along x, the same turn off the face-on view).")
