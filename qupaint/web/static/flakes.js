// qupaint serve: the flakes page (a file, not an inline script: the pages run under a
// Content-Security-Policy that allows no inline script)
"use strict";
nav("/flakes");
let page = 1;
const size = 50;
function params() {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(q("#filters"))) if (v !== "") p.set(k, v);
  p.set("page", page); p.set("page_size", size);
  return p;
}
function downloads() {  // the export links follow the filters the export API takes
  const f = new FormData(q("#filters"));
  for (const fmt of ["csv", "coco", "2dmatgmm", "micromanager"]) {
    const p = new URLSearchParams({format: fmt});
    for (const k of ["layers", "min_area_um2"]) if (f.get(k)) p.set(k, f.get(k));
    q(`#dl-${fmt}`).href = "/api/export?" + p;
  }
}
async function load() {
  q("#error").textContent = "";
  downloads();
  try {
    const d = await api("/api/flakes?" + params());
    const pages = Math.max(1, Math.ceil(d.total / size));
    q("#count").textContent = `${d.total} flakes, page ${page} of ${pages}`;
    q("#count").dataset.total = d.total;
    q("#timing").textContent = d._timing ? "server " + d._timing.split("=")[1] + " ms" : "";
    q("#table tbody").innerHTML = d.rows.map((r) => `<tr data-id="${r.id}">
      <td><a href="/flake/${r.id}">${r.id}</a></td>
      <td class="l"><a href="/flake/${r.id}"><img loading="lazy" alt="flake ${r.id}"
        src="/api/flakes/${r.id}/thumbnail.jpg"></a></td>
      <td>${r.layers}</td><td>${r.area_um2.toFixed(1)}</td><td>${r.probability.toFixed(2)}</td>
      <td>${r.aspect.toFixed(2)}</td><td class="l">${esc(r.material)}</td>
      <td>${[r.contrast_r, r.contrast_g, r.contrast_b].map((c) => c.toFixed(3)).join(", ")}</td>
      <td>${r.x_mm.toFixed(4)}</td><td>${r.y_mm.toFixed(4)}</td>
      <td>${r.used ? "✓ used" : "–"}</td><td>${r.favourite ? "★" : "☆"}</td></tr>`).join("");
    q("#prev").disabled = page <= 1; q("#next").disabled = page >= pages;
    document.body.dataset.loaded = String(Date.now());
  } catch (e) { showError(e); }
}
q("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; load(); });
q("#prev").onclick = () => { page -= 1; load(); };
q("#next").onclick = () => { page += 1; load(); };
const init = new URLSearchParams(location.search);
for (const [k, v] of init) { const el = q(`#filters [name=${k}]`); if (el) el.value = v; }
load();
