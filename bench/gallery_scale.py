"""The product at scale: a gallery of 1M or 10M templates opened, searched, added to and erased through
the server (``facetrace serve``), on SQLite and on PostgreSQL, with the FAISS index or a Milvus server.

A backend is a database, ``sqlite`` or ``postgresql``, with ``+milvus`` for the vectors in the Milvus
server of ``FACETRACE_BENCH_MILVUS_URL`` or ``FACETRACE_TEST_MILVUS_URL`` (``scripts/services.sh``
starts one) instead of the FAISS file: collection ``bench_N``, the product's default ``HNSW`` index.

Usage (docs/scale.md has the results)::

    .venv/bin/python bench/gallery_scale.py --sizes 1M [--backends sqlite,postgresql] [--searches 200]
    .venv/bin/python bench/gallery_scale.py --sizes 1M --backends sqlite+milvus   # the vectors in a Milvus server
    FACETRACE_BENCH_CACHE=/big/disk .venv/bin/python bench/gallery_scale.py --sizes 10M --backends sqlite

For each size N and database:

1. **Fill** the gallery's database through a bulk path: the synthetic templates of
   ``bench/search_scale.py`` (the two-level model fitted to real templates; persons of 2-6 photos and
   single-photo distractors) become persons, images and faces rows, inserted in batches of 20,000 in
   one transaction each (``fill_s``). Real photos of ``tests/data/faces`` (8 people, 2 photos each)
   are enrolled on top through the product, so that real searches have real mates.
2. **Index**: the product builds its index from the database (``Gallery.rebuild_index``: the
   automatic plan, ``IVF{nlist},SQ8`` re-ranked above 200,000 templates) and saves it (``index_s``);
   with Milvus, the rebuild inserts every template into the collection and the time includes Milvus
   sealing and indexing it (until ``describe_index`` says every row is indexed).
3. **Start-up**: ``facetrace serve`` is started on the filled home; ``startup_s`` is the time until
   ``GET /api/v1/ready`` answers 200 (database open, index loaded and checked against the database).
   ``rss_mb`` is the server's resident memory then, and after the searches (``rss_after_mb``);
   ``ready_p50_ms``: the readiness check itself (it compares the index with the database).
4. **Search through the API**: ``POST /api/v1/search`` with a real photo, one client, ``--searches``
   times (p50, p95); the same on an empty gallery gives the image-analysis part (detection, landmarks,
   the descriptor), which does not depend on N; ``gallery_ms`` is the difference of the p50s.
5. **Recall@10** of the index the product opened against exact search over the stored templates
   (1,000 synthetic probes, half mated; the exact neighbours of ``bench/search_scale.py``).
6. **Enrollment while large**: ``POST /api/v1/persons`` with a real photo, 10 times (p50, p95).
7. **Erasure**: ``DELETE /api/v1/persons/ID`` of 10 synthetic persons (p50, p95); then their templates
   must be absent from the results.

Results go to ``bench/results/gallery_scale.json``. The data home of each size and database is kept
under ``$FACETRACE_BENCH_CACHE/gallery-N-DB`` (default ``bench/.cache``) so that a rerun skips the fill
and the index build (reported as measured when they were made); ``--refill`` starts again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss  # noqa: E402
from api_load import HOST, free_port, percentile_ms, start_server, wait_ready  # noqa: E402
from search_scale import CHUNK, Model, generate, label, parse_size, person_sizes, read_chunks  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from facetrace.config import Settings  # noqa: E402
from facetrace.gallery import EnrollItem, Gallery  # noqa: E402
from facetrace.store.accounts import create_token, create_user  # noqa: E402
from facetrace.store.db import Database  # noqa: E402
from facetrace.store.models import Face, Image, Person, utcnow  # noqa: E402

CACHE = Path(os.environ.get("FACETRACE_BENCH_CACHE", Path(__file__).resolve().parent / ".cache"))
RESULTS = Path(__file__).resolve().parent / "results" / "gallery_scale.json"
FACES = REPO_ROOT / "tests" / "data" / "faces"
REAL_PEOPLE = ["Bill_Paxton", "Elton_John", "Kelly_Clarkson", "Orlando_Bloom", "Romano_Prodi", "Tariq_Aziz"]
BATCH = 20_000


def size_name(n: int) -> str:
    return label(n) if n else "empty"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bulk_fill(db: Database, model_id: str, folder: Path, n: int, seed: int = 7) -> dict[str, Any]:
    """Insert the ``n`` synthetic templates of ``folder`` as persons, images and faces; return counts and time."""
    started = time.perf_counter()
    vectors = np.memmap(folder / "vectors.f16", dtype=np.float16, mode="r", shape=(n, 128))
    now = utcnow()
    face_id = person_id = 0
    for chunk in range(-(-n // CHUNK)):
        # The same person sizes generate() drew for this chunk (its generator starts with them).
        sizes = person_sizes(np.random.default_rng([seed, chunk]), min(CHUNK, n - chunk * CHUNK))
        owner = np.repeat(np.arange(person_id + 1, person_id + 1 + len(sizes)), sizes)
        for start in range(0, len(sizes), BATCH):
            persons = [
                {
                    "id": pid,
                    "external_id": f"S-{pid}",
                    "name": f"Synthetic {pid}",
                    "name_key": "",
                    "attributes": {},
                    "source": "synthetic benchmark",
                    "legal_basis": "test data",
                    "created_at": now,
                    "updated_at": now,
                }
                for pid in range(person_id + 1 + start, person_id + 1 + min(start + BATCH, len(sizes)))
            ]
            with db.session() as session:
                session.execute(insert(Person), persons)
        for start in range(0, len(owner), BATCH):
            rows = range(start, min(start + BATCH, len(owner)))
            ids = [face_id + 1 + r for r in rows]
            block = vectors[chunk * CHUNK + rows.start : chunk * CHUNK + rows.stop].astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)  # unit length again after float16, as enrolled
            images = [
                {
                    "id": i,
                    "person_id": int(owner[r]),
                    "sha256": f"{i:064x}",
                    "media_path": f"synthetic/{i}.jpg",
                    "original_name": f"{i}.jpg",
                    "width": 250,
                    "height": 250,
                    "created_at": now,
                }
                for i, r in zip(ids, rows, strict=True)
            ]
            faces = [
                {
                    "id": i,
                    "image_id": i,
                    "person_id": int(owner[r]),
                    "box": [60, 60, 190, 190],
                    "landmarks": [],
                    "detector": "synthetic",
                    "quality": 80.0,
                    "quality_detail": {},
                    "model_id": model_id,
                    "embedding": block[k].tobytes(),
                    "created_at": now,
                }
                for k, (i, r) in enumerate(zip(ids, rows, strict=True))
            ]
            with db.session() as session:
                session.execute(insert(Image), images)
                session.execute(insert(Face), faces)
        face_id += len(owner)
        person_id += len(sizes)
        log(f"filled {face_id:,}/{n:,} templates ({person_id:,} persons)")
    with db.session() as session:
        db.bump_gallery_version(session)
    if db.engine.dialect.name == "postgresql":  # ids were given explicitly: move the sequences past them
        with db.engine.begin() as conn:
            for table in ("persons", "images", "faces"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                conn.exec_driver_sql(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))")
    return {"templates": face_id, "persons": person_id, "fill_s": round(time.perf_counter() - started, 1)}


def milvus_url(n: int) -> str:
    """Return the vector URL of the bench collection of size ``n`` in the bench's Milvus server."""
    base = os.environ.get("FACETRACE_BENCH_MILVUS_URL") or os.environ.get("FACETRACE_TEST_MILVUS_URL")
    if not base:
        raise SystemExit("Milvus: set FACETRACE_BENCH_MILVUS_URL (scripts/services.sh starts a server)")
    return f"{base.rstrip('/')}/bench_{size_name(n).lower()}?write_timeout=600"


def milvus_collection(url: str, *, drop: bool = False) -> Any:
    """Return a client of the bench collection's server and the collection's name; ``drop``: drop it first."""
    from pymilvus import MilvusClient

    from facetrace.index.milvus_index import parse_vector_url

    target = parse_vector_url(url)
    client = MilvusClient(uri=target.uri, token=target.token, timeout=30)
    if drop and client.has_collection(target.collection):
        client.drop_collection(target.collection)  # its row statistics then count this fill only
    return client, target.collection


def wait_milvus_indexed(url: str) -> None:
    """Wait until Milvus has indexed every row of the bench collection (it builds its index in the background)."""
    client, collection = milvus_collection(url)
    try:
        while True:
            info = client.describe_index(collection, "vector")
            # pending_index_rows of Milvus 2.3 also counts segments re-indexed after compaction: not waited for
            if int(info.get("indexed_rows", 0)) >= int(info.get("total_rows", 1)) and info.get("state") == "Finished":
                return
            log(f"Milvus indexing: {info.get('indexed_rows')}/{info.get('total_rows')} rows")
            time.sleep(10)
    finally:
        client.close()


def prepare(n: int, backend: str, args: argparse.Namespace, model: Model) -> tuple[Path, str, str, dict[str, Any]]:
    """Return the filled data home, its database URL, its vector URL (or "") and the facts of the fill and the
    index build."""
    home = CACHE / f"gallery-{size_name(n)}-{backend}"
    facts_file = home / "bench.json"
    database, _, vectors = backend.partition("+")
    database_url = f"sqlite:///{home / 'facetrace.db'}" if database == "sqlite" else pg_database(n)
    vector_url = milvus_url(n) if vectors == "milvus" else ""
    filled_file = home / "filled.json"  # the fill is done (the index may not be built yet)
    if database == "postgresql" and not bench_user_exists(database_url):  # a new (throwaway) PostgreSQL server
        facts_file.unlink(missing_ok=True)
        filled_file.unlink(missing_ok=True)
    if facts_file.exists() and not args.refill:
        return home, database_url, vector_url, json.loads(facts_file.read_text())
    data = CACHE / "scale" / str(n)
    if n and not (data / "vectors.f16").exists():
        generate(model, n, data, queries=1000)
    settings = Settings(
        home=home,
        database_url=database_url,
        vector_url=vector_url or None,
        analysis_processes=1,
        workers=1,
        calibration_path=None,
    )
    if vector_url:
        milvus_collection(vector_url, drop=True)[0].close()
    if filled_file.exists() and not args.refill:
        shutil.rmtree(home / "index", ignore_errors=True)  # a half-built index of an interrupted run
        gallery = Gallery(settings)
        facts = json.loads(filled_file.read_text())
    else:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        if database == "postgresql":
            drop_tables(database_url)
        gallery = Gallery(settings)
        facts = bulk_fill(gallery.db, gallery.model_id, data, n) if n else {"templates": 0, "persons": 0, "fill_s": 0}
        filled_file.write_text(json.dumps(facts))
    items = [
        EnrollItem(p, p.replace("_", " "), sorted((FACES / p).glob("*.jpg"))[1:3], "LFW", "test") for p in REAL_PEOPLE
    ]
    started = time.perf_counter()
    gallery.rebuild_index()  # the automatic plan for the size, trained and filled from the database
    if vector_url:
        wait_milvus_indexed(vector_url)
    facts["index_s"] = round(time.perf_counter() - started, 1)
    gallery.enroll(items, workers=1)  # straight into the index
    facts["index_faces"] = len(gallery.keeper.index())
    facts["index"] = gallery.keeper.index().describe()
    with gallery.db.session() as session:
        user = create_user(session, "bench", "a long bench password", ["examiner", "intake"])
        _, facts["token"] = create_token(session, user, "bench", days=30)
    gallery.close()
    facts_file.write_text(json.dumps(facts, indent=1, default=str))
    log(f"{size_name(n)} {backend}: filled in {facts['fill_s']} s, index built in {facts['index_s']} s")
    return home, database_url, vector_url, facts


def pg_database(n: int) -> str:
    base = os.environ.get("FACETRACE_BENCH_POSTGRES_URL") or os.environ.get("FACETRACE_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("PostgreSQL: set FACETRACE_BENCH_POSTGRES_URL (scripts/services.sh starts one)")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"facetrace_bench_{size_name(n).lower()}"  # kept between runs, like the SQLite homes
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            c.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def bench_user_exists(database_url: str) -> bool:
    """Whether a kept PostgreSQL bench database was filled (its bench account exists)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM users WHERE username = 'bench'")).first())
    except Exception:  # no users table: never filled
        return False
    finally:
        engine.dispose()


def drop_tables(database_url: str) -> None:
    """Empty a kept PostgreSQL bench database (a new fill starts from nothing)."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def timed(http: httpx.Client, method: str, path: str, **request: Any) -> tuple[float, httpx.Response]:
    """Return the seconds a request took and its response."""
    started = time.perf_counter()
    response = http.request(method, path, **request)
    return time.perf_counter() - started, response


def measure_server(
    home: Path, database_url: str, vector_url: str, facts: dict[str, Any], searches: int
) -> dict[str, Any]:
    """Start the server on a filled home and measure start-up, memory, search, enrollment and erasure."""
    port = free_port()
    base = f"http://{HOST}:{port}/api/v1"
    started = time.perf_counter()
    extra = {"FACETRACE_DATABASE_URL": database_url, "FACETRACE_INDEX_AUTO_REBUILD": "false"}
    if vector_url:
        extra["FACETRACE_VECTOR_URL"] = vector_url
    server = start_server(home, port, analysis_processes=1, extra_env=extra)
    try:
        wait_ready(base, server, timeout=1800)
        out: dict[str, Any] = {"startup_s": round(time.perf_counter() - started, 1), "rss_mb": rss_mb(server.pid)}
        headers = {"Authorization": f"Bearer {facts['token']}"}
        probe = sorted((FACES / "Bill_Paxton").glob("*.jpg"))[0]
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            ready = [timed(http, "GET", "/ready")[0] for _ in range(10)]
            out["ready_p50_ms"] = percentile_ms(ready, 0.5)
            latencies = []
            for i in range(searches + 3):
                seconds, response = timed(
                    http,
                    "POST",
                    "/search",
                    files={"image": (probe.name, probe.read_bytes(), "image/jpeg")},
                    data={"case_reference": "BENCH", "purpose": "scale benchmark"},
                )
                assert response.status_code == 200, response.text
                if i >= 3:  # the first searches warm the analysis process
                    latencies.append(seconds)
            top = response.json()["faces"][0]["candidates"][0]["person"]["external_id"]
            out.update(search_p50_ms=percentile_ms(latencies, 0.5), search_p95_ms=percentile_ms(latencies, 0.95))
            out["search_top"] = top
            enroll = []
            for i in range(10):
                photo = sorted((FACES / "Elton_John").glob("*.jpg"))[i % 3]
                seconds, response = timed(
                    http,
                    "POST",
                    "/persons",
                    files={"images": (photo.name, photo.read_bytes(), "image/jpeg")},
                    data={
                        "external_id": f"E-{uuid.uuid4().hex[:8]}",
                        "name": "Enrolled while large",
                        "source": "bench",
                        "legal_basis": "test",
                    },
                )
                assert response.status_code == 201, response.text
                enroll.append(seconds)
            out.update(enroll_p50_ms=percentile_ms(enroll, 0.5), enroll_p95_ms=percentile_ms(enroll, 0.95))
            erase = []
            n_persons = facts.get("persons", 0)
            # Random synthetic persons (a rerun on the same home erases others; one erased before is skipped).
            victims = np.random.default_rng().integers(1, n_persons + 1, size=10) if n_persons else []
            for person in victims:
                seconds, response = timed(http, "DELETE", f"/persons/S-{person}")
                assert response.status_code in (200, 404), response.text
                if response.status_code == 200:
                    erase.append(seconds)
            if erase:
                out.update(erase_p50_ms=percentile_ms(erase, 0.5), erase_p95_ms=percentile_ms(erase, 0.95))
        out["rss_after_mb"] = rss_mb(server.pid)
        return out
    finally:
        server.terminate()
        server.wait(120)


def exact_top10(data: Path, n: int, queries: np.ndarray) -> np.ndarray:
    """Return the exact top-10 face ids of every query over the templates as stored (unit length again
    after float16, as :func:`bulk_fill` wrote them; face id = row + 1), by a blocked scan (cached)."""
    cache = data / "exact10-stored.npy"
    if cache.exists():
        return np.load(cache)
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), 10), -1, dtype=np.int64)
    for start, block in read_chunks(data, n):
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        scores, ids = faiss.knn(queries, block, 10, metric=faiss.METRIC_INNER_PRODUCT)
        merged_s, merged_i = np.hstack([best_s, scores]), np.hstack([best_i, ids + start + 1])
        order = np.argsort(-merged_s, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(merged_s, order, axis=1), np.take_along_axis(merged_i, order, axis=1)
    np.save(cache, best_i)
    return best_i


def index_recall(home: Path, database_url: str, vector_url: str, n: int) -> dict[str, Any]:
    """Recall@10 of the product's index (opened from the database, re-ranked) against exact search."""
    data = CACHE / "scale" / str(n)
    queries = np.load(data / "queries.npy")
    exact_ids = exact_top10(data, n, queries)
    settings = Settings(
        home=home,
        database_url=database_url,
        vector_url=vector_url or None,
        analysis_processes=1,
        calibration_path=None,
    )
    gallery = Gallery(settings)
    index = gallery.keeper.index()
    started = time.perf_counter()
    _, found = index.search(queries, 10)
    seconds = time.perf_counter() - started
    gallery.close()
    hits = [len(set(found[q].tolist()) & set(exact_ids[q].tolist())) / 10 for q in range(len(queries))]
    return {
        "recall_at_10": round(float(np.mean(hits)), 4),
        "batch_ms_per_probe": round(1000 * seconds / len(queries), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M", help="gallery sizes, e.g. 1M,10M")
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgresql,sqlite+milvus,postgresql+milvus")
    parser.add_argument("--searches", type=int, default=100, help="API searches per level")
    parser.add_argument("--refill", action="store_true", help="fill and index again even when cached")
    parser.add_argument("--tag", default="", help="a suffix of the result keys (e.g. 'before' a change)")
    args = parser.parse_args()
    model = Model()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for backend in args.backends.split(","):
        baseline: dict[str, Any] = {}
        # Size 0 first (only the real people): the image-analysis part of a search, which does not depend
        # on N, measured in the same run.
        for n in [0] + [parse_size(s) for s in args.sizes.split(",")]:
            home, url, vector_url, facts = prepare(n, backend, args, model)
            row = {k: v for k, v in facts.items() if k != "token"}
            if n:  # before the server erases some of the templates the exact search counts
                row.update(index_recall(home, url, vector_url, n))
            row.update(measure_server(home, url, vector_url, facts, args.searches))
            if n:
                row["gallery_ms"] = round(row["search_p50_ms"] - baseline["search_p50_ms"], 1)
                row["search_vs_empty"] = round(row["search_p50_ms"] / baseline["search_p50_ms"], 2)
                row["rss_bytes_per_template"] = round(
                    (row["rss_mb"] - baseline["rss_mb"]) * 2**20 / max(1, row["templates"]), 1
                )
            else:
                baseline = row
            results[f"{size_name(n)}-{backend}{'-' + args.tag if args.tag else ''}"] = row
            log(json.dumps(row, default=str))
            RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
