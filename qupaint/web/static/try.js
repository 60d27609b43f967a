// qupaint serve: the try page (a file, not an inline script: the pages run under a
// Content-Security-Policy that allows no inline script)
"use strict";
nav("/try");
q("#form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  q("#error").textContent = ""; q("#summary").textContent = "detecting...";
  try {
    const d = await api("/api/detect", { method: "POST", body: new FormData(q("#form")) });
    q("#overlay").src = d.overlay;
    q("#summary").textContent = `${d.summary} of ${d.material} (${d.width}×${d.height} px); numbers as on the outlines`;
    q("#summary").dataset.count = d.detections.length;
    q("#dets").innerHTML = "<tr><th>#</th><th>class</th><th>layers</th><th>score</th><th>area µm²</th></tr>" +
      d.detections.map((x) => `<tr><td>${x.number}</td><td>${x.class}</td><td>${x.layers}</td>` +
      `<td>${x.score.toFixed(2)}</td><td>${x.area_um2 ? x.area_um2.toFixed(0) : "-"}</td></tr>`).join("");
  } catch (e) { q("#summary").textContent = ""; showError(e); }
});
