// Renderer of the scenes of cdvae_core.explore.scene with 3Dmol.js: one drawing for the app's
// viewer component and for the notebooks' standalone HTML. It reports what it drew on
// `report` (an element's dataset: atoms, bonds, cross-bonds, polyhedra, arrows, ...) so tests
// read the viewer's own account.
(function (global) {
  "use strict";
  const xyz = (p) => ({ x: p[0], y: p[1], z: p[2] });
  const add = (p, q) => [p[0] + q[0], p[1] + q[1], p[2] + q[2]];
  const sub = (p, q) => [p[0] - q[0], p[1] - q[1], p[2] - q[2]];
  const KIND = { home: 0, face: 1, image: 2 };

  function mixHex(hex, t, to) {
    // hex mixed with `to` (default white) by t in [0, 1]
    const c = parseInt(hex.slice(1), 16), d = parseInt((to || "#ffffff").slice(1), 16);
    const ch = (v, s) => (v >> s) & 255;
    const m = (s) => Math.round(ch(c, s) * (1 - t) + ch(d, s) * t);
    return "#" + ((m(16) << 16) | (m(8) << 8) | m(0)).toString(16).padStart(6, "0");
  }

  function inverse3(m) {
    const [a, b, c] = m;
    const det = a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0]) +
                a[2] * (b[0] * c[1] - b[1] * c[0]);
    const inv = [
      [b[1] * c[2] - b[2] * c[1], a[2] * c[1] - a[1] * c[2], a[1] * b[2] - a[2] * b[1]],
      [b[2] * c[0] - b[0] * c[2], a[0] * c[2] - a[2] * c[0], a[2] * b[0] - a[0] * b[2]],
      [b[0] * c[1] - b[1] * c[0], a[1] * c[0] - a[0] * c[1], a[0] * b[1] - a[1] * b[0]]];
    return inv.map((r) => r.map((v) => v / det));
  }

  function toFrac(p, inv) {  // row vector p [3] times inv [3x3]
    return [0, 1, 2].map((k) => p[0] * inv[0][k] + p[1] * inv[1][k] + p[2] * inv[2][k]);
  }

  // What a drawing keeps between the frames of a trajectory (on the viewer): the atoms' model,
  // moved in place while a frame has as many atom rows as the last one; the cell edges and the
  // ghosts, kept while unchanged; the arrows, trails and polyhedra as one shape each. A frame
  // then costs one render of the canvas and no rebuilt objects (benchmarks/bench_viewer.py).
  function stateOf(viewer) {
    if (!viewer.cdvaeState) viewer.cdvaeState = { labels: new Set() };
    return viewer.cdvaeState;
  }

  function replaceShape(viewer, st, name, build, spec) {
    if (st[name]) viewer.removeShape(st[name]);
    st[name] = null;
    const shape = viewer.addShape(spec || {});
    const n = build(shape);
    if (n) st[name] = shape; else viewer.removeShape(shape);
    return n;
  }

  function drawCell(viewer, st, cell) {
    const key = JSON.stringify(cell || null);
    if (key === st.cellKey) return;
    st.cellKey = key;
    replaceShape(viewer, st, "cellShape", (shape) => {
      if (!cell) return 0;
      const [a, b, c] = cell;
      const k = { o: [0, 0, 0], a: a, b: b, c: c, ab: add(a, b), ac: add(a, c), bc: add(b, c),
                  abc: add(add(a, b), c) };
      const edges = [["o", "a"], ["o", "b"], ["o", "c"], ["a", "ab"], ["a", "ac"], ["b", "ab"],
                     ["b", "bc"], ["c", "ac"], ["c", "bc"], ["ab", "abc"], ["ac", "abc"],
                     ["bc", "abc"]];
      for (const [p, q] of edges) {
        shape.addCylinder({ start: xyz(k[p]), end: xyz(k[q]), radius: 0.03, color: "#444444",
                            fromCap: 1, toCap: 1 });
      }
      return edges.length;
    });
  }

  function atomColour(scene, row, opts) {
    const [el, , , , site, kind] = row;
    let colour = (scene.styles[el] || ["#ff1493"])[0];
    if (opts.shade && scene.p) colour = mixHex(colour, 1 - scene.p[site], "#e8e8e8");
    return kind === KIND.image ? mixHex(colour, 0.45) : colour;
  }

  function drawPolyhedra(viewer, st, scene, opts, report) {
    const polys = opts.polyhedra !== false ? scene.polyhedra || [] : [];
    let faces = 0;
    const vertices = [];
    replaceShape(viewer, st, "polyShape", (shape) => {
      for (const [centre, tris] of polys) {
        const colour = (scene.styles[scene.atoms[centre][0]] || ["#888888"])[0];
        const vertexArr = [], normalArr = [], faceArr = [];
        const corners = new Set();
        for (const tri of tris) {
          const [p, q, r] = tri.map((i) => scene.atoms[i].slice(1, 4));
          tri.forEach((i) => corners.add(i));
          const u = sub(q, p), v = sub(r, p);
          const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
          const len = Math.hypot(n[0], n[1], n[2]) || 1;
          const base = vertexArr.length;
          for (const w of [p, q, r]) { vertexArr.push(xyz(w)); normalArr.push(xyz(n.map((x) => x / len))); }
          faceArr.push(base, base + 1, base + 2);
        }
        shape.addCustom({ vertexArr: vertexArr, normalArr: normalArr, faceArr: faceArr,
                          color: colour });
        faces += tris.length;
        vertices.push(scene.atoms[centre][0] + ":" + corners.size + ":" + tris.length);
      }
      return polys.length;
    }, { opacity: 0.55 });
    report.polyhedra = String(polys.length);
    report.polyFaces = String(faces);
    report.polyShapes = vertices.join(" ");  // element:vertices:faces of each polyhedron
  }

  function drawArrows(viewer, st, scene, opts, report) {
    report.arrows = String(replaceShape(viewer, st, "arrowShape", (shape) => {
      let n = 0;
      if (!(opts.arrows && scene.arrows)) return n;
      const gain = opts.arrowGain || 1;
      for (const [x, y, z, dx, dy, dz] of scene.arrows) {
        const len = Math.hypot(dx, dy, dz) * gain;
        if (!(len > 1e-3)) continue;
        shape.addArrow({ start: { x: x, y: y, z: z },
                         end: { x: x + gain * dx, y: y + gain * dy, z: z + gain * dz },
                         radius: 0.05, radiusRatio: 2.2, mid: Math.max(0.5, 1 - 0.35 / len),
                         color: "#d62728" });
        n += 1;
      }
      return n;
    }));
  }

  function drawTrails(viewer, st, scenes, index, opts, report) {
    // the last k positions of each site: the frame's position minus the chained displacements;
    // older segments fade towards white (one opaque shape: no sorting of transparent objects).
    // Without antialiasing (a CPU rasteriser) they are lines: 80 cylinders of an MP-20 cell's
    // 4-frame trail would double the time of a frame there.
    const k = opts.trail || 0;
    const lines = st.antialias === false;
    report.trailStyle = lines ? "lines" : "cylinders";
    const scene = scenes[index];
    report.trails = String(replaceShape(viewer, st, "trailShape", (shape) => {
      let n = 0;
      if (!(k > 0 && scene.arrows && scene.disp)) return n;
      scene.arrows.forEach((a, site) => {
        let p = a.slice(0, 3);
        for (let j = 0; j < k && index - j > 0; j++) {
          const d = scenes[index - j].disp[site];
          const q = sub(p, d);
          if (Math.hypot(d[0], d[1], d[2]) > 1e-4) {
            const colour = mixHex("#1f77b4", 0.15 + 0.85 * j / k);
            if (lines) shape.addLine({ start: xyz(p), end: xyz(q), color: colour });
            else shape.addCylinder({ start: xyz(p), end: xyz(q), radius: 0.045, color: colour });
            n += 1;
          }
          p = q;
        }
      });
      return n;
    }));
  }

  function drawGhosts(viewer, st, scene, opts, report) {
    const ghosts = opts.ghosts && scene.ghosts && scene.ghosts.length ? scene.ghosts : null;
    const key = ghosts ? JSON.stringify(ghosts) : null;
    if (key !== st.ghostKey) {
      if (st.ghostModel) viewer.removeModel(st.ghostModel);
      st.ghostModel = null;
      st.ghostKey = key;
      if (ghosts) {
        st.ghostModel = viewer.addModel();
        st.ghostModel.addAtoms(ghosts.map(([el, x, y, z]) => ({
          elem: el, x: x, y: y, z: z, color: (scene.styles[el] || ["#999999"])[0],
          style: { sphere: { radius: 0.5, opacity: 0.25 } } })));
      }
    }
    report.ghosts = String(ghosts ? ghosts.length : 0);
  }

  function hoverText(scene, atom) {
    const f = toFrac([atom.x, atom.y, atom.z], inverse3(scene.cell));
    const kind = ["", " (on a face)", " (image)"][atom.properties.kind];
    return atom.elem + " · site " + atom.properties.site + kind + " · frac (" +
           f.map((v) => v.toFixed(3)).join(", ") + ")";
  }

  function atomSpecs(scene, rows, bonds, nBonds, opts) {
    return rows.map((r, i) => {
      const radius = (scene.styles[r[0]] || [null, 0.5])[1] * (r[5] === KIND.image ? 0.75 : 1);
      return { elem: r[0], x: r[1], y: r[2], z: r[3], index: i, serial: i, bonds: bonds[i],
               bondOrder: bonds[i].map(() => 1), color: atomColour(scene, r, opts),
               properties: { site: r[4], kind: r[5], corner: r[6] },
               style: nBonds && opts.style !== "spheres"
                 ? { sphere: { radius: radius }, stick: { radius: 0.09 } }
                 : { sphere: { radius: opts.style === "spheres" ? 1.8 * radius : radius } } };
    });
  }

  function drawAtoms(viewer, st, scene, rows, bonds, nBonds, opts) {
    // a new model when the number of rows changes; otherwise the atoms move in place (their
    // element, bonds, style and colour too) and setColorByFunction marks the model for redrawing
    const specs = atomSpecs(scene, rows, bonds, nBonds, opts);
    st.scene = scene;  // what the hover labels describe
    if (st.model && st.nRows === specs.length) {
      const atoms = st.model.selectedAtoms({});
      atoms.forEach((atom, i) => {
        const s = specs[i];
        for (const f of ["elem", "x", "y", "z", "bonds", "bondOrder", "properties", "style"]) atom[f] = s[f];
      });
      st.model.setColorByFunction({}, (atom) => specs[atom.index].color);
      return "moved";
    }
    if (st.model) viewer.removeModel(st.model);
    st.model = viewer.addModel();
    st.nRows = specs.length;
    st.model.addAtoms(specs);
    st.model.setHoverable({}, true, (atom, v) => {
      if (!atom.label) {
        atom.label = v.addLabel(hoverText(st.scene, atom), { position: atom, fontSize: 11,
          fontColor: "black", backgroundColor: "white", backgroundOpacity: 0.85,
          borderColor: "#999999", borderThickness: 0.5, inFront: true });
        st.labels.add(atom);
      }
    }, (atom, v) => {
      if (atom.label) { v.removeLabel(atom.label); delete atom.label; st.labels.delete(atom); }
    });
    return "built";
  }

  // Draws scenes[index] into a 3Dmol viewer; returns the report (also written to `reportEl`).
  // Between frames only what changed is rebuilt, and the canvas is rendered once.
  function draw(viewer, scenes, index, opts, reportEl) {
    const t0 = performance.now();
    const scene = scenes[index];
    opts = opts || {};
    const st = stateOf(viewer);
    for (const atom of st.labels) { viewer.removeLabel(atom.label); delete atom.label; }
    st.labels.clear();
    const rows = scene.atoms.filter((r) => opts.images !== false || r[5] !== KIND.image);
    const keep = new Map();
    scene.atoms.forEach((r, i) => { if (opts.images !== false || r[5] !== KIND.image) keep.set(i, keep.size); });
    const bonds = rows.map(() => []);
    let nBonds = 0, nCross = 0;
    const cross = new Set(scene.cross_bonds || []);
    (scene.bonds || []).forEach(([a, b], k) => {
      if (!keep.has(a) || !keep.has(b)) return;
      bonds[keep.get(a)].push(keep.get(b));
      nBonds += 1;
      if (cross.has(k)) nCross += 1;
    });
    const report = { model: drawAtoms(viewer, st, scene, rows, bonds, nBonds, opts),
                     antialias: st.antialias === undefined ? "unknown" : String(st.antialias) };
    drawCell(viewer, st, scene.cell);
    drawPolyhedra(viewer, st, scene, opts, report);
    drawArrows(viewer, st, scene, opts, report);
    drawTrails(viewer, st, scenes, index, opts, report);
    drawGhosts(viewer, st, scene, opts, report);
    const elements = {};
    let corners = 0, images = 0;
    for (const r of rows) {
      if (r[5] !== KIND.image) elements[r[0]] = (elements[r[0]] || 0) + 1;
      if (r[6] && r[5] !== KIND.image) corners += 1;
      if (r[5] === KIND.image) images += 1;
    }
    if (opts.resetView) {
      viewer.zoomTo();
      viewer.zoom(1.1);
      viewer.rotate(-20, "x");  // off the face-on view, where atoms of a cubic cell hide each other
      viewer.rotate(25, "y");
    }
    viewer.render();
    Object.assign(report, {
      atoms: String(rows.length), cellAtoms: String(scene.n_sites), images: String(images),
      corners: String(corners), elements: JSON.stringify(elements), bonds: String(nBonds),
      crossBonds: String(nCross), frame: String(index),
      updateMs: (performance.now() - t0).toFixed(2) });
    if (reportEl) Object.assign(reportEl.dataset, report);
    return report;
  }

  function legendHtml(scene) {
    const chips = (scene.legend || []).map(([el, colour]) =>
      '<span style="display:inline-block;margin-right:8px;white-space:nowrap">' +
      '<span style="display:inline-block;width:10px;height:10px;border-radius:50%;' +
      "border:1px solid #888;margin-right:3px;vertical-align:-1px;background:" + colour +
      '"></span>' + el + "</span>").join("");
    const note = scene.notes ? '<span style="color:#777">' + scene.notes.convention + "</span>" : "";
    return chips + note;
  }

  function softwareWebGL() {
    // the unmasked renderer string names a CPU rasteriser (SwiftShader, llvmpipe) when the
    // browser has no GPU
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
      const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : "";
      return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
    } catch (e) {
      return false;
    }
  }

  // A 3Dmol viewer in `el`: antialiased (3Dmol then renders at twice the resolution, with
  // multisampling) on a GPU; not on a CPU rasteriser, where that costs 5-10x per frame
  // (about 250 ms against 35 ms for a 600 x 460 view in headless Chromium's SwiftShader).
  function createViewer(el) {
    const antialias = !softwareWebGL();
    const viewer = $3Dmol.createViewer(el, { backgroundColor: "white", antialias: antialias });
    stateOf(viewer).antialias = antialias;
    return viewer;
  }

  // A self-contained view of one scene (notebooks, exported HTML).
  function standalone(el, scene, legendEl, opts) {
    const viewer = createViewer(el);
    const report = draw(viewer, [scene], 0, Object.assign({ resetView: true }, opts || {}), el);
    if (scene.label) {
      // A screen label needs all three coordinates: 3Dmol skips one whose z is undefined.
      viewer.addLabel(scene.label, { useScreen: true, position: { x: 5, y: 5, z: 0 },
        alignment: "topLeft", fontSize: 12, fontColor: "black", backgroundColor: "white",
        backgroundOpacity: 0.7 });
      viewer.render();
    }
    if (legendEl) legendEl.innerHTML = legendHtml(scene);
    return report;
  }

  global.CdvaeScene = { draw: draw, standalone: standalone, legendHtml: legendHtml,
                        createViewer: createViewer };
})(typeof window !== "undefined" ? window : this);
