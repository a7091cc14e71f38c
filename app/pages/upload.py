"""Upload: parse a CIF, encode it, show it on the latent map and reconstruct it."""

from __future__ import annotations

import hashlib

import state
import streamlit as st
import torch
from components.cards import structure_details
from components.relaxation import relax_panel
from components.runs import run_decode
from components.structure_view import structure_view
from components.viewer import show_structure

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.io import structure_from_cif
from cdvae_core.metrics import rms_distance
from cdvae_core.model.decode import encode_dataset

MAX_CIF_BYTES = 2_000_000  # a CIF of at most a few dozen atoms is a few kB

ctx = state.context()
st.title("Upload a CIF")
st.caption(f"The {ctx.dataset.title} model takes ordered crystals of elements H..Fm with at "
           f"most {ctx.dataset.max_atoms} atoms.")
file = st.file_uploader("CIF file", type=["cif"], key="cif_file")
pasted = st.text_area("...or paste CIF text", key="cif_text", height=120)
if file is not None:
    raw, name = file.getvalue(), file.name.rsplit(".", 1)[0]
elif pasted.strip():
    raw, name = pasted.encode(), "pasted"
else:
    st.stop()
if len(raw) > MAX_CIF_BYTES:
    st.error(f"This file is {len(raw) / 1e6:.1f} MB: too large for a CIF of one small crystal.")
    st.stop()

try:
    structure = structure_from_cif(raw.decode("utf-8", errors="replace"), name)
    data = CrystalDataset.from_structures([structure], ctx.dataset, on_error="skip")
except Exception as exc:  # any parser failure is the file's fault, reported, never a traceback
    st.error(f"This CIF cannot be used: {exc}")
    st.stop()
if data.bad_rows:
    st.error(f"This CIF cannot be used: {data.bad_rows[0].reason}")
    st.stop()

digest = hashlib.sha1(raw).hexdigest()[:10]
z = encode_dataset(ctx.model, data)[0].cpu()  # [latent] latent mean
label = f"{structure.composition.reduced_formula} (upload {name})"
uploads = st.session_state.setdefault("uploads", [])
if all(u["digest"] != digest for u in uploads):
    uploads.append({"digest": digest, "label": label, "z": z})

left, right = st.columns(2)
with left:
    st.subheader("Uploaded")
    structure_view(structure, name, key="upload", height=360)
    structure_details(structure, name, key="upload")
    if st.button("Select its z (map, denoising, steering)", key="upload_select"):
        state.select_z(z, label, "upload")
        st.success("Selected: it is starred on the latent map.")
with right:
    st.subheader("Reconstruction")
    keep = st.checkbox("Keep the uploaded atoms (decode coordinates only)", key="upload_keep")
    seed = st.number_input("Sampler seed", 0, 2**31 - 1, 0, key="upload_seed")
    if st.button("Reconstruct", type="primary", key="upload_run"):
        batch = data.collate([0])
        extra = {"num_atoms": batch.num_atoms, "atom_types": batch.atom_types} if keep else {}
        result = run_decode(ctx.model, z, state.default_sampler(), int(seed), "Reconstructing",
                            **extra)
        if result is not None:
            st.session_state["recon"] = {"digest": digest, "structure": result.structures()[0]}
    recon = st.session_state.get("recon")
    if recon is not None and recon["digest"] == digest:
        show_structure(recon["structure"], "reconstruction", height=360, key="recon_viewer")
        rms = rms_distance(recon["structure"], structure)
        st.metric("Match (StructureMatcher)", "no match" if rms is None else f"RMS {rms:.3f}")
        structure_details(recon["structure"], f"{name}_reconstruction", key="recon")
recon = st.session_state.get("recon")
if recon is not None and recon["digest"] == digest:
    st.subheader("Relax the reconstruction")
    relax_panel(recon["structure"], f"{name}_reconstruction", key="recon")
st.caption(f"z norm {float(torch.linalg.norm(z)):.2f} (a prior draw has norm about "
           f"{ctx.model.cfg.latent_dim ** 0.5:.1f}).")
