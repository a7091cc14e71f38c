"""Relaxation with CHGNet (weights inside the package, so offline)."""

from __future__ import annotations

import builtins
import sys

import pytest

from cdvae_core import relax

from conftest import cubic_srtio3


def test_missing_package_gives_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("chgnet"):
            raise ImportError("No module named 'chgnet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for mod in [m for m in sys.modules if m.startswith("chgnet")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(relax.RelaxationUnavailable, match="pip install"):
        relax.relax_structures([cubic_srtio3()])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        relax.relax_structures([cubic_srtio3()], fmax=0)


@pytest.mark.slow
def test_relaxing_a_small_structure_offline(monkeypatch):
    pytest.importorskip("chgnet", reason="CHGNet not installed (pip install 'cdvae-core[relax]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    strained = cubic_srtio3(4.05)  # 3.7 % larger than the experimental cell
    strained.perturb(0.08)
    (res,) = relax.relax_structures([strained], fmax=0.1, steps=100, keep_every=2)
    assert res.error is None
    assert res.energy_per_atom_eV < res.initial_energy_per_atom_eV
    assert res.volume_change < 0  # the cell shrinks toward equilibrium
    assert res.trajectory[0].lattice.a == pytest.approx(4.05, rel=1e-3)
    assert len(res.trajectory) >= 2
    summary = relax.relaxation_summary([res])
    assert summary["relaxed"] == 1 and 0.0 <= summary["fraction_barely_moving"] <= 1.0
    # an already relaxed structure barely moves
    (again,) = relax.relax_structures([res.structure], fmax=0.1, steps=50)
    assert again.rms_displacement_A < 0.05
