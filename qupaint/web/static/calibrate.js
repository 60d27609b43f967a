// qupaint serve: the calibrate page (a file, not an inline script: the pages run under a
// Content-Security-Policy that allows no inline script)
"use strict";
nav("/calibrate");
let points = [];
const show = () => {
  q("#points").textContent = points.length ?
    points.map((p, i) => `${i + 1}: (${p.x}, ${p.y}), ${p.layers} L`).join("; ") : "no clicks yet";
  // each click marked where it was made, numbered as listed
  document.querySelectorAll(".click").forEach((el) => el.remove());
  const img = q("#calimg");
  points.forEach((p, i) => {
    const el = document.createElement("span");
    el.className = "click";
    el.textContent = `${i + 1}·${p.layers}L`;
    el.style.left = `${p.x * img.width / img.naturalWidth}px`;
    el.style.top = `${p.y * img.height / img.naturalHeight}px`;
    q("#clickarea").appendChild(el);
  });
};
q("#file").onchange = () => { q("#calimg").src = URL.createObjectURL(q("#file").files[0]); points = []; show(); };
q("#calimg").onclick = (ev) => {
  const img = q("#calimg"), r = img.getBoundingClientRect();
  const x = Math.round((ev.clientX - r.left) * img.naturalWidth / r.width);
  const y = Math.round((ev.clientY - r.top) * img.naturalHeight / r.height);
  points.push({ x, y, layers: Number(q("#layers").value) }); show();
};
q("#clear").onclick = () => { points = []; show(); };
q("#fit").onclick = async () => {
  q("#error").textContent = "";
  const fd = new FormData();
  fd.append("file", q("#file").files[0]); fd.append("material", q("#material").value);
  fd.append("camera", q("#camera").value); fd.append("points", JSON.stringify(points));
  try {
    const d = await api("/api/calibrate", { method: "POST", body: fd });
    delete d._timing;
    const text = JSON.stringify({ ...d, ladder_plot: undefined }, null, 1);
    // the fit, read: the oxide, how well the clicks fit, and the other oxides that fit too
    const alt = (d.alternatives || []).slice(0, 3).map(([o, r]) => `${o} nm (rms ${r.toFixed(4)})`);
    const rows = d.observations.map((o, i) => `<tr><td>${i + 1}</td><td>${o.layers}</td>` +
      o.contrast.map((c) => `<td>${c.toFixed(3)}</td>`).join("") +
      d.predicted[i].map((c) => `<td>${c.toFixed(3)}</td>`).join("") + "</tr>").join("");
    const sd = d.oxide_sd_nm == null ? "" : ` ± ${d.oxide_sd_nm.toFixed(1)}`;
    q("#result").innerHTML = `<h3>SiO<sub>2</sub> ${d.oxide_nm.toFixed(1)}${sd} nm</h3>` +
      `<p>rms residual ${d.rms.toFixed(4)} (contrast)</p>` +
      (alt.length ? `<p class="muted">also possible: ${alt.join(", ")}</p>` : "") +
      "<table><tr><th>click</th><th>layers</th><th>measured R</th><th>G</th><th>B</th>" +
      "<th>fitted R</th><th>G</th><th>B</th></tr>" + rows + "</table>" +
      `<img id="ladderplot" alt="the fitted ladder with the clicks" src="${d.ladder_plot}">`;
    q("#result").dataset.oxide = d.oxide_nm;
    const a = q("#download");
    a.href = URL.createObjectURL(new Blob([text], { type: "application/json" })); a.hidden = false;
  } catch (e) { showError(e); }
};
