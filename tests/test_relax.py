"""Relaxation with CHGNet (weights inside the package, so offline)."""

from __future__ import annotations

import math

import pytest

from cdvae_core import relax

from conftest import cubic_srtio3, rocksalt_nacl


@pytest.fixture
def offline(monkeypatch):
    pytest.importorskip("chgnet", reason="CHGNet not installed (pip install 'cdvae-core[relax]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_missing_package_gives_a_clear_error(no_chgnet):
    with pytest.raises(relax.RelaxationUnavailable, match="pip install"):
        relax.require_chgnet()
    with pytest.raises(relax.RelaxationUnavailable, match=r"cdvae-core\[relax\]"):
        relax.relax_structures([cubic_srtio3()])
    assert issubclass(relax.RelaxationUnavailable, ImportError)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        relax.relax_structures([cubic_srtio3()], fmax=0)
    with pytest.raises(ValueError):
        relax.relax_structures([cubic_srtio3()], steps=0)


def _result(rms: float, dv: float, converged: bool = True, error: str | None = None):
    s = cubic_srtio3()
    return relax.RelaxResult(s, -5.0, -4.9, rms, dv, 10, converged, error=error)


def test_summary_counts_structures_that_barely_move():
    results = [_result(0.01, 0.01), _result(0.5, 0.0), _result(0.01, 0.2, converged=False),
               _result(math.nan, math.nan, False, error="RuntimeError: boom")]
    summary = relax.relaxation_summary(results)
    assert summary["relaxed"] == 3 and summary["failed"] == 1
    # only the first moved less than 0.1 Å with less than 5 % volume change
    assert summary["fraction_barely_moving"] == pytest.approx(1 / 3)
    assert summary["fraction_converged"] == pytest.approx(2 / 3)
    assert summary["median_rms_displacement_A"] == pytest.approx(0.01)
    assert [r.barely_moved for r in results] == [True, False, False, False]
    assert relax.relaxation_summary([results[-1]]) == {"relaxed": 0, "failed": 1}


@pytest.mark.slow
def test_relaxing_a_small_structure_offline(offline):
    strained = cubic_srtio3(4.05)  # 3.7 % larger than the experimental cell
    strained.perturb(0.08, seed=0)
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


@pytest.mark.slow
def test_rattled_rocksalt_goes_downhill_and_then_stays_put(offline):
    model = relax.load_chgnet()  # loaded once, reused by both relaxations
    rattled = rocksalt_nacl()
    rattled.perturb(0.15, seed=1)
    (res,) = relax.relax_structures([rattled], fmax=0.05, steps=200, keep_every=1, model=model)
    assert res.error is None and res.converged
    assert res.energy_per_atom_eV <= res.initial_energy_per_atom_eV + 1e-6
    assert res.rms_displacement_A > 0.02  # the rattle is (partly) undone
    # the trajectory runs from the input to the result, one frame per optimiser step
    assert res.trajectory_steps == list(range(res.steps + 1))
    assert len(res.trajectory) == len(res.trajectory_energy_per_atom_eV) == res.steps + 1
    assert res.trajectory[0].frac_coords == pytest.approx(rattled.frac_coords, abs=1e-6)
    assert res.trajectory[-1].volume == pytest.approx(res.structure.volume, rel=1e-6)
    assert res.trajectory_energy_per_atom_eV[0] == pytest.approx(res.initial_energy_per_atom_eV)
    assert res.trajectory_energy_per_atom_eV[-1] == pytest.approx(res.energy_per_atom_eV)

    (again,) = relax.relax_structures([res.structure], fmax=0.05, steps=200, model=model)
    assert again.error is None and again.converged and again.barely_moved
    assert again.rms_displacement_A < 0.02 and abs(again.volume_change) < 0.01
    assert again.energy_per_atom_eV == pytest.approx(res.energy_per_atom_eV, abs=2e-3)
    assert again.steps <= res.steps


@pytest.mark.slow
def test_step_budget_is_respected(offline):
    rattled = rocksalt_nacl(5.9)
    rattled.perturb(0.2, seed=2)
    (res,) = relax.relax_structures([rattled], fmax=0.001, steps=3, keep_every=1)
    assert res.error is None and res.steps == 3 and not res.converged
    assert len(res.trajectory) == 4
