"""Shared pytest fixtures: real face images, an isolated data home, and galleries.

Fixtures (all generic; use them from any test file):

- ``repo_root``, ``faces_dir``, ``special_dir``: paths of the repository and of the committed
  test images (``tests/data/faces`` and ``tests/data/special``; see ``tests/data/README.md``).
- ``face_subset``: the committed faces split into a gallery part and a non-mated part (see
  :class:`FaceSubset`), so that tests agree on who is enrolled and which photo is the probe.
- ``tmp_home``: ``FACETRACE_HOME`` pointed at a fresh ``tmp_path`` (and any
  ``FACETRACE_DATABASE_URL`` / ``FACETRACE_VECTOR_URL`` removed); returns that folder.
- ``settings``: :class:`facetrace.config.Settings` for ``tmp_home``, with ``workers=1``.
- ``gallery``: an empty :class:`facetrace.gallery.Gallery` on ``tmp_home`` (closed afterwards).
- ``enrolled_home`` (session): a data home where ``face_subset.gallery_identities`` are enrolled
  with their reference images. Built once per session (about 40 images). READ-ONLY: never
  point a writing gallery or command at it; use ``enrolled_home_copy`` instead.
- ``enrolled_gallery`` (session): a read-only :class:`Gallery` on ``enrolled_home``, for
  searches and other reads.
- ``enrolled_home_copy``: a private copy of ``enrolled_home`` in ``tmp_path``, with
  ``FACETRACE_HOME`` set to it; returns the folder. Mutate it freely (erase, corrupt the index...).
- ``postgres_url``: a fresh, empty PostgreSQL database (dropped afterwards; skipped without
  ``FACETRACE_TEST_POSTGRES_URL``, see ``tests/pgtest.py``).
- ``bomb_png``: ``make(width, height) -> bytes``, a valid 1-bit black PNG that is tiny on disk
  but huge decoded (a decompression bomb).
- ``run_cli``: runs ``python -m facetrace.cli.main ARGS`` in a subprocess with the current
  ``FACETRACE_HOME``, returning the ``CompletedProcess`` (text mode).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pgtest import fresh_database

from facetrace.config import Settings, get_settings
from facetrace.gallery import EnrollItem, Gallery

REPO_ROOT = Path(__file__).resolve().parent.parent
FACES_DIR = REPO_ROOT / "tests" / "data" / "faces"
SPECIAL_DIR = REPO_ROOT / "tests" / "data" / "special"
# Environment variables that would send a test's data somewhere other than its own home.
_LEAKY_ENV = ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH")


@dataclass(frozen=True)
class FaceSubset:
    """The committed LFW subset, split for open-set tests.

    - ``identities``: every identity folder with 3+ images, sorted.
    - ``gallery_identities``: every other one of them (20), enrolled in ``enrolled_home``
      with their first two images (``references(name)``).
    - ``other_identities``: the remaining 20, never enrolled anywhere by the shared fixtures.
    - ``probe(name)``: the identity's last image, never enrolled by the shared fixtures: a
      mated probe for gallery identities, a non-mated one for the others.
    - ``distractors``: the one image of each of the 40 single-image identities.
    """

    root: Path

    @property
    def identities(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "distractors")

    @property
    def gallery_identities(self) -> list[str]:
        return self.identities[::2]

    @property
    def other_identities(self) -> list[str]:
        return self.identities[1::2]

    def images(self, name: str) -> list[Path]:
        """Return all images of identity ``name``, sorted."""
        return sorted((self.root / name).glob("*.jpg"))

    def references(self, name: str) -> list[Path]:
        """Return the reference images enrolled for ``name`` by ``enrolled_home``."""
        return self.images(name)[:2]

    def probe(self, name: str) -> Path:
        """Return the identity's last image (never enrolled by the shared fixtures)."""
        return self.images(name)[-1]

    @property
    def distractors(self) -> list[Path]:
        return sorted((self.root / "distractors").glob("*/*.jpg"))

    def enroll_items(self, names: list[str] | None = None, per_person: int = 2) -> list[EnrollItem]:
        """Return enroll items for ``names`` (default: the gallery identities), ``per_person`` images each."""
        return [
            EnrollItem(
                external_id=name,
                name=name.replace("_", " "),
                images=self.images(name)[:per_person],
                source="LFW deep-funneled (test subset)",
                legal_basis="test data",
            )
            for name in (names if names is not None else self.gallery_identities)
        ]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """``tests/data/faces``: IDENTITY/IMAGE.jpg folders, plus ``distractors/IDENTITY/IMAGE.jpg``."""
    return FACES_DIR


@pytest.fixture(scope="session")
def special_dir() -> Path:
    """``tests/data/special``: a three-face group photo and a no-face image."""
    return SPECIAL_DIR


@pytest.fixture(scope="session")
def face_subset() -> FaceSubset:
    """The committed faces, split into gallery identities, other identities and distractors."""
    return FaceSubset(FACES_DIR)


def _clean_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FACETRACE_HOME", str(home))


@pytest.fixture()
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty data home; ``FACETRACE_HOME`` points at it for the test's duration."""
    home = tmp_path / "home"
    home.mkdir()
    _clean_env(monkeypatch, home)
    return home


@pytest.fixture()
def settings(tmp_home: Path) -> Settings:
    """Settings for ``tmp_home`` with one worker process (keeps tests light on shared CPUs)."""
    return get_settings(home=tmp_home, workers=1)


@pytest.fixture()
def gallery(settings: Settings) -> Iterator[Gallery]:
    """An empty gallery on ``tmp_home``."""
    g = Gallery(settings)
    yield g
    g.close()


@pytest.fixture(scope="session")
def enrolled_home(tmp_path_factory: pytest.TempPathFactory, face_subset: FaceSubset) -> Path:
    """A data home with the 20 gallery identities enrolled (2 images each). Read-only."""
    home = tmp_path_factory.mktemp("enrolled") / "home"
    g = Gallery(get_settings(home=home, workers=1, database_url=None, vector_url=None, calibration_path=None))
    try:
        outcome = g.enroll(face_subset.enroll_items())
    finally:
        g.close()
    assert not outcome.errors, outcome.errors
    assert outcome.images_enrolled == 2 * len(face_subset.gallery_identities)
    return home


@pytest.fixture(scope="session")
def enrolled_gallery(enrolled_home: Path) -> Iterator[Gallery]:
    """A gallery on ``enrolled_home``, shared by the whole session: only read from it."""
    g = Gallery(get_settings(home=enrolled_home, workers=1, database_url=None, vector_url=None, calibration_path=None))
    yield g
    g.close()


@pytest.fixture()
def enrolled_home_copy(enrolled_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, writable copy of ``enrolled_home``; ``FACETRACE_HOME`` points at it."""
    home = tmp_path / "enrolled-copy"
    # The -shm file belongs to open connections; SQLite rebuilds it from the -wal file.
    shutil.copytree(enrolled_home, home, ignore=shutil.ignore_patterns("*-shm"))
    _clean_env(monkeypatch, home)
    return home


@pytest.fixture()
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Return ``run(*args, timeout=120, env=None)``: the CLI in a subprocess, output captured.

    ``FACETRACE_HOME`` and the rest of the environment are inherited (set them with
    ``tmp_home`` / ``enrolled_home_copy`` / monkeypatch first); ``env`` adds variables.
    """

    def run(
        *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "facetrace.cli.main", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=REPO_ROOT,
        )

    return run


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: a few kB on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def bomb_png() -> Callable[[int, int], bytes]:
    """Return ``make(width, height)``: PNG bytes of a decompression bomb of that size."""
    return _bomb_png


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); skipped without FACETRACE_TEST_POSTGRES_URL."""
    with fresh_database("facetrace_test") as url:
        yield url
