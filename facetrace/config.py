"""Settings, read from the environment (``FACETRACE_*``) with safe defaults.

The data home holds the SQLite database, the FAISS index and the media folder unless
``FACETRACE_DATABASE_URL`` / ``FACETRACE_VECTOR_URL`` point elsewhere.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from facetrace.crypto import Keyring, keyring_from


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("facetrace", appauthor=False))


class Settings(BaseSettings):
    """All tunables of one facetrace deployment."""

    model_config = SettingsConfigDict(env_prefix="FACETRACE_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    vector_url: str | None = None
    # Encryption at rest (facetrace.crypto): a base64 256-bit key in a 0600 file outside the home, or in
    # FACETRACE_KEY. None: templates, contact details, photos and the index are stored unencrypted.
    key_file: Path | None = None
    key: SecretStr | None = None
    previous_key_file: Path | None = None  # an older key, only to read values a rotation has not reached
    # Vision
    max_pixels: int = 50_000_000
    max_upload_bytes: int = 50 * 1024 * 1024
    detector: str = "hog"
    embedder: str = "dlib-onnx"  # or "dlib", or "onnx:/path/to/arcface.onnx" (an operator's model)
    detect_max_side: int = 1024
    min_quality: float = 10.0
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
    # Searches (image, compare, video; API and web) per user, or per address without credentials:
    # a token bucket refilled at this rate (0 = no limit) holding up to search_rate_burst searches.
    search_rate_per_minute: float = 120.0
    search_rate_burst: int = 60
    analysis_processes: int = 0  # API: processes analysing uploads (0 = one per core, 1 = in the server)
    job_workers: int = 1  # background jobs (imports, re-indexing, video searches) run at a time by a process
    # The job queue (docs/scale.md): whether this server process runs jobs (false on API processes of a
    # deployment with `facetrace worker`s); after how long without a heartbeat a job's worker is taken for
    # dead and the job queued again; how many times in all a job is started before it is marked failed.
    run_jobs: bool = True
    job_lease_seconds: float = Field(30.0, ge=2.0)
    job_max_attempts: int = Field(3, ge=1)
    job_nice: int = Field(0, ge=0, le=19)  # CPU niceness of an import's analysis processes; 10: searches first
    max_import_bytes: int = 2 * 1024**3  # one uploaded import archive
    # Operations: logs, readiness, metrics (docs/operations.md)
    log_format: Literal["text", "json"] = "text"
    metrics_token: str | None = None  # GET /api/v1/metrics needs it as a bearer token; unset: loopback clients only
    ready_min_free_mb: int = 512  # GET /api/v1/ready fails below this much free disk in the data home
    # Identification workflow
    min_evidence_items: int = 1  # corroborating evidence items required before an identification is confirmed
    # Reconciliation beyond the face (docs/reconciliation.md): the exclusion rules that apply (any of
    # sex, age, height; "" for none) and their tolerances; which identification level may notify a family.
    exclusion_rules: str = "sex,age,height"
    exclusion_age_tolerance_years: float = Field(5.0, ge=0, le=50)
    exclusion_height_tolerance_cm: float = Field(5.0, ge=0, le=100)
    notify_level: Literal["confirmed", "preliminary"] = "confirmed"
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
    organisation_address: str = ""  # an address line for letters (optional)
    notification_languages: str = "en,uk,ru"  # offered for contacts (codes, comma-separated)
    # Who may approve a notification (never its drafter): reviewers, or examiners and reviewers.
    notification_approvers: Literal["reviewer", "examiner_or_reviewer"] = "reviewer"
    # The settings above from smtp_host on, the review FPIRs and min_evidence_items can also be saved by an
    # admin in the product (facetrace.store.settings_store); a variable set here wins over a saved value.

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'facetrace.db'}"

    @property
    def keyring(self) -> Keyring:
        """The encryption keys (empty when none is configured). Raises ConfigError for a refused key."""
        secret = self.key.get_secret_value() if self.key else None
        inputs = (self.key_file, secret, self.previous_key_file, self.home)
        # Cached with what it was read from: a model_copy with another key file must not reuse it.
        cached = self.__dict__.get("_keyring")
        if cached is None or cached[0] != inputs:
            ring = keyring_from(
                key_file=self.key_file, key=secret, previous_key_file=self.previous_key_file, home=self.home
            )
            cached = self.__dict__["_keyring"] = (inputs, ring)
        return cached[1]

    @property
    def encrypted(self) -> bool:
        """Whether data is encrypted at rest (a key is configured). Raises ConfigError for a refused key."""
        return self.keyring.enabled

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"


def get_settings(**overrides: object) -> Settings:
    """Return settings from the environment, with keyword overrides applied."""
    return Settings(**overrides)  # type: ignore[arg-type]
