"""The ``facetrace`` command in real subprocesses, on real faces, with a throwaway data home.

Every error must be one line on stderr starting with ``error:``, with a non-zero exit and no
traceback; a ``kill -9`` in the middle of ``enroll`` must lose and duplicate nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from facetrace.index.faiss_index import FaissIndex
from facetrace.store.media import sha256_bytes

if TYPE_CHECKING:
    from conftest import FaceSubset

RunCli = Callable[..., subprocess.CompletedProcess[str]]
PROVENANCE = ("--source", "LFW test subset", "--legal-basis", "test data")


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    """Assert a clean success and return the parsed JSON on stdout."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert the process failed with exactly one ``error:`` line on stderr; return that line."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def _make_folder(root: Path, subset: FaceSubset, names: list[str], per_person: int = 2) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for src in subset.images(name)[:per_person]:
            shutil.copyfile(src, root / name / src.name)
    return root


# -- the whole workflow --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_workflow(tmp_home: Path, tmp_path: Path, face_subset: FaceSubset, run_cli: RunCli) -> None:
    names = ["Jennifer_Keller", "Kelly_Clarkson", "Lance_Armstrong"]
    folder = _make_folder(tmp_path / "photos", face_subset, names)

    info = ok_json(run_cli("init", "--json"))
    assert info["home"] == str(tmp_home) and (tmp_home / "facetrace.db").is_file()

    assert_one_line_error(run_cli("enroll", folder), "--source", "--legal-basis")
    enrolled = ok_json(run_cli("enroll", folder, *PROVENANCE, "--workers", "1", "--json"))
    assert (enrolled["images_enrolled"], enrolled["persons_created"], enrolled["error_count"]) == (6, 3, 0)
    rerun = ok_json(run_cli("enroll", folder, *PROVENANCE, "--workers", "1", "--json"))
    assert (rerun["images_enrolled"], rerun["images_skipped"]) == (0, 6)

    probe = face_subset.probe("Kelly_Clarkson")
    result = ok_json(run_cli("search", probe, "--top", "2", "--json"))
    assert result["gallery"]["persons"] == 3
    assert {"threshold", "target_fpir", "explanation"} <= set(result["policy"])
    face = result["faces"][0]
    assert len(face["box"]) == 4 and 0 < face["quality"]["score"] <= 100
    assert len(face["candidates"]) == 2
    for candidate in face["candidates"]:
        assert {"score", "fmr", "fpir", "match", "person", "rank"} <= set(candidate)
    assert face["candidates"][0]["person"]["external_id"] == "Kelly_Clarkson"
    assert face["match"] == "Kelly_Clarkson"

    human = run_cli("search", probe)
    assert human.returncode == 0 and "MATCH Kelly_Clarkson" in human.stdout and "threshold" in human.stdout

    a, b = face_subset.images("Lance_Armstrong")[2:4]
    same = ok_json(run_cli("compare", a, b, "--json"))
    assert same["match"] is True and same["score"] >= same["threshold"]
    assert {"score", "fmr", "threshold", "match", "faces"} <= set(same)

    persons = ok_json(run_cli("person", "list", "--json"))
    assert [p["external_id"] for p in persons] == names
    assert all(p["faces"] == 2 and p["source"] == "LFW test subset" for p in persons)
    shown = ok_json(run_cli("person", "show", "Jennifer_Keller", "--json"))
    assert shown["name"] == "Jennifer Keller" and len(shown["images"]) == 2

    stats = ok_json(run_cli("stats", "--json"))
    assert (stats["persons"], stats["images"], stats["faces"]) == (3, 6, 6)
    assert stats["index"]["count"] == 6 and stats["model_id"]

    index_file = next((tmp_home / "index").glob("*.faiss"))
    index_file.write_bytes(b"garbage")
    rebuilt = ok_json(run_cli("index", "rebuild", "--json"))
    assert rebuilt["faces"] == 6
    assert sorted(FaissIndex.load(index_file).ids().tolist()) == list(range(1, 7))

    with sqlite3.connect(tmp_home / "facetrace.db") as conn:
        kelly_faces = {
            r[0]
            for r in conn.execute(
                "SELECT f.id FROM faces f JOIN persons p ON p.id = f.person_id WHERE p.external_id = 'Kelly_Clarkson'"
            )
        }
    erased = ok_json(run_cli("person", "delete", "Kelly_Clarkson", "--yes", "--json"))
    assert erased["external_id"] == "Kelly_Clarkson" and erased["persons"] == 1 and erased["images"] == 2
    assert erased["faces_removed"] == 2 and erased["media_files_removed"] == 2
    # The erasure reached the index file itself, not only the database.
    assert len(kelly_faces) == 2 and not kelly_faces & set(FaissIndex.load(index_file).ids().tolist())
    after = ok_json(run_cli("search", probe, "--top", "5", "--json"))
    assert "Kelly_Clarkson" not in [c["person"]["external_id"] for f in after["faces"] for c in f["candidates"]]
    assert after["faces"][0]["match"] is None and after["gallery"]["persons"] == 2


@pytest.mark.slow
def test_enroll_manifest(tmp_home: Path, tmp_path: Path, face_subset: FaceSubset, run_cli: RunCli) -> None:
    intake = tmp_path / "intake"
    (intake / "img").mkdir(parents=True)
    a = face_subset.images("Orlando_Bloom")[0]
    b = face_subset.images("Romano_Prodi")[:2]
    for src in (a, *b):
        shutil.copyfile(src, intake / "img" / src.name)
    (tmp_path / "secret.jpg").write_bytes(a.read_bytes())
    manifest = intake / "people.csv"
    manifest.write_text(
        "external_id,name,image,source,legal_basis,contact_name,contact_email\n"
        f"P1,Orlando Bloom,img/{a.name},press,public interest,Sam,sam@example.org\n"
        f"P2,Romano Prodi,img/{b[0].name};img/{b[1].name},press,public interest,,\n"
        "P3,Outsider,../secret.jpg,press,public interest,,\n",
        encoding="utf-8",
    )
    out = ok_json(run_cli("enroll", "--manifest", manifest, "--workers", "1", "--json"))
    assert (out["images_enrolled"], out["persons_created"], out["error_count"]) == (3, 2, 1)
    assert "leaves the manifest's folder" in out["errors"][0]["error"]
    assert out["errors"][0]["file"] == "people.csv line 4"
    shown = ok_json(run_cli("person", "show", "P1", "--json"))
    assert shown["metadata"]["contacts"] == [{"name": "Sam", "email": "sam@example.org"}]

    human = run_cli("enroll", "--manifest", manifest, "--workers", "1")
    assert human.returncode == 0
    assert "3 already enrolled; 1 error(s)" in human.stdout and "leaves the manifest's folder" in human.stdout


# -- errors --------------------------------------------------------------------------------------


def _bad_files(root: Path, face_subset: FaceSubset) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    data = face_subset.images("Ashanti")[0].read_bytes()
    files = {
        "text": root / "text.jpg",
        "empty": root / "empty.jpg",
        "truncated": root / "truncated.jpg",
        "binary_csv": root / "binary.csv",
    }
    files["text"].write_text("hello, I am not a photo\n")
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["binary_csv"].write_bytes(data)
    return files


BAD_CLI_CASES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("search", "{text}"), ("text.jpg", "not a supported image")),
    (("search", "{empty}", "--json"), ("empty.jpg", "empty file")),
    (("search", "{truncated}"), ("truncated.jpg",)),
    (("search", "{missing}"), ("not found",)),
    (("compare", "{face}", "{no_face}"), ("no_face.png", "no face found")),
    (("enroll", "--manifest", "{binary_csv}"), ("binary.csv", "not UTF-8 text")),
    (("enroll", "--manifest", "{missing}"), ("manifest not found",)),
    (("enroll", "{dir}", "--manifest", "{binary_csv}"), ("either a FOLDER or --manifest",)),
    (("person", "delete", "nobody", "--yes"), ("nobody",)),
    (("search", "{face}", "--top", "0"), ("--top",)),
    (("no-such-command",), ("no-such-command",)),
]


@pytest.mark.parametrize(
    ("args", "fragments"),
    BAD_CLI_CASES,
    ids=[" ".join(args).replace("{", "").replace("}", "") for args, _ in BAD_CLI_CASES],
)
def test_bad_input_is_one_error_line(
    args: tuple[str, ...],
    fragments: tuple[str, ...],
    tmp_home: Path,
    tmp_path: Path,
    face_subset: FaceSubset,
    special_dir: Path,
    run_cli: RunCli,
) -> None:
    files = _bad_files(tmp_path / "bad", face_subset)
    names = {k: str(v) for k, v in files.items()}
    names.update(
        missing=str(tmp_path / "missing.jpg"),
        dir=str(tmp_path / "bad"),
        face=str(face_subset.images("Ashanti")[0]),
        no_face=str(special_dir / "no_face.png"),
    )
    assert_one_line_error(run_cli(*(a.format(**names) for a in args)), *fragments)


def test_decompression_bomb_is_one_error_line(
    tmp_home: Path, tmp_path: Path, run_cli: RunCli, bomb_png: Callable[[int, int], bytes]
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(8000, 8000))
    assert_one_line_error(run_cli("search", bomb, "--json"), "bomb.png", "exceeds the limit")
    assert_one_line_error(
        run_cli("search", bomb, env={"FACETRACE_MAX_PIXELS": "1000"}), "bomb.png", "exceeds the limit of 1,000 pixels"
    )


def test_enroll_folder_of_only_bad_files_fails(
    tmp_home: Path, tmp_path: Path, face_subset: FaceSubset, special_dir: Path, run_cli: RunCli
) -> None:
    person = tmp_path / "photos" / "Nobody_Useful"
    _bad_files(person, face_subset)
    shutil.copyfile(special_dir / "no_face.png", person / "no_face.png")
    (person / "binary.csv").unlink()  # not an image suffix: not even tried
    proc = run_cli("enroll", tmp_path / "photos", *PROVENANCE, "--workers", "1", "--json")
    assert_one_line_error(proc, "nothing could be enrolled: 4 error(s)")
    report = json.loads(proc.stdout)
    assert report["images_enrolled"] == 0 and report["error_count"] == 4
    assert {Path(e["file"]).name for e in report["errors"]} == {"text.jpg", "empty.jpg", "truncated.jpg", "no_face.png"}
    assert ok_json(run_cli("stats", "--json"))["persons"] == 0


def test_enroll_folder_with_some_bad_files_succeeds_and_reports_them(
    tmp_home: Path, tmp_path: Path, face_subset: FaceSubset, run_cli: RunCli
) -> None:
    folder = _make_folder(tmp_path / "photos", face_subset, ["Vanessa_Redgrave"], per_person=1)
    _bad_files(folder / "Vanessa_Redgrave", face_subset)
    proc = run_cli("enroll", folder, *PROVENANCE, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "enrolled 1 image(s), 1 new person(s)" in proc.stdout
    assert "3 error(s)" in proc.stdout
    for name in ("text.jpg", "empty.jpg", "truncated.jpg"):
        assert name in proc.stdout


# -- kill -9 in the middle of enroll --------------------------------------------------------------


def _count_images(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return 0


@pytest.mark.slow
def test_kill_during_enroll_then_rerun(
    tmp_home: Path, tmp_path: Path, face_subset: FaceSubset, run_cli: RunCli
) -> None:
    names = face_subset.other_identities  # 20 persons x 2 images = 40 images
    folder = _make_folder(tmp_path / "photos", face_subset, names)
    sources = sorted(folder.glob("*/*.jpg"))
    assert len(sources) == 40
    db = tmp_home / "facetrace.db"
    command = [sys.executable, "-m", "facetrace.cli.main", "enroll", str(folder), *PROVENANCE, "--workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 90
        while _count_images(db) < 5:
            assert proc.poll() is None, "enroll finished before it could be killed"
            assert time.monotonic() < deadline, "enroll made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    committed = _count_images(db)
    assert 5 <= committed < 40, committed

    # The rerun finishes the job: what was committed is skipped, the rest enrolled.
    out = ok_json(run_cli("enroll", folder, *PROVENANCE, "--workers", "1", "--json"))
    assert out["error_count"] == 0
    assert out["images_skipped"] == committed
    assert out["images_enrolled"] == 40 - committed

    with sqlite3.connect(db) as conn:
        per_person = dict(
            conn.execute(
                "SELECT p.external_id, COUNT(i.id) FROM persons p JOIN images i ON i.person_id = p.id "
                "GROUP BY p.external_id"
            ).fetchall()
        )
        shas = [row[0] for row in conn.execute("SELECT sha256 FROM images")]
        face_ids = sorted(row[0] for row in conn.execute("SELECT id FROM faces"))
        faces_per_image = {row[0] for row in conn.execute("SELECT COUNT(*) FROM faces GROUP BY image_id")}
        media = [row[0] for row in conn.execute("SELECT media_path FROM images")]
    assert per_person == {name: 2 for name in names}  # every person, every image, exactly once
    assert len(shas) == len(set(shas)) == 40
    assert set(shas) == {sha256_bytes(p.read_bytes()) for p in sources}  # nothing lost
    assert len(face_ids) == 40 and faces_per_image == {1}
    # The index file on disk (read directly, not through the gallery's repair) agrees with the DB.
    index = FaissIndex.load(next((tmp_home / "index").glob("*.faiss")))
    assert sorted(index.ids().tolist()) == face_ids
    assert np.allclose(np.linalg.norm(index.vectors(np.array(face_ids)), axis=1), 1.0, atol=1e-4)
    # Every stored original is there, and no other file (a temporary file cut short by the kill
    # may remain, named .tmp-*: harmless, never referenced).
    stored = sorted(
        str(p.relative_to(tmp_home / "media"))
        for p in (tmp_home / "media").rglob("*")
        if p.is_file() and not p.name.startswith(".tmp-")
    )
    assert stored == sorted(media)


@pytest.mark.parametrize("args", [("worker",), ("serve", "--workers", "2")])
def test_several_processes_need_postgresql(tmp_home: Path, run_cli: RunCli, args: tuple[str, ...]) -> None:
    """SQLite is the single-process embedded default: asking it for more processes is a one-line error."""
    assert_one_line_error(run_cli(*args), "needs PostgreSQL", "FACETRACE_DATABASE_URL")
