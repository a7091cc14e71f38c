"""What the 3D viewer draws, computed in Python: a JSON-able *scene* of a crystal as a
crystallographer draws it (the app's component and the notebooks render it with the same
JavaScript, ``cdvae_core/resources/scene_renderer.js``).

A scene holds the atoms of the shown cell (the cell as generated, Niggli-reduced or the
conventional standard cell, optionally symmetrised, repeated 1-3 times per axis), the copies of
atoms lying on a face, edge or corner, the *image* atoms outside the cell that a bond from the
cell reaches, the bonds (those crossing a cell face included), coordination polyhedra, the cell
edges and a colour legend. Colours are VESTA's (pymatgen's table); ball radii are
0.25 Å + 0.3 x the covalent radius (Cordero et al. 2008). With polyhedra on, only the bonds of
polyhedron centres are drawn (the other contacts would hide the polyhedra).

Bonds: ``"covalent"`` (fast): a pair bonds when its distance is at most ``1.1 x`` the sum of
covalent radii; metal-metal pairs are skipped in a crystal that has non-metals (so a perovskite
shows its B-X and A-X bonds, not the cation-cation contacts). ``"crystalnn"``: pymatgen's
CrystalNN (slower, the neighbours the dataset's graphs use).

Atom rows: ``[element, x, y, z, site, kind, corner]`` (Å; ``site`` indexes the shown cell's
sites; ``kind`` 0 home, 1 copy on a face / edge / corner, 2 image reached by a bond; ``corner``
1 for an atom on a cell corner).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Structure

__all__ = ["BOND_METHODS", "CELL_CHOICES", "SceneOptions", "SceneError", "renderer_js",
           "scene_html", "shown_structure", "show_structures", "structure_scene",
           "symmetry_report", "trajectory_scenes", "COLOUR_CONVENTION"]

CELL_CHOICES = {"generated": "as generated", "niggli": "Niggli-reduced",
                "conventional": "conventional standard"}
BOND_METHODS = {
    "covalent": "covalent radii (Cordero) x 1.1, no metal-metal bonds beside non-metals",
    "crystalnn": "CrystalNN (pymatgen)",
    "none": "no bonds",
}
COLOUR_CONVENTION = "VESTA colours; balls 0.25 Å + 0.3 x covalent radius (Cordero 2008)"
SYMPREC_RANGE = (0.01, 0.5)  # Å
SUPERCELL_RANGE = (1, 3)
BOND_TOLERANCE = 1.1
_BOUNDARY_TOL = 0.02  # fractional: an atom this close to a face is also drawn on the opposite one
_RESOURCES = Path(__file__).resolve().parents[1] / "resources"


class SceneError(ValueError):
    """A view setting out of range, said in the user's terms."""


@dataclass(frozen=True)
class SceneOptions:
    """What to draw.

    supercell: repeats along a, b, c (1-3 each).
    cell: ``"generated"``, ``"niggli"`` or ``"conventional"`` (spglib through pymatgen).
    symprec: symmetry tolerance (Å, 0.01-0.5) of the conventional cell and the symmetrisation.
    symmetrized: show spglib's idealised (refined) structure instead of the raw one.
    bonds: ``"covalent"``, ``"crystalnn"`` or ``"none"``.
    polyhedra: draw coordination polyhedra (4-8 neighbours, all more electronegative).
    images: draw the atoms outside the cell that a bond of a site of the cell reaches.
    """

    supercell: tuple[int, int, int] = (1, 1, 1)
    cell: str = "generated"
    symprec: float = 0.1
    symmetrized: bool = False
    bonds: str = "covalent"
    polyhedra: bool = False
    images: bool = True

    def __post_init__(self):
        lo, hi = SUPERCELL_RANGE
        sc = tuple(self.supercell)
        if len(sc) != 3 or any(not float(n).is_integer() or not lo <= n <= hi for n in sc):
            raise SceneError(f"the supercell repeats each axis {lo} to {hi} times "
                             f"(got {' x '.join(str(n) for n in sc)})")
        object.__setattr__(self, "supercell", tuple(int(n) for n in sc))
        lo, hi = SYMPREC_RANGE
        if not (math.isfinite(self.symprec) and lo <= self.symprec <= hi):
            raise SceneError(f"the symmetry tolerance is {lo} to {hi} Å (got {self.symprec:g})")
        if self.cell not in CELL_CHOICES:
            raise SceneError(f"cell choice is one of {', '.join(CELL_CHOICES)} (got {self.cell!r})")
        if self.bonds not in BOND_METHODS:
            raise SceneError(f"bonds are one of {', '.join(BOND_METHODS)} (got {self.bonds!r})")

    def describe(self) -> str:
        """One line for the UI: cell, supercell, bonds."""
        cell = CELL_CHOICES[self.cell] + (" (symmetrised)" if self.symmetrized else "")
        sc = "x".join(map(str, self.supercell))
        return f"{cell} cell, {sc} · bonds: {BOND_METHODS[self.bonds]} · {COLOUR_CONVENTION}"


# ---------------------------------------------------------------------------- symmetry, cells
def _analyzer(structure: Structure, symprec: float):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(structure, symprec=symprec)


def symmetry_report(structure: Structure, symprec: float) -> dict:
    """Space group of ``structure`` at tolerance ``symprec`` (Å): ``{"symbol", "number",
    "crystal_system", "symprec"}``; symbol ``"?"`` and number None where spglib fails."""
    SceneOptions(symprec=symprec)  # validates the tolerance
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = _analyzer(structure, symprec)
            return {"symbol": sga.get_space_group_symbol(), "number": sga.get_space_group_number(),
                    "crystal_system": sga.get_crystal_system(), "symprec": symprec}
    except Exception:  # spglib gives up on some noisy cells: say so, do not fail the page
        return {"symbol": "?", "number": None, "crystal_system": "?", "symprec": symprec}


def shown_structure(structure: Structure, options: SceneOptions = SceneOptions()) -> Structure:
    """The structure the viewer shows: symmetrised or not, in the chosen cell, as a supercell,
    with fractional coordinates wrapped into [0, 1). This is what the view's CIF / POSCAR /
    extended XYZ export holds."""
    s = structure.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if options.symmetrized:
            s = _analyzer(s, options.symprec).get_refined_structure()
        if options.cell == "niggli":
            s = s.get_reduced_structure("niggli")
        elif options.cell == "conventional" and not options.symmetrized:
            s = _analyzer(s, options.symprec).get_conventional_standard_structure()
    if options.supercell != (1, 1, 1):
        s = s * options.supercell
    frac = np.mod(s.frac_coords, 1.0)
    frac[frac > 1.0 - 1e-9] = 0.0
    return Structure(s.lattice, s.species, frac, site_properties=s.site_properties or None)


# ---------------------------------------------------------------------------- colours, radii
@functools.cache
def _vesta_colours() -> dict[str, str]:
    import pymatgen.core
    from monty.serialization import loadfn

    yaml = Path(pymatgen.core.__file__).parents[1] / "vis" / "ElementColorSchemes.yaml"
    table = loadfn(yaml)["VESTA"]
    return {el: "#{:02x}{:02x}{:02x}".format(*rgb) for el, rgb in table.items()}


@functools.cache
def _covalent_radii() -> dict[str, float]:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return dict(CovalentRadius.radius)


def element_style(symbol: str) -> tuple[str, float]:
    """``(colour "#rrggbb", ball radius Å)`` of an element in the viewer's convention."""
    colour = _vesta_colours().get(symbol, "#ff1493")
    return colour, round(0.25 + 0.3 * _covalent_radii().get(symbol, 1.5), 3)


# ---------------------------------------------------------------------------- neighbours
Neighbours = list[list[tuple[int, tuple[int, int, int]]]]  # per site: (site, image)


def _covalent_neighbours(s: Structure) -> Neighbours:
    radii = _covalent_radii()
    syms = [site.specie.symbol for site in s]
    r = np.array([radii.get(x, 1.5) for x in syms])
    metal = np.array([bool(Element(x).is_metal) for x in syms])
    skip_metal_pairs = not metal.all()
    cutoff = BOND_TOLERANCE * 2.0 * float(r.max())
    centre, point, images, dist = s.get_neighbor_list(cutoff)
    keep = (dist <= BOND_TOLERANCE * (r[centre] + r[point])) & (dist > 0.1)
    if skip_metal_pairs:
        keep &= ~(metal[centre] & metal[point])
    out: Neighbours = [[] for _ in range(len(s))]
    for i, j, img in zip(centre[keep], point[keep], images[keep].astype(int), strict=True):
        out[int(i)].append((int(j), tuple(int(v) for v in img)))
    return out


def _crystalnn_neighbours(s: Structure) -> Neighbours:
    from pymatgen.analysis.local_env import CrystalNN

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = CrystalNN().get_all_nn_info(s)
    pairs: set[tuple[int, int, tuple[int, int, int]]] = set()
    for i, nbrs in enumerate(info):
        for n in nbrs:
            img = tuple(int(round(v)) for v in n["image"])
            pairs.add((i, int(n["site_index"]), img))
            pairs.add((int(n["site_index"]), i, tuple(-v for v in img)))  # symmetric
    out: Neighbours = [[] for _ in range(len(s))]
    for i, j, img in sorted(pairs):
        out[i].append((j, img))
    return out


def neighbours(s: Structure, method: str) -> Neighbours:
    """Bonded neighbours of every site of ``s`` as ``(site, lattice image)`` pairs."""
    if method == "none":
        return [[] for _ in range(len(s))]
    return _crystalnn_neighbours(s) if method == "crystalnn" else _covalent_neighbours(s)


# ---------------------------------------------------------------------------- the scene
def _face_offsets(frac: np.ndarray, tol: float) -> list[tuple[int, int, int]]:
    """Offsets (in cells) at which an atom at ``frac`` in [0, 1) also lies in the closed cell."""
    axes = []
    for f in frac:
        axes.append([0] + ([1] if f < tol else []) + ([-1] if f > 1.0 - tol else []))
    return [o for o in product(*axes) if o != (0, 0, 0)]


def _is_polyhedron_centre(i: int, nbrs: Neighbours, chi: np.ndarray) -> bool:
    """4-8 neighbours, all more electronegative than the centre (a cation among anions)."""
    n = nbrs[i]
    return 4 <= len(n) <= 8 and all(chi[j] > chi[i] for j, _ in n)


def _hull_faces(points: np.ndarray) -> list[list[int]]:
    """Triangles of the convex hull of ``points [k, 3]``, wound outward (local indices)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # flat or degenerate neighbour shell: no polyhedron
        return []
    faces = []
    for tri, eq in zip(hull.simplices, hull.equations, strict=True):
        a, b, c = points[tri]
        if np.dot(np.cross(b - a, c - a), eq[:3]) < 0:
            tri = tri[[0, 2, 1]]
        faces.append([int(v) for v in tri])
    return faces


def structure_scene(structure: Structure, options: SceneOptions = SceneOptions(),
                    label: str = "") -> dict:
    """The scene of ``structure`` under ``options`` (see the module docstring for its rows).

    Returns a JSON-able dict: ``atoms``, ``frac`` (per site of the shown cell), ``bonds``
    (pairs of atom rows), ``cross_bonds`` (indices into ``bonds`` of those crossing a cell
    face), ``polyhedra`` (``[centre row, [[a, b, c], ...]]``, faces wound outward), ``cell``
    (3 rows, Å), ``legend`` (``[element, colour, radius]``), ``styles`` (per element),
    ``label``, ``notes`` (convention, bonds method, cell) and ``n_sites``.
    """
    s = shown_structure(structure, options)
    frac = s.frac_coords  # [N, 3] in [0, 1)
    matrix = s.lattice.matrix
    syms = [site.specie.symbol for site in s]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noble gases have no electronegativity
        chi = np.array([x if math.isfinite(x) else 0.0
                        for x in (Element(e).X for e in syms)])
    nbrs = neighbours(s, options.bonds)
    centres = ({i for i in range(len(s)) if _is_polyhedron_centre(i, nbrs, chi)}
               if options.polyhedra else set())
    if centres:  # with polyhedra, only their bonds: the A-X contacts would hide them
        nbrs = [[(j, img) for j, img in n if i in centres or j in centres]
                for i, n in enumerate(nbrs)]

    rows: list[list] = []
    index: dict[tuple[int, tuple[int, int, int]], int] = {}

    def add(site: int, offset: tuple[int, int, int], kind: int) -> None:
        f = frac[site] + np.array(offset)
        corner = int(all(min(abs(v), abs(v - 1.0)) < _BOUNDARY_TOL for v in f))
        xyz = np.round(f @ matrix, 4).tolist()
        index[(site, offset)] = len(rows)
        rows.append([syms[site], *xyz, site, kind, corner])

    for i in range(len(s)):
        add(i, (0, 0, 0), 0)
    for i in range(len(s)):
        for o in _face_offsets(frac[i], _BOUNDARY_TOL):
            add(i, o, 1)
    if options.images:  # every bond of the cell's own sites is drawn whole, out of the cell too
        for i in range(len(s)):
            for j, img in nbrs[i]:
                if (j, img) not in index:
                    add(j, img, 2)

    bonds, cross = [], []
    seen: set[tuple[int, int]] = set()
    for (i, o), a in index.items():
        for j, img in nbrs[i]:
            b = index.get((j, tuple(p + q for p, q in zip(o, img, strict=True))))
            if b is None or a == b or (min(a, b), max(a, b)) in seen:
                continue
            seen.add((min(a, b), max(a, b)))
            if (rows[a][5] == 2) != (rows[b][5] == 2):
                cross.append(len(bonds))
            bonds.append([min(a, b), max(a, b)])

    polyhedra = []
    if options.polyhedra:
        for (i, o), a in index.items():
            if i not in centres:
                continue
            verts = [index.get((j, tuple(p + q for p, q in zip(o, img, strict=True))))
                     for j, img in nbrs[i]]
            if any(v is None for v in verts):
                continue  # part of its shell is not drawn (an image at the edge of the view)
            pts = np.array([rows[v][1:4] for v in verts])
            faces = _hull_faces(pts)
            if faces:
                polyhedra.append([a, [[verts[k] for k in f] for f in faces]])

    elements = sorted(set(syms), key=lambda e: Element(e).Z)
    styles = {e: element_style(e) for e in elements}
    return {
        "atoms": rows,
        "frac": np.round(frac, 4).tolist(),
        "n_sites": len(s),
        "bonds": bonds,
        "cross_bonds": cross,
        "polyhedra": polyhedra,
        "cell": np.round(matrix, 4).tolist(),
        "styles": {e: list(v) for e, v in styles.items()},
        "legend": [[e, *styles[e]] for e in elements],
        "label": label,
        "notes": {"convention": COLOUR_CONVENTION, "bonds": BOND_METHODS[options.bonds],
                  "cell": options.describe()},
    }


# ---------------------------------------------------------------------------- trajectories
def trajectory_scenes(result, crystal: int = 0, target: Structure | None = None,
                      options: SceneOptions = SceneOptions(images=False)) -> list[dict]:
    """One scene per saved frame of crystal ``crystal`` of a decode ``result``, with the
    sampler's physics per site of the (generated) cell:

    - ``arrows``: ``[x, y, z, dx, dy, dz]`` (Å), from the atom along ``sigma^2 x score``: the
      step towards the denoised position (Tweedie's formula), ``arrow_scale`` = sigma^2 (Å^2:
      Å of arrow per Å^-1 of score) printed beside it;
    - ``p``: probability of the atom's current element;
    - ``disp``: Cartesian displacement (Å, minimum image) from the previous frame (the renderer
      chains them into a fading trail of the last positions);
    - ``ghosts``: the ``target`` crystal's atoms ``[element, x, y, z]`` (a reconstruction).

    The cell is the generated one, not repeated (frames keep the sampler's site order).
    """
    from cdvae_core.explore.trajectory import _crystal_slice, frame_structures

    if options.cell != "generated" or options.supercell != (1, 1, 1) or options.symmetrized:
        raise SceneError("a trajectory is shown in its generated cell, not repeated")
    structures = frame_structures(result, crystal)
    sl = _crystal_slice(result.num_atoms, crystal)
    ghosts = None
    if target is not None:
        ghosts = [row[:4] for row in structure_scene(target, SceneOptions(bonds="none"))["atoms"]]
    scenes, prev = [], None
    for f, s in zip(result.frames, structures, strict=True):
        scene = structure_scene(s, options, f"step {f.step} · σ {f.sigma:.3g} Å")
        frac = f.frac_coords[sl].double().numpy()  # [n, 3]
        cart = frac @ s.lattice.matrix
        scale = float(f.sigma) ** 2
        score = (f.score[sl].double().numpy() if f.score is not None
                 else np.zeros_like(cart))  # [n, 3] Å^-1
        scene["arrows"] = np.round(np.hstack([cart, scale * score]), 4).tolist()
        scene["arrow_scale"] = scale
        types = f.atom_types[sl].long()
        if f.type_probs is not None:
            p = f.type_probs[sl].gather(1, (types - 1).clamp(min=0)[:, None])[:, 0]
            scene["p"] = np.round(p.double().numpy(), 3).tolist()
        d = np.zeros_like(frac) if prev is None else frac - prev
        d -= np.round(d)
        scene["disp"] = np.round(d @ s.lattice.matrix, 4).tolist()
        scene["step"], scene["sigma"] = int(f.step), float(f.sigma)
        if ghosts is not None:
            scene["ghosts"] = ghosts
        prev = frac
        scenes.append(scene)
    return scenes


# ---------------------------------------------------------------------------- notebooks
@functools.cache
def _renderer(mtime: float) -> str:
    return (_RESOURCES / "scene_renderer.js").read_text(encoding="utf-8")


def renderer_js() -> str:
    """Source of the scene renderer (the app's component injects it; notebooks embed it)."""
    path = _RESOURCES / "scene_renderer.js"
    return _renderer(path.stat().st_mtime)


def scene_html(scenes: list[dict], columns: int = 4, width: int = 260, height: int = 260,
               div_id: str = "cdvae-scenes", with_3dmol: bool = True) -> str:
    """Standalone HTML of a grid of scenes, with the renderer and (``with_3dmol``) the local
    3Dmol.js inline (no network: opens offline in a notebook or a browser). Without 3Dmol.js the
    HTML expects the page to have it (a :class:`~cdvae_core.explore.notebook_views.NotebookView`
    embeds it once per notebook)."""
    from cdvae_core.explore.offline import threedmol_js

    library = f"<script>{threedmol_js()}</script>" if with_3dmol else ""
    cols = max(1, min(columns, len(scenes)))
    cells = "".join(
        f'<div class="cdvae-cell" style="width:{width}px"><div id="{div_id}-{i}" '
        f'style="position:relative;width:{width}px;height:{height}px"></div>'
        f'<div id="{div_id}-{i}-legend" style="font-size:11px"></div></div>'
        for i in range(len(scenes)))
    data = json.dumps(scenes).replace("</", "<\\/")
    return (
        # at most ``cols`` per row, fewer where the output area is narrower (a notebook beside
        # its file browser): cells wrap to the next row instead of being cut off
        f'<div id="{div_id}" style="display:grid;grid-template-columns:repeat(auto-fill,'
        f'{width}px);gap:6px;max-width:{cols * width + (cols - 1) * 6}px">{cells}</div>'
        f"{library}<script>{renderer_js()}</script>"
        f"<script>(function(){{const scenes={data};scenes.forEach(function(s,i){{"
        f"CdvaeScene.standalone(document.getElementById('{div_id}-'+i),s,"
        f"document.getElementById('{div_id}-'+i+'-legend'));}});}})();</script>"
    )


def show_structures(structures, labels=None, options: SceneOptions = SceneOptions(),
                    columns: int = 4, width: int = 260, height: int = 260):
    """A grid of 3D views of ``structures`` in a notebook: the app's drawing (bonds across
    faces, image atoms, polyhedra, VESTA colours), offline (a
    :class:`~cdvae_core.explore.notebook_views.NotebookView`, which carries the local 3Dmol.js
    once per notebook)."""
    from cdvae_core.explore.notebook_views import NotebookView

    structures = list(structures)
    if not structures:
        raise ValueError("no structures to show")
    labels = list(labels) if labels is not None else [s.composition.reduced_formula
                                                     for s in structures]
    scenes = [structure_scene(s, options, label)
              for s, label in zip(structures, labels, strict=True)]
    uid = f"cdvae-{abs(hash(json.dumps([sc['atoms'] for sc in scenes]))) % 10**8}"
    return NotebookView(scene_html(scenes, columns, width, height, uid, with_3dmol=False),
                        atoms=sum(len(sc["atoms"]) for sc in scenes))
