"""``facetrace serve``: run the API server (uvicorn, one process) over the data home."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrace.cli.output import emit_json, err_console
from facetrace.config import get_settings
from facetrace.errors import FacetraceError
from facetrace.logs import setup_logging
from facetrace.usecases.setup import open_setup


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    log_level: Annotated[
        str, typer.Option(help="Log level: debug, info (a line per request), warning, error.")
    ] = "info",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log JSON lines (with request ids); default: FACETRACE_LOG_FORMAT.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the server's address as JSON first.")] = False,
) -> None:
    """Run the server (the web UI and the REST API ``/api/v1``) until interrupted. On an install with no
    account, the last line printed is a one-time link that creates the first admin in the browser."""
    # The web stack (FastAPI, the pages, the PDF writer) loads here only: every other command starts
    # about a second sooner without it.
    from facetrace.server import create_app, run_server, serves_beyond_this_machine

    settings = get_settings()
    level = log_level.upper()
    if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"):
        raise FacetraceError(f"unknown log level {log_level!r} (debug, info, warning, error)")
    # One handler for facetrace's and uvicorn's records; uvicorn's own access log is off: the
    # request middleware logs each request with its id and route template, never the raw path.
    setup_logging("DEBUG" if level == "TRACE" else level, "json" if log_json else settings.log_format)
    app = create_app(settings)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/v1"
    if json_out:
        emit_json({"url": url, "home": str(settings.home), "database": app.state.service.db.safe_url})
    else:
        err_console.print(f"facetrace API on {url} (data home {settings.home})", markup=False)
        err_console.print(f"facetrace web UI on {url.removesuffix('/api/v1')}/", markup=False)
    if serves_beyond_this_machine(host):
        err_console.print(
            "warning: listening beyond this machine over plain http; put a TLS-terminating reverse proxy in front",
            markup=False,
        )
    token = open_setup(app.state.service)
    on_started = None
    if token:
        link = f"{url.removesuffix('/api/v1')}/setup?token={token}"

        def on_started() -> None:
            # The last line of the start-up output, where a newcomer looks: the one way in on a fresh install.
            err_console.print(
                "first run: no account yet; open this link to create the first admin (it works once):", soft_wrap=True
            )
            err_console.print(link, markup=False, soft_wrap=True)

    run_server(app, host=host, port=port, log_level=log_level, on_started=on_started)
