"""Settings, read from the environment (``FACETRACE_*``) with safe defaults.

The data home holds the SQLite database, the FAISS index and the media folder unless
``FACETRACE_DATABASE_URL`` / ``FACETRACE_VECTOR_URL`` point elsewhere.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("facetrace", appauthor=False))


class Settings(BaseSettings):
    """All tunables of one facetrace deployment."""

    model_config = SettingsConfigDict(env_prefix="FACETRACE_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    vector_url: str | None = None
    # Vision
    max_pixels: int = 50_000_000
    max_upload_bytes: int = 50 * 1024 * 1024
    detector: str = "hog"
    detect_max_side: int = 1024
    min_quality: float = 20.0
    workers: int = 0  # 0 = one per core
    # Decisions
    policy_fpir: float = 0.01
    review_fpir: float = 0.1
    verify_fmr: float = 0.001
    calibration_path: Path | None = None
    # Index
    index_factory: str | None = None
    # Notifications
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_tls: str = "none"  # none | starttls | tls
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "facetrace@localhost"
    organisation_name: str = "Identification team"
    organisation_contact: str = "facetrace@localhost"

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'facetrace.db'}"

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"


def get_settings(**overrides: object) -> Settings:
    """Return settings from the environment, with keyword overrides applied."""
    return Settings(**overrides)  # type: ignore[arg-type]
