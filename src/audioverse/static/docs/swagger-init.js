// Starts Swagger UI in the page's container on the schema the container names. A file, not an inline
// script, so the page runs under a Content-Security-Policy with no 'unsafe-inline'.
const container = document.getElementById("swagger-container");
window.ui = SwaggerUIBundle({
  url: container.dataset.schemaUrl,
  domNode: container,
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
});
