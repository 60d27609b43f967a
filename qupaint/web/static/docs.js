// qupaint serve: Swagger UI on the app's OpenAPI schema, from the package's copy of its
// assets (no CDN), started from this file rather than an inline script (the pages run under
// a Content-Security-Policy that allows none)
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
