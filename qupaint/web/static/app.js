// qupaint serve: shared helpers (no framework, no build step)
"use strict";
const q = (sel) => document.querySelector(sel);

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  const timing = r.headers.get("Server-Timing");
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = JSON.stringify((await r.json()).detail); } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  const body = await r.json();
  body._timing = timing;
  return body;
}

function nav(here) {
  const links = [["/", "Map"], ["/flakes", "Flakes"], ["/try", "Try an image"],
                 ["/calibrate", "Calibrate"], ["/docs", "API"]];
  const el = document.createElement("nav");
  el.innerHTML = '<span class="brand">qupaint</span>' + links.map(([h, t]) =>
    `<a href="${h}" class="${h === here ? "here" : ""}">${t}</a>`).join("");
  document.body.prepend(el);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" }[c]));
}

function showError(e) {
  const el = q("#error");
  if (el) el.textContent = String(e.message || e);
}
