"""``facetrace serve``: run the API server (uvicorn, one process) over the data home."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrace.cli.output import emit_json, err_console
from facetrace.config import get_settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    json_out: Annotated[bool, typer.Option("--json", help="Print the server's address as JSON first.")] = False,
) -> None:
    """Run the REST API (``/api/v1``) until interrupted. Bootstrap an admin first with
    ``facetrace user add NAME --role admin``."""
    import uvicorn

    from facetrace.api.app import create_app
    from facetrace.api.deps import is_loopback

    settings = get_settings()
    app = create_app(settings)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/v1"
    if json_out:
        emit_json({"url": url, "home": str(settings.home), "database": app.state.service.db.safe_url})
    else:
        err_console.print(f"facetrace API on {url} (data home {settings.home})", markup=False)
        err_console.print(f"facetrace web UI on {url.removesuffix('/api/v1')}/", markup=False)
    if not is_loopback(host):
        err_console.print(
            "warning: listening beyond this machine over plain http; put a TLS-terminating reverse proxy in front",
            markup=False,
        )
    # One process: the gallery index, the job runner and the analysis pool live in it.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
        timeout_graceful_shutdown=30,
    )
