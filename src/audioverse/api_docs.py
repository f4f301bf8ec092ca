"""The interactive API docs, served whole by this app: Swagger UI's files from a package and no inline code.

Litestar's Swagger page loads Swagger UI from a CDN and starts it with an inline script, so with no
internet (the embedded profile's promise) it is blank, and a Content-Security-Policy without
``'unsafe-inline'`` blocks it. This page names the packaged files and a script file of our own instead.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from audioverse.static_files import SERVED_FILES

DOCS_STATIC_DIR = Path(__file__).parent / "static" / "docs"
ASSETS_PATH = "/assets"
"""Under the OpenAPI router's own path (``/api/schema/assets/...``), beside the schema it documents."""
ASSETS_ROUTE_NAME = "api_docs_assets"


class LocalSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Swagger UI from ``swagger-ui-bundle-v2`` and ``swagger-init.js``, served under the schema's path."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        assets = request.app.route_reverse(ASSETS_ROUTE_NAME, file_path="/").rstrip("/") + "/"
        schema_url = self.get_openapi_json_route(request)
        title = escape(str(openapi_schema["info"]["title"]))
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}favicon-32x32.png">
<link rel="stylesheet" href="{assets}swagger-ui.css">
<script src="{assets}swagger-ui-bundle.js" defer></script>
<script src="{assets}swagger-ui-standalone-preset.js" defer></script>
<script src="{assets}swagger-init.js" defer></script>
</head>
<body>
<div id="swagger-container" data-schema-url="{escape(schema_url)}"></div>
</body>
</html>
"""
        return page.encode()

    def receive_router(self, router: Router) -> None:
        router.register(
            create_static_files_router(
                path=ASSETS_PATH,
                directories=[Path(swagger_ui_path), DOCS_STATIC_DIR],
                name=ASSETS_ROUTE_NAME,
                include_in_schema=False,
                file_system=SERVED_FILES,
            )
        )
