"""Structure and composition validity, the two checks of the paper's Section 5 (after Court et
al., 2020).

* Structure validity: every interatomic distance, periodic images included (an atom and its
  own images too), is at least 0.5 Å, and the cell volume is at least 0.1 Å^3.
* Composition validity: SMACT charge neutrality with the Pauling electronegativity test.

Both return ``(valid, reason)`` where ``reason`` is ``None`` for a valid input and otherwise a
sentence naming what failed, so a per-sample table can say *why* a sample is invalid.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import smact
from pymatgen.core import Composition, Element, Structure
from smact.screening import pauling_test

__all__ = [
    "MIN_DISTANCE",
    "MIN_VOLUME",
    "OxidationStateSet",
    "structure_validity",
    "composition_validity",
    "composition_key",
]

MIN_DISTANCE = 0.5  # Å
MIN_VOLUME = 0.1  # Å^3

#: ``"icsd24"``: SMACT 4 default ``Element.oxidation_states`` (ICSD 2024, states with more than
#: 5 reports, file ``oxidation_states_icsd24_filtered.txt``). ``"smact14"``: the hand-compiled
#: list that was SMACT's default before 3.0, which the paper used.
OxidationStateSet = Literal["icsd24", "smact14"]


def structure_validity(
    structure: Structure | None, cutoff: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME
) -> tuple[bool, str | None]:
    """Is every periodic interatomic distance >= ``cutoff`` and the volume >= ``min_volume``?

    Distances are taken over all periodic images, so two atoms close across a cell face, and an
    atom close to its own image (a lattice vector shorter than ``cutoff``), both fail.

    Args:
        structure: the crystal; ``None`` (a failed decode) is invalid.
        cutoff: smallest allowed distance (Å).
        min_volume: smallest allowed cell volume (Å^3).

    Returns:
        ``(True, None)`` or ``(False, reason)``, the reason naming the closest offending pair.
    """
    if structure is None:
        return False, "no structure (decoding failed)"
    if len(structure) == 0:
        return False, "structure has no atoms"
    matrix = structure.lattice.matrix
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(structure.frac_coords))):
        return False, "lattice or coordinates contain NaN or infinity"
    volume = abs(float(np.linalg.det(matrix)))
    if volume < min_volume:
        # Checked before the neighbour search, which would enumerate a huge number of images
        # for a nearly flat cell.
        return False, f"cell volume {volume:.3g} Å^3 is below {min_volume} Å^3"
    # pymatgen's neighbour list searches every periodic image within the cutoff (exact for any
    # cell shape, unlike a minimum-image distance matrix) and keeps coincident distinct atoms;
    # it only drops an atom paired with itself at distance zero.
    centres, neighbours, _, distances = structure.get_neighbor_list(r=cutoff)
    close = distances < cutoff
    if not np.any(close):
        return True, None
    k = int(np.argmin(np.where(close, distances, np.inf)))
    i, j, d = int(centres[k]), int(neighbours[k]), float(distances[k])
    if i == j:
        return False, f"atom {i} is {d:.3f} Å from its own periodic image (< {cutoff} Å)"
    i, j = min(i, j), max(i, j)
    return False, f"atoms {i} and {j} are {d:.3f} Å apart (< {cutoff} Å)"


CompositionLike = Composition | Mapping[str | int, float] | Iterable[str | int] | str


def composition_key(composition: CompositionLike) -> tuple[tuple[str, float], ...]:
    """Sorted ``((symbol, count), ...)`` of a composition in any accepted form.

    Args:
        composition: a pymatgen :class:`Composition`, a formula string (``"SrTiO3"``), a
            mapping element -> count, or one element per atom (symbols or atomic numbers, e.g.
            the ``atom_types`` of a generated crystal).
    """
    if isinstance(composition, str):
        composition = Composition(composition)
    if isinstance(composition, Composition):
        counts: Mapping = {el.symbol: amt for el, amt in composition.element_composition.items()}
    elif isinstance(composition, Mapping):
        counts = composition
    else:
        counts = Counter(composition)
    out: dict[str, float] = {}
    for element, amount in counts.items():
        symbol = _symbol(element)
        out[symbol] = out.get(symbol, 0.0) + float(amount)
    return tuple(sorted(out.items()))


def _symbol(element: str | int | Element) -> str:
    if isinstance(element, Element):
        return element.symbol
    if isinstance(element, int | np.integer):
        # Element.from_Z raises for Z outside the table; return a marker the check reports.
        return Element.from_Z(int(element)).symbol if 1 <= int(element) <= 118 else f"Z={element}"
    return str(element)


def composition_validity(
    composition: CompositionLike, oxidation_states: OxidationStateSet = "icsd24"
) -> tuple[bool, str | None]:
    """SMACT charge-neutrality and Pauling electronegativity check of a composition.

    Protocol of the CDVAE evaluation (REFERENCE.md "Evaluation protocol"):

    1. A single-element material is valid; a material made only of metals (``smact.metals``)
       is valid (alloys, intermetallics).
    2. The element counts are divided by their gcd; each element takes one oxidation state
       from its list (no mixed valence), and the combination must give zero total charge with
       exactly these counts (``smact.neutral_ratios`` with the counts as the only allowed
       stoichiometry and the largest count as threshold).
    3. A charge-neutral combination must also pass ``smact.screening.pauling_test``: every
       cation less electronegative than every anion (Pauling scale). With SMACT 4 an element
       without a Pauling electronegativity (He, Ne, Ar, Pm, Rn, Lr) fails this test.

    Oxidation-state set: by default (``"icsd24"``) SMACT 4.0's default
    ``smact.Element.oxidation_states``, i.e. the ICSD 2024 states with more than 5 reports
    (``oxidation_states_icsd24_filtered.txt``). This is *not* the ``consensus=3`` list that
    ``smact.screening.smact_validity`` applies by default, and not the pre-3.0 SMACT default
    (``"smact14"``, ``Element.oxidation_states_smact14``) the paper used. On Perov-5 test.csv
    the two give 98.31% and 98.60% (the paper's 98.59%).

    Args:
        composition: anything :func:`composition_key` accepts.
        oxidation_states: which oxidation-state list to use (see above).

    Returns:
        ``(True, None)`` or ``(False, reason)``.
    """
    return _composition_validity_cached(composition_key(composition), oxidation_states)


@functools.lru_cache(maxsize=1 << 16)
def _composition_validity_cached(
    key: tuple[tuple[str, float], ...], oxidation_states: OxidationStateSet
) -> tuple[bool, str | None]:
    # Generated samples repeat compositions many times over; the product over oxidation states
    # below is the expensive part, so results are cached per (composition, state set).
    if not key:
        return False, "empty composition"
    symbols = [symbol for symbol, _ in key]
    unknown = [s for s in symbols if s not in _smact_symbols()]
    if unknown:
        return False, f"element(s) {', '.join(unknown)} not known to SMACT"
    amounts = [amount for _, amount in key]
    if any(a <= 0 or not float(a).is_integer() for a in amounts):
        return False, f"counts {amounts} are not positive integers"
    if len(symbols) == 1:
        return True, None
    if all(s in smact.metals for s in symbols):
        return True, None

    counts = [int(a) for a in amounts]
    divisor = math.gcd(*counts)
    counts = [c // divisor for c in counts]
    formula = Composition(dict(zip(symbols, counts, strict=True))).reduced_formula
    elements = [_smact_element(s) for s in symbols]
    state_lists = [_oxidation_states(el, oxidation_states) for el in elements]
    missing = [s for s, states in zip(symbols, state_lists, strict=True) if not states]
    if missing:
        return False, (
            f"{formula}: {', '.join(missing)} has no oxidation states in the {oxidation_states} set"
        )
    electronegativities = [el.pauling_eneg for el in elements]

    stoichs = [(c,) for c in counts]
    neutral_found = False
    for states in itertools.product(*state_lists):
        if not smact.neutral_ratios(states, stoichs=stoichs, threshold=max(counts)):
            continue
        neutral_found = True
        if pauling_test(states, electronegativities):
            return True, None
    if neutral_found:
        return False, (
            f"{formula}: every charge-neutral set of oxidation states fails the Pauling "
            "electronegativity test"
        )
    return False, f"{formula}: no charge-neutral set of oxidation states ({oxidation_states} set)"


@functools.cache
def _smact_symbols() -> frozenset[str]:
    return frozenset(smact.ordered_elements(1, 103))


@functools.cache
def _smact_element(symbol: str) -> smact.Element:
    # Building a smact.Element reads several data tables; one per element per process is enough.
    return smact.Element(symbol)


def _oxidation_states(element: smact.Element, which: OxidationStateSet) -> list[int]:
    if which == "icsd24":
        states = element.oxidation_states
    elif which == "smact14":
        states = element.oxidation_states_smact14
    else:
        raise ValueError(f"unknown oxidation-state set {which!r}; use 'icsd24' or 'smact14'")
    return list(states or [])
