// qupaint serve: the map page (a file, not an inline script: the pages run under a
// Content-Security-Policy that allows no inline script)
"use strict";
nav("/");
(async () => {
  try {
    const m = await api("/api/map");
    if (!m.dzi) { q("#info").textContent = m.hint || "no map"; return; }
    q("#info").textContent = `${m.markers.length} thin flakes marked; click one to open it ` +
      "(red: monolayer, blue: few layers).";
    const viewer = OpenSeadragon({ id: "viewer", tileSources: m.dzi,
      prefixUrl: "/static/vendor/openseadragon/images/", showNavigator: true, maxZoomPixelRatio: 4 });
    viewer.addHandler("open", () => {
      for (const mk of m.markers) {
        const el = document.createElement("div");
        el.className = "marker " + (mk.layers === 1 ? "l1" : mk.layers < 6 ? "l2" : "thick");
        el.id = "flake-" + mk.id;
        el.title = `flake ${mk.id}: ${mk.layers} layers, ${mk.area_um2} um2`;
        const label = document.createElement("span");
        label.textContent = `${mk.layers}L`;
        el.appendChild(label);
        const r = Math.max(mk.r * 1.3, 12);
        const rect = viewer.viewport.imageToViewportRectangle(mk.x - r, mk.y - r, 2 * r, 2 * r);
        viewer.addOverlay({ element: el, location: rect });
        new OpenSeadragon.MouseTracker({ element: el,
          clickHandler: () => { window.location.href = "/flake/" + mk.id; } });
      }
      document.body.dataset.mapReady = "1";
    });
    // a scale bar in um, kept right as the view zooms
    const bar = document.createElement("div");
    bar.id = "scalebar";
    bar.innerHTML = "<div></div><span></span>";
    q("#viewer").appendChild(bar);
    const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
    const rescale = () => {
      const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
      const umPerScreenPx = m.um_per_px / zoom;
      const um = steps.filter((s) => s / umPerScreenPx <= 160).pop() || steps[0];
      bar.firstChild.style.width = `${Math.round(um / umPerScreenPx)}px`;
      bar.lastChild.textContent = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
      bar.dataset.um = um;
    };
    viewer.addHandler("open", rescale);
    viewer.addHandler("animation", rescale);
  } catch (e) { showError(e); }
})();
