"""Notification templates: shipped in English, Ukrainian and Russian; operators add their own.

Layout (one folder per language, named by its code)::

    LANG/identification.subject.txt   one line
    LANG/identification.txt           the plain-text body
    LANG/identification.html          optional: an HTML alternative (autoescaped)
    LANG/correction.subject.txt       the same three for a withdrawn identification
    LANG/correction.txt
    LANG/correction.html

A ``templates`` folder in the data home (``$FACETRACE_HOME/templates``) is searched first:
a file there overrides the shipped one of the same name, and a new language folder adds a
language. A contact's language falls back to its primary subtag (``pt-BR`` -> ``pt``), then
to English.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)

from facetrace.errors import ConfigError

FALLBACK_LANGUAGE = "en"
KINDS = ("identification", "correction")


@dataclass(frozen=True)
class Rendered:
    """A rendered message: the language actually used, subject, text and optional HTML."""

    language: str
    subject: str
    text: str
    html: str | None


class TemplateRenderer:
    """Renders notification templates from the operator's folder, then the shipped ones."""

    def __init__(self, operator_dir: Path | None = None) -> None:
        loaders: list[BaseLoader] = []
        if operator_dir is not None and operator_dir.is_dir():
            loaders.append(FileSystemLoader(str(operator_dir)))
        loaders.append(PackageLoader("facetrace.workflow", "templates"))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            # HTML templates are escaped: names and places come from records typed by people.
            autoescape=select_autoescape(enabled_extensions=("html", "htm"), default_for_string=False, default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _exists(self, name: str) -> bool:
        try:
            self.env.get_template(name)
        except TemplateNotFound:
            return False
        except TemplateError as exc:
            raise ConfigError(f"notification template {name}: {exc}") from None
        return True

    def language_for(self, kind: str, language: str) -> str:
        """Return the language whose templates serve ``language`` for ``kind``."""
        for candidate in (language, language.split("-")[0], FALLBACK_LANGUAGE):
            if self._exists(f"{candidate}/{kind}.txt") and self._exists(f"{candidate}/{kind}.subject.txt"):
                return candidate
        raise ConfigError(f"no notification template for {kind!r}, not even in {FALLBACK_LANGUAGE!r}")

    def render(self, kind: str, language: str, context: dict[str, Any]) -> Rendered:
        """Render the ``kind`` templates in ``language`` (or its fallback).

        Raises:
            ConfigError: a template is missing, malformed, or uses an unknown variable.
        """
        lang = self.language_for(kind, language)
        try:
            subject = self.env.get_template(f"{lang}/{kind}.subject.txt").render(context)
            text = self.env.get_template(f"{lang}/{kind}.txt").render(context)
            html = (
                self.env.get_template(f"{lang}/{kind}.html").render(context)
                if self._exists(f"{lang}/{kind}.html")
                else None
            )
        except TemplateError as exc:
            raise ConfigError(f"notification template {lang}/{kind}: {exc}") from None
        subject = " ".join(subject.split())  # one header line, whatever the template holds
        if not subject or not text.strip():
            raise ConfigError(f"notification template {lang}/{kind} renders an empty subject or body")
        return Rendered(lang, subject[:500], text, html)
