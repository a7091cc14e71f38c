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

  function drawCell(viewer, cell) {
    const [a, b, c] = cell;
    const o = [0, 0, 0];
    const k = { o: o, a: a, b: b, c: c, ab: add(a, b), ac: add(a, c), bc: add(b, c),
                abc: add(add(a, b), c) };
    const edges = [["o", "a"], ["o", "b"], ["o", "c"], ["a", "ab"], ["a", "ac"], ["b", "ab"],
                   ["b", "bc"], ["c", "ac"], ["c", "bc"], ["ab", "abc"], ["ac", "abc"],
                   ["bc", "abc"]];
    for (const [p, q] of edges) {
      viewer.addCylinder({ start: xyz(k[p]), end: xyz(k[q]), radius: 0.03, color: "#444444",
                           fromCap: 1, toCap: 1 });
    }
  }

  function atomColour(scene, row, opts) {
    const [el, , , , site, kind] = row;
    let colour = (scene.styles[el] || ["#ff1493"])[0];
    if (opts.shade && scene.p) colour = mixHex(colour, 1 - scene.p[site], "#e8e8e8");
    return kind === KIND.image ? mixHex(colour, 0.45) : colour;
  }

  function drawPolyhedra(viewer, scene, report) {
    let faces = 0;
    const vertices = [];
    for (const [centre, tris] of scene.polyhedra || []) {
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
      viewer.addCustom({ vertexArr: vertexArr, normalArr: normalArr, faceArr: faceArr,
                         color: colour, opacity: 0.55 });
      faces += tris.length;
      vertices.push(scene.atoms[centre][0] + ":" + corners.size + ":" + tris.length);
    }
    report.polyhedra = String((scene.polyhedra || []).length);
    report.polyFaces = String(faces);
    report.polyShapes = vertices.join(" ");  // element:vertices:faces of each polyhedron
  }

  function drawArrows(viewer, scene, opts, report) {
    let n = 0;
    if (opts.arrows && scene.arrows) {
      const gain = opts.arrowGain || 1;
      for (const [x, y, z, dx, dy, dz] of scene.arrows) {
        const len = Math.hypot(dx, dy, dz) * gain;
        if (!(len > 1e-3)) continue;
        viewer.addArrow({ start: { x: x, y: y, z: z },
                          end: { x: x + gain * dx, y: y + gain * dy, z: z + gain * dz },
                          radius: 0.05, radiusRatio: 2.2, mid: Math.max(0.5, 1 - 0.35 / len),
                          color: "#d62728" });
        n += 1;
      }
    }
    report.arrows = String(n);
  }

  function drawTrails(viewer, scenes, index, opts, report) {
    // the last k positions of each site: the frame's position minus the chained displacements
    let n = 0;
    const k = opts.trail || 0;
    const scene = scenes[index];
    if (k > 0 && scene.arrows && scene.disp) {
      scene.arrows.forEach((a, site) => {
        let p = a.slice(0, 3);
        for (let j = 0; j < k && index - j > 0; j++) {
          const d = scenes[index - j].disp[site];
          const q = sub(p, d);
          if (Math.hypot(d[0], d[1], d[2]) > 1e-4) {
            viewer.addCylinder({ start: xyz(p), end: xyz(q), radius: 0.045, color: "#1f77b4",
                                 opacity: 0.85 * (1 - j / k), fromCap: 1, toCap: 1 });
            n += 1;
          }
          p = q;
        }
      });
    }
    report.trails = String(n);
  }

  function drawGhosts(viewer, scene, opts, report) {
    let n = 0;
    if (opts.ghosts && scene.ghosts && scene.ghosts.length) {
      const m = viewer.addModel();
      m.addAtoms(scene.ghosts.map(([el, x, y, z]) => ({
        elem: el, x: x, y: y, z: z, color: (scene.styles[el] || ["#999999"])[0],
        style: { sphere: { radius: 0.5, opacity: 0.25 } } })));
      n = scene.ghosts.length;
    }
    report.ghosts = String(n);
  }

  function hoverText(scene, atom) {
    const f = toFrac([atom.x, atom.y, atom.z], inverse3(scene.cell));
    const kind = ["", " (on a face)", " (image)"][atom.properties.kind];
    return atom.elem + " · site " + atom.properties.site + kind + " · frac (" +
           f.map((v) => v.toFixed(3)).join(", ") + ")";
  }

  // Draws scenes[index] into a 3Dmol viewer; returns the report (also written to `reportEl`).
  function draw(viewer, scenes, index, opts, reportEl) {
    const t0 = performance.now();
    const scene = scenes[index];
    opts = opts || {};
    viewer.removeAllModels();
    viewer.removeAllShapes();
    viewer.removeAllLabels();
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
    const model = viewer.addModel();
    model.addAtoms(rows.map((r, i) => {
      const radius = (scene.styles[r[0]] || [null, 0.5])[1] * (r[5] === KIND.image ? 0.75 : 1);
      return { elem: r[0], x: r[1], y: r[2], z: r[3], index: i, serial: i, bonds: bonds[i],
               color: atomColour(scene, r, opts),
               properties: { site: r[4], kind: r[5], corner: r[6] },
               style: nBonds && opts.style !== "spheres"
                 ? { sphere: { radius: radius }, stick: { radius: 0.09 } }
                 : { sphere: { radius: opts.style === "spheres" ? 1.8 * radius : radius } } };
    }));
    viewer.setHoverable({}, true, (atom, v) => {
      if (!atom.label) {
        atom.label = v.addLabel(hoverText(scene, atom), { position: atom, fontSize: 11,
          fontColor: "black", backgroundColor: "white", backgroundOpacity: 0.85,
          borderColor: "#999999", borderThickness: 0.5, inFront: true });
      }
    }, (atom, v) => { if (atom.label) { v.removeLabel(atom.label); delete atom.label; } });
    if (scene.cell) drawCell(viewer, scene.cell);
    const report = {};
    if (opts.polyhedra !== false) drawPolyhedra(viewer, scene, report);
    else { report.polyhedra = "0"; report.polyFaces = "0"; report.polyShapes = ""; }
    drawArrows(viewer, scene, opts, report);
    drawTrails(viewer, scenes, index, opts, report);
    drawGhosts(viewer, scene, opts, report);
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

  // A self-contained view of one scene (notebooks, exported HTML).
  function standalone(el, scene, legendEl, opts) {
    const viewer = $3Dmol.createViewer(el, { backgroundColor: "white", antialias: true });
    const report = draw(viewer, [scene], 0, Object.assign({ resetView: true }, opts || {}), el);
    if (scene.label) {
      viewer.addLabel(scene.label, { useScreen: true, position: { x: 5, y: 5 }, fontSize: 12,
        fontColor: "black", backgroundColor: "white", backgroundOpacity: 0.7 });
      viewer.render();
    }
    if (legendEl) legendEl.innerHTML = legendHtml(scene);
    return report;
  }

  global.CdvaeScene = { draw: draw, standalone: standalone, legendHtml: legendHtml };
})(typeof window !== "undefined" ? window : this);
