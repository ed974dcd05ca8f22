"""Printing for the CLI: JSON for scripts, Rich tables for people, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit with ``code``."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(code)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Any]:
    """Yield a callback ``(done, total, errors)`` that drives a progress bar on stderr."""
    if not enabled:
        yield lambda done, total, errors: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors: {task.fields[errors]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        task = progress.add_task(label, total=None, errors=0)

        def update(done: int, total: int, errors: int) -> None:
            progress.update(task, completed=done, total=total, errors=errors)

        yield update
