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
    embedder: str = "dlib-onnx"  # or "dlib", or "onnx:/path/to/arcface.onnx" (an operator's model)
    detect_max_side: int = 1024
    min_quality: float = 20.0
    workers: int = 0  # 0 = one per core
    # Video (facetrace.vision.video): limits checked before and while decoding.
    video_max_bytes: int = 4 * 1024**3
    video_max_seconds: float = 4 * 3600.0
    video_max_pixels: int = 4096 * 2304  # per frame (4K UHD and DCI 4K fit)
    video_max_frames: int = 1_000_000
    video_sample_fps: float = 5.0  # frames analysed per second of video, plus scene changes
    video_detect_upsample: int = -1  # HOG upsampling for video frames; -1 = 1 below 800 px, else 0
    # Decisions
    policy_fpir: float = 0.01
    review_fpir: float = 0.1
    verify_fmr: float = 0.001
    calibration_path: Path | None = None
    # Index
    index_factory: str | None = None  # FAISS factory string ("{nlist}" filled in); None/"auto" = by size
    index_nprobe: int = 0  # IVF clusters visited per probe; 0 = the value stored with the index
    index_efsearch: int = 0  # HNSW search depth; 0 = the value stored with the index
    index_memory_mb: int = 0  # memory budget of the FAISS index; 0 = a quarter of the RAM
    index_auto_rebuild: bool = True  # rebuild into a bigger index type in the background as the gallery grows
    # Service: API, accounts, jobs
    cookie_secure: bool | None = None  # None: Secure cookies except over plain http on loopback (development)
    session_hours: float = 12.0
    token_days: int = 90
    login_max_failures: int = 5  # per user name, within login_lockout_seconds; then locked out that long
    login_max_failures_per_address: int = 20  # per client address
    login_lockout_seconds: int = 900
    analysis_processes: int = 0  # API: processes analysing uploads (0 = one per core, 1 = in the server)
    job_workers: int = 1  # background jobs (imports, re-indexing) run at a time
    max_import_bytes: int = 2 * 1024**3  # one uploaded import archive
    # Identification workflow
    min_evidence_items: int = 1  # corroborating evidence items required before an identification is confirmed
    notification_max_attempts: int = 5  # delivery attempts after transient SMTP errors
    notification_stale_seconds: int = 900  # a message 'sending' this long is marked 'unknown', never resent
    smtp_timeout: float = 30.0
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
