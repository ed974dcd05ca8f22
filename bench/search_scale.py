"""1:N search at scale: build time, memory, latency, throughput and recall of the FAISS indexes.

Usage (docs/scale.md has the results)::

    .venv/bin/python bench/search_scale.py --sizes 100k,1M [--configs flat,hnsw-flat,hnsw-sq8,ivf-flat,ivf-sq8]
    FACETRACE_BENCH_CACHE=/big/disk nohup .venv/bin/python bench/search_scale.py --sizes 10M \
        --configs ivf-sq8,hnsw-sq8 --single 200 --efsearch 64,128,256,512,1024 --nprobe-divisors 64,32,16,8 &

For each gallery size N it reports, in ``bench/results/search_scale.json`` and on stdout:

* the exact brute-force scan (all templates as float32 in RAM, ``faiss.knn``): single-probe latency
  (one thread) and batch throughput, the memory-bandwidth bound;
* each index configuration (``Flat``, ``HNSW32,Flat``, ``HNSW32,SQ8`` and ``IVF{nlist},SQ8`` re-ranked
  exactly from the stored vectors, ``IVF{nlist},Flat``), built through
  :class:`facetrace.index.faiss_index.FaissIndex` as the gallery builds it: build time (training +
  adding), memory per template (the index's estimate, and the RSS growth, which is only indicative
  when several indexes are built in one process), p50/p95 single-probe latency, batch probes per
  second, recall@1 and recall@10 against exact search, for a sweep of ``efSearch`` (HNSW) or
  ``nprobe`` (IVF). recall@1: share of probes whose best candidate is the exact best; recall@10:
  mean share of the exact top 10 found in the returned top 10. Reported overall and separately for
  mated probes (the person is enrolled) and non-mated probes.

Synthetic templates (:func:`generate`): 128-d unit vectors from the two-level Gaussian model fitted
to real dlib+flip templates by ``bench/fit_embedding_model.py`` (``bench/embedding_model.npz``):
identity centres ``c ~ N(mu, S_between)``, photos ``normalise(c + s * e)`` with ``e ~ N(0, S_within)``
and a per-photo noise scale ``s`` (log-normal, sigma 0.2) for the spread of photo quality. 60% of
the templates belong to persons with 2 to 6 photos, 40% are distractors (one photo of a person
nobody searches for). Mated probes are a new photo of an enrolled person with several photos;
non-mated probes are a photo of a new person. The generated genuine/impostor cosine statistics are
printed next to the real ones. Vectors are stored as float16 on disk (2.5 GB at 10M) and the
exact search runs on the same rounded values, so "exact" is exact for what the index holds.

Caching: generated data, exact neighbours and built indexes of each size go to
``$FACETRACE_BENCH_CACHE/N`` (default ``bench/.cache/scale``, git-ignored); a second run reuses them
and reports the build time measured when they were built.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import faiss  # noqa: E402

from facetrace.index.faiss_index import FaissIndex, IndexPlan, choose_plan, nlist_for, nprobe_for  # noqa: E402

DIM = 128
MODEL = Path(__file__).resolve().parent / "embedding_model.npz"
RESULTS = Path(__file__).resolve().parent / "results" / "search_scale.json"
CHUNK = 1_000_000
NOISE_SIGMA = 0.2
MULTI_SHARE = 0.6  # share of templates in persons with 2..6 photos; the rest are distractors


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """Return this process's resident memory (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


# -- synthetic templates --------------------------------------------------------------------
class Model:
    """The fitted generator: identity centres and per-photo noise."""

    def __init__(self) -> None:
        data = np.load(MODEL)
        self.mu = data["mu"].astype(np.float32)
        self.between = data["chol_between"].astype(np.float32)
        self.within = data["chol_within"].astype(np.float32)
        self.real_stats = json.loads(str(data["real_stats"]))

    def centres(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mu + rng.standard_normal((n, DIM), dtype=np.float32) @ self.between.T

    def photos(self, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
        scale = np.exp(rng.normal(0.0, NOISE_SIGMA, (len(centres), 1)) - NOISE_SIGMA**2).astype(np.float32)
        x = centres + scale * (rng.standard_normal(centres.shape, dtype=np.float32) @ self.within.T)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def person_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return photo counts per person summing to ``n``: 60% of photos in persons of 2..6, the rest alone."""
    multi = int(n * MULTI_SHARE)
    sizes = rng.integers(2, 7, size=multi // 2 + 10)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), multi)) + 1]
    sizes[-1] -= int(sizes.sum() - multi)
    sizes = sizes[sizes > 0]
    out = np.concatenate([sizes, np.ones(n - int(sizes.sum()), dtype=sizes.dtype)])
    rng.shuffle(out)
    return out


def generate(model: Model, n: int, folder: Path, queries: int, seed: int = 7) -> dict[str, Any]:
    """Write ``vectors.f16`` (n x 128 float16) and ``queries.npy`` to ``folder``; return facts about them."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chunks = max(1, -(-n // CHUNK))
    mated_per_chunk = -(-(queries // 2) // chunks)
    mated: list[np.ndarray] = []
    stats_sample: tuple[np.ndarray, np.ndarray] | None = None
    with open(folder / "vectors.f16.tmp", "wb") as out:
        for chunk in range(chunks):
            rng = np.random.default_rng([seed, chunk])
            size = min(CHUNK, n - chunk * CHUNK)
            sizes = person_sizes(rng, size)
            centres = model.centres(rng, len(sizes))
            x = model.photos(rng, np.repeat(centres, sizes, axis=0))
            out.write(x.astype(np.float16).tobytes())
            several = np.flatnonzero(sizes >= 2)
            chosen = rng.choice(several, size=min(mated_per_chunk, len(several)), replace=False)
            mated.append(model.photos(rng, centres[chosen]))
            if stats_sample is None:
                count = int(np.searchsorted(np.cumsum(sizes), 3000))
                stats_sample = (x[: int(sizes[:count].sum())], np.repeat(np.arange(count), sizes[:count]))
            log(f"generated {min(n, (chunk + 1) * CHUNK):,}/{n:,} templates")
    os.replace(folder / "vectors.f16.tmp", folder / "vectors.f16")
    rng = np.random.default_rng([seed, 10**6])
    mated_q = np.vstack(mated)[: queries // 2]
    non_mated = model.photos(rng, model.centres(rng, queries - len(mated_q)))
    q = np.vstack([mated_q, non_mated]).astype(np.float16).astype(np.float32)
    np.save(folder / "queries.npy", q)
    assert stats_sample is not None
    facts = {
        "n": n,
        "queries": len(q),
        "mated_queries": len(mated_q),
        "generate_s": round(time.perf_counter() - started, 1),
        "synthetic_stats": _pair_stats(*stats_sample),
        "real_stats": model.real_stats,
    }
    (folder / "data.json").write_text(json.dumps(facts, indent=1))
    return facts


def _pair_stats(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    sims = x @ x.T
    upper = np.triu_indices(len(x), 1)
    same = labels[upper[0]] == labels[upper[1]]
    genuine, impostor = sims[upper][same], sims[upper][~same]
    return {
        "genuine_mean": round(float(genuine.mean()), 4),
        "genuine_std": round(float(genuine.std()), 4),
        "impostor_mean": round(float(impostor.mean()), 4),
        "impostor_std": round(float(impostor.std()), 4),
        "impostor_p99.9": round(float(np.quantile(impostor, 0.999)), 4),
    }


def read_chunks(folder: Path, n: int, chunk: int = CHUNK) -> Any:
    """Yield (start, float32 block) over the stored vectors, read (not memory-mapped) block by block."""
    with open(folder / "vectors.f16", "rb") as handle:
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            block = np.frombuffer(handle.read(rows * DIM * 2), dtype=np.float16).reshape(rows, DIM)
            yield start, block.astype(np.float32)


def exact_neighbours(folder: Path, n: int, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """Return the exact top-k (scores, ids) of every query by a blocked scan, and its seconds."""
    cache = folder / f"exact{k}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["scores"], data["ids"], float(data["seconds"])
    started = time.perf_counter()
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start, block in read_chunks(folder, n):
        scores, ids = faiss.knn(queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)
        merged_s = np.hstack([best_s, scores])
        merged_i = np.hstack([best_i, ids + start])
        order = np.argsort(-merged_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(merged_s, order, axis=1)
        best_i = np.take_along_axis(merged_i, order, axis=1)
    seconds = time.perf_counter() - started
    np.savez(cache, scores=best_s, ids=best_i, seconds=seconds)
    return best_s, best_i, seconds


# -- measurements ---------------------------------------------------------------------------
def recall(found: np.ndarray, exact: np.ndarray, k: int) -> np.ndarray:
    """Per query: share of the exact top-k found in the returned top-k (k=1: same best)."""
    return np.array([len(np.intersect1d(f[:k], e[:k])) / k for f, e in zip(found, exact, strict=True)])


def measure(
    index: FaissIndex, queries: np.ndarray, exact_ids: np.ndarray, mated: int, single: int, k: int = 10
) -> dict[str, Any]:
    """Single-probe latency over ``single`` probes, batch throughput and recall over all probes."""
    latencies = []
    for q in queries[:single]:
        t = time.perf_counter()
        index.search(q[None, :], k)
        latencies.append(time.perf_counter() - t)
    t = time.perf_counter()
    _, ids = index.search(queries, k)
    batch_s = time.perf_counter() - t
    r1, r10 = recall(ids, exact_ids, 1), recall(ids, exact_ids, k)
    return {
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
        "batch_qps": round(len(queries) / batch_s, 1),
        "recall@1": round(float(r1.mean()), 4),
        "recall@10": round(float(r10.mean()), 4),
        "recall@10_mated": round(float(r10[:mated].mean()), 4),
        "recall@10_non_mated": round(float(r10[mated:].mean()), 4),
        "recall@1_mated": round(float(r1[:mated].mean()), 4),
        "single_queries": len(latencies),
    }


def build(
    plan: IndexPlan, folder: Path, n: int, *, centroids: np.ndarray | None = None
) -> tuple[FaissIndex, dict[str, Any]]:
    """Build (or load from the cache) the index of ``plan`` over the stored vectors; return it and build facts.

    ``centroids``: trained IVF cluster centres to reuse (same nlist), so that only the codec trains.
    """
    path = folder / f"{plan.factory.replace(',', '_')}.faiss"
    facts_path = path.with_suffix(".build.json")
    gc.collect()
    rss_before = rss_bytes()
    if path.exists() and facts_path.exists():
        started = time.perf_counter()
        index = FaissIndex.load(path)
        facts = json.loads(facts_path.read_text())
        facts["loaded_from_cache_s"] = round(time.perf_counter() - started, 1)
        log(f"{plan.factory}: loaded from the cache in {facts['loaded_from_cache_s']}s")
    else:
        index = FaissIndex(DIM, path=path, plan=plan)
        started = time.perf_counter()
        train_s = 0.0
        if index.needs_training:
            if centroids is not None:
                _reuse_clusters(index, centroids)
            size = min(n, index.training_size())
            sample = np.sort(np.random.default_rng(3).choice(n, size=size, replace=False))
            mm = np.memmap(folder / "vectors.f16", dtype=np.float16, mode="r", shape=(n, DIM))
            train_vectors = np.asarray(mm[sample], dtype=np.float32)
            del mm
            t = time.perf_counter()
            index.train(train_vectors)
            train_s = time.perf_counter() - t
            del train_vectors
            log(f"{plan.factory}: trained in {train_s:.1f}s")
        last_report = time.perf_counter()
        for start, block in read_chunks(folder, n, chunk=100_000):
            index.add(np.arange(start, start + len(block), dtype=np.int64), block)
            if time.perf_counter() - last_report > 60:
                last_report = time.perf_counter()
                rate = (start + len(block)) / (last_report - started)
                log(f"{plan.factory}: added {start + len(block):,}/{n:,} ({rate:,.0f}/s)")
        build_s = time.perf_counter() - started
        t = time.perf_counter()
        index.save()
        facts = {
            "train_s": round(train_s, 1),
            "build_s": round(build_s, 1),
            "save_s": round(time.perf_counter() - t, 1),
            "file_bytes": path.stat().st_size,
            "clusters_reused": centroids is not None,
            "loadavg_after_build": os.getloadavg(),
        }
        facts_path.write_text(json.dumps(facts))
        log(f"{plan.factory}: built in {build_s:.0f}s")
    gc.collect()
    facts["rss_growth_bytes"] = rss_bytes() - rss_before
    facts["index_memory_bytes"] = index.memory_bytes()
    facts["bytes_per_template"] = round(index.memory_bytes() / n, 1)
    facts["rss_bytes_per_template"] = round(facts["rss_growth_bytes"] / n, 1)
    return index, facts


def _reuse_clusters(index: FaissIndex, centroids: np.ndarray) -> None:
    """Give ``index`` trained cluster centres (same nlist), so that only its codec trains."""
    ivf = faiss.extract_index_ivf(index.index)
    ivf.quantizer.reset()
    ivf.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    # a quantizer already holding nlist centres is not retrained: train() fits the scalar quantizer only


def measure_exact_scan(folder: Path, n: int, queries: np.ndarray, single: int, batch: int) -> dict[str, Any]:
    """Time the exact brute-force scan (faiss.knn over all n float32 templates in RAM)."""
    gc.collect()
    x = np.empty((n, DIM), dtype=np.float32)
    for start, block in read_chunks(folder, n):
        x[start : start + len(block)] = block
    latencies = []
    faiss.omp_set_num_threads(1)
    for q in queries[:single]:
        t = time.perf_counter()
        faiss.knn(q[None, :], x, 10, metric=faiss.METRIC_INNER_PRODUCT)
        latencies.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(THREADS)
    t = time.perf_counter()
    faiss.knn(queries[:batch], x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    batch_s = time.perf_counter() - t
    del x
    gc.collect()
    return {
        "how": "faiss.knn over all templates as float32 in RAM (1 thread per single probe)",
        "bytes_scanned": n * DIM * 4,
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
        "single_queries": len(latencies),
        "single_GBps": round(n * DIM * 4 / float(np.percentile(latencies, 50)) / 1e9, 1),
        "batch_qps": round(batch / batch_s, 1),
        "batch_queries": batch,
    }


CONFIGS = {
    "flat": "Flat",
    "hnsw-flat": "HNSW32,Flat",
    "hnsw-sq8": "HNSW32,SQ8",
    "ivf-flat": "IVF{nlist},Flat",
    "ivf-sq8": "IVF{nlist},SQ8",
}


def run_level(n: int, args: argparse.Namespace, model: Model) -> dict[str, Any]:
    folder = args.cache / label(n)
    if not (folder / "data.json").exists():
        data = generate(model, n, folder, args.queries)
    else:
        data = json.loads((folder / "data.json").read_text())
    queries = np.load(folder / "queries.npy")
    mated = int(data["mated_queries"])
    _, exact_ids, exact_batch_s = exact_neighbours(folder, n, queries)
    log(f"N={n:,}: exact neighbours of {len(queries)} probes: {exact_batch_s:.1f}s")
    result: dict[str, Any] = {
        "n": n,
        "threads": THREADS,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "data": data,
        "exact_blocked_scan_from_disk": {"seconds": round(exact_batch_s, 1), "queries": len(queries)},
        "configs": [],
    }
    if n <= args.exact_max:
        result["exact_scan"] = measure_exact_scan(folder, n, queries, single=min(args.single, 50), batch=100)
        log(f"exact scan: {result['exact_scan']}")
    nlist = nlist_for(n)
    centroids = None
    for name in args.configs:
        if name == "flat" and n > args.flat_max:
            continue
        plan = choose_plan(n, factory=CONFIGS[name], nprobe=nprobe_for(nlist))
        plan.rerank = args.rerank if plan.rerank > 1 else 1
        index, facts = build(plan, folder, n, centroids=centroids if name == "ivf-sq8" else None)
        if name == "ivf-flat":
            centroids = faiss.extract_index_ivf(index.index).quantizer.reconstruct_n(0, nlist)
        stored = None
        if plan.rerank > 1:
            stored = np.memmap(folder / "vectors.f16", dtype=np.float16, mode="r", shape=(n, DIM))
            index.vector_source = lambda ids, stored=stored: np.asarray(stored[ids], dtype=np.float32)
        sweep = []
        if plan.hnsw_m:
            settings = [("efsearch", ef) for ef in args.efsearch]
        elif plan.nlist:
            settings = [("nprobe", nlist // d) for d in args.nprobe_divisors if nlist // d >= 1]
        else:
            settings = [("exact", 0)]
        for knob, value in settings:
            if knob == "efsearch":
                index.set_efsearch(value)
            elif knob == "nprobe":
                index.set_nprobe(value)
            m = measure(index, queries, exact_ids, mated, single=args.single)
            sweep.append({knob: value, **m})
            log(f"{plan.factory} {knob}={value}: {m}")
        result["configs"].append(
            {
                "config": name,
                "factory": plan.factory,
                "rerank": plan.rerank,
                "rerank_from": "float16 file (memmap)" if stored is not None else None,
                **facts,
                "sweep": sweep,
            }
        )
        del index, stored
        gc.collect()
    result["loadavg_end"] = os.getloadavg()
    return result


THREADS = 2


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1M")
    parser.add_argument("--configs", default="flat,hnsw-flat,hnsw-sq8,ivf-flat,ivf-sq8")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=300, help="probes timed one by one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--efsearch", default="64,128,256,512")
    parser.add_argument("--nprobe-divisors", default="64,32,16,8,4", help="nprobe = nlist / each")
    parser.add_argument("--rerank", type=int, default=4)
    parser.add_argument("--flat-max", type=parse_size, default=1_000_000, help="largest N also measured as Flat")
    parser.add_argument("--exact-max", type=parse_size, default=10_000_000, help="largest N for the in-RAM scan")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; known: {sorted(CONFIGS)}")
    args.efsearch = [int(x) for x in args.efsearch.split(",")]
    args.nprobe_divisors = [int(x) for x in args.nprobe_divisors.split(",")]
    env_cache = os.environ.get("FACETRACE_BENCH_CACHE")
    args.cache = args.cache or (Path(env_cache) if env_cache else Path(__file__).resolve().parent / ".cache" / "scale")
    THREADS = args.threads
    faiss.omp_set_num_threads(args.threads)
    model = Model()
    for size in args.sizes.split(","):
        n = parse_size(size)
        result = run_level(n, args, model)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results[label(n)] = result
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
