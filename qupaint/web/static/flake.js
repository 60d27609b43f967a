// qupaint serve: the flake page (a file, not an inline script: the pages run under a
// Content-Security-Policy that allows no inline script)
"use strict";
nav("");
const id = Number(location.pathname.split("/").pop());
async function save(change) {
  try {
    await api(`/api/flakes/${id}`, { method: "PATCH", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(change) });
    q("#saved").textContent = "saved";
    setTimeout(() => { q("#saved").textContent = ""; }, 1500);
  } catch (e) { showError(e); }
}
(async () => {
  try {
    const f = await api(`/api/flakes/${id}`);
    q("#title").textContent = `Flake ${f.id}: ${f.layers} layer${f.layers > 1 ? "s" : ""} of ${f.material}`;
    q("#crop").src = `/api/flakes/${id}/image.png`;
    for (const k of ["previous", "next"]) {
      if (f[k] != null) { q("#" + k).href = `/flake/${f[k]}`; q("#" + k).hidden = false; }
    }
    const rows = [["probability", f.probability.toFixed(3)], ["area", f.area_um2.toFixed(1) + " µm²"],
      ["sides", `${f.max_side_um.toFixed(1)} × ${f.min_side_um.toFixed(1)} µm`],
      ["aspect", f.aspect.toFixed(2)], ["stage x, y", `${f.x_mm.toFixed(4)}, ${f.y_mm.toFixed(4)} mm`],
      ["frame", esc(f.image)], ["seen in", `${f.views} frame(s)`], ["chip", esc(f.chip)],
      ["SiO2", f.oxide_nm ? f.oxide_nm.toFixed(1) + " nm" : "?"]];
    q("#props").innerHTML = rows.map(([k, v]) => `<tr><td class="l">${k}</td><td>${v}</td></tr>`).join("");
    const meas = [f.contrast_r, f.contrast_g, f.contrast_b];
    let lad = `<tr><th class="l">layers</th><th>R</th><th>G</th><th>B</th></tr>` +
      `<tr><td class="l"><b>measured</b></td>${meas.map((v) => `<td><b>${v.toFixed(3)}</b></td>`).join("")}</tr>`;
    if (f.predicted && f.predicted.contrast) {
      f.predicted.layers.forEach((n, i) => {
        const c = f.predicted.contrast[i];
        lad += `<tr class="${n === f.layers ? "here" : ""}"><td class="l">${n}${n === f.layers ? " ◀" : ""}</td>` +
          c.map((v) => `<td>${v.toFixed(3)}</td>`).join("") + "</tr>";
      });
    }
    q("#ladder").innerHTML = lad;
    q("#used").checked = f.used; q("#favourite").checked = f.favourite; q("#note").value = f.note;
    q("#used").onchange = () => save({ used: q("#used").checked });
    q("#favourite").onchange = () => save({ favourite: q("#favourite").checked });
    q("#note").onchange = () => save({ note: q("#note").value });
    document.body.dataset.loaded = "1";
  } catch (e) { showError(e); }
})();
