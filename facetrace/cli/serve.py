"""``facetrace serve``: run the API server (uvicorn) over the data home; ``facetrace worker``: run jobs only."""

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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port (PostgreSQL only: SQLite, the embedded default, serves one).",
        ),
    ] = 1,
) -> None:
    """Run the server (the web UI and the REST API ``/api/v1``) until interrupted. On an install with no
    account, the last line printed is a one-time link that creates the first admin in the browser."""
    # The web stack (FastAPI, the pages, the PDF writer) loads here only: every other command starts
    # about a second sooner without it.
    from facetrace.server import create_app, open_service, run_server, run_server_processes, serves_beyond_this_machine

    settings = get_settings()
    if workers > 1:
        refuse_single_process_database(settings.db_url, f"serve --workers {workers}")
    level = log_level.upper()
    if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"):
        raise FacetraceError(f"unknown log level {log_level!r} (debug, info, warning, error)")
    # One handler for facetrace's and uvicorn's records; uvicorn's own access log is off: the
    # request middleware logs each request with its id and route template, never the raw path.
    setup_logging("DEBUG" if level == "TRACE" else level, "json" if log_json else settings.log_format)
    # One process: this one serves. Several: this one migrates the database and issues the setup link,
    # then uvicorn's supervisor starts the processes that serve.
    app = create_app(settings) if workers == 1 else None
    service = app.state.service if app is not None else open_service(settings)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/v1"
    if json_out:
        emit_json({"url": url, "home": str(settings.home), "database": service.db.safe_url, "workers": workers})
    else:
        err_console.print(f"facetrace API on {url} (data home {settings.home})", markup=False)
        err_console.print(f"facetrace web UI on {url.removesuffix('/api/v1')}/", markup=False)
    if serves_beyond_this_machine(host):
        err_console.print(
            "warning: listening beyond this machine over plain http; put a TLS-terminating reverse proxy in front",
            markup=False,
        )
    token = open_setup(service)
    if app is None:
        service.db.dispose()
        if token:
            print_setup_link(f"{url.removesuffix('/api/v1')}/setup?token={token}")
        run_server_processes(
            host=host,
            port=port,
            workers=workers,
            log_level="DEBUG" if level == "TRACE" else level,
            log_format="json" if log_json else settings.log_format,
        )
        return
    on_started = None
    if token:
        link = f"{url.removesuffix('/api/v1')}/setup?token={token}"

        def on_started() -> None:
            # The last line of the start-up output, where a newcomer looks: the one way in on a fresh install.
            print_setup_link(link)

    run_server(app, host=host, port=port, log_level=log_level, on_started=on_started)


def print_setup_link(link: str) -> None:
    err_console.print(
        "first run: no account yet; open this link to create the first admin (it works once):", soft_wrap=True
    )
    err_console.print(link, markup=False, soft_wrap=True)


def refuse_single_process_database(db_url: str, what: str) -> None:
    """Raise FacetraceError when ``db_url`` is SQLite: only PostgreSQL serves several processes."""
    if db_url.startswith("sqlite"):
        raise FacetraceError(
            f"{what} needs PostgreSQL (set FACETRACE_DATABASE_URL): SQLite, the embedded default, is "
            "used by one process, which serves and runs the jobs itself"
        )


def worker(
    jobs: Annotated[int, typer.Option(min=0, help="Jobs run at a time (0: FACETRACE_JOB_WORKERS).")] = 0,
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning, error.")] = "info",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log JSON lines; default: FACETRACE_LOG_FORMAT.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the worker's name as JSON first.")] = False,
) -> None:
    """Run jobs (imports, video searches, re-indexing) from the queue in the database until interrupted.

    For a deployment on PostgreSQL with several processes (docs/scale.md): its API processes run with
    FACETRACE_RUN_JOBS=false and queue the jobs; workers on any machine take them. A worker that is
    killed loses nothing: its job is run again by another one, or by this one when it restarts."""
    import signal
    import threading

    from facetrace.server import open_service

    settings = get_settings()
    refuse_single_process_database(settings.db_url, "facetrace worker")
    level = log_level.upper()
    if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
        raise FacetraceError(f"unknown log level {log_level!r} (debug, info, warning, error)")
    setup_logging(level, "json" if log_json else settings.log_format)
    overrides: dict[str, object] = {"run_jobs": True}
    if jobs:
        overrides["job_workers"] = jobs
    service = open_service(settings.model_copy(update=overrides))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service.jobs.start()
    runner = service.jobs
    if json_out:
        emit_json({"worker": runner.worker_id, "database": service.db.safe_url, "jobs_at_a_time": runner.workers})
    else:
        err_console.print(
            f"facetrace worker {runner.worker_id}: running up to {runner.workers} job(s) at a time "
            f"from {service.db.safe_url}",
            markup=False,
        )
    while not stop.wait(1.0):
        pass
    err_console.print("stopping: running jobs go back to the queue", markup=False)
    service.close()
