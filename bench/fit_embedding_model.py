"""Fit the synthetic-template generator of ``bench/search_scale.py`` to real face templates.

Run once (a few minutes on one core)::

    .venv/bin/python bench/fit_embedding_model.py [--dataset ../shared/data/faces-dev] [--identities 150]

It embeds up to three photos each of ``--identities`` people of the dataset (people with at least two
photos, chosen deterministically) with the production pipeline (``facetrace.vision.get_analyzer()``:
dlib ResNet with flip test-time augmentation) and fits a two-level Gaussian model of the L2-normalised
templates:

* identity centres ``c ~ N(mu, S_between)``: the mean and the covariance of the per-person mean
  template, corrected for the within-person noise that remains in a mean of a few photos;
* one photo of that person ``x = normalise(c + e)``, ``e ~ N(0, S_within)``: the pooled covariance of
  each template around its person's mean (unbiased, n_i - 1 degrees of freedom).

It stores ``mu`` and the two Cholesky factors in ``bench/embedding_model.npz`` (~130 KB), together
with the real genuine- and impostor-pair cosine statistics the generator is checked against.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

OUT = Path(__file__).resolve().parent / "embedding_model.npz"


def _psd_cholesky(cov: np.ndarray) -> np.ndarray:
    """Return a Cholesky factor of ``cov`` after clipping negative eigenvalues (estimation noise)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    values = np.clip(values, 1e-8, None)
    return np.linalg.cholesky((vectors * values) @ vectors.T)


def pair_stats(templates: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return mean/std of genuine and impostor cosine over every pair of ``templates``."""
    sims = templates @ templates.T
    upper = np.triu_indices(len(templates), 1)
    same = labels[upper[0]] == labels[upper[1]]
    genuine, impostor = sims[upper][same], sims[upper][~same]
    return {
        "genuine_mean": float(genuine.mean()),
        "genuine_std": float(genuine.std()),
        "impostor_mean": float(impostor.mean()),
        "impostor_std": float(impostor.std()),
        "impostor_p99.9": float(np.quantile(impostor, 0.999)),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=REPO_ROOT / ".." / "shared" / "data" / "faces-dev")
    parser.add_argument("--identities", type=int, default=150)
    parser.add_argument("--per-identity", type=int, default=3)
    args = parser.parse_args()

    from facetrace.vision import get_analyzer

    people = sorted(p for p in args.dataset.iterdir() if p.is_dir() and p.name != "distractors")
    people = [p for p in people if len(list(p.glob("*.jpg"))) >= 2]
    rng = np.random.default_rng(20240601)
    chosen = sorted(rng.choice(len(people), size=min(args.identities, len(people)), replace=False).tolist())
    analyzer = get_analyzer()
    templates: list[np.ndarray] = []
    labels: list[int] = []
    started = time.perf_counter()
    for number, index in enumerate(chosen):
        for path in sorted(people[index].glob("*.jpg"))[: args.per_identity]:
            faces = analyzer.analyze_file(path, largest_only=True)
            if faces:
                templates.append(faces[0].embedding.astype(np.float64))
                labels.append(number)
        print(f"\r{number + 1}/{len(chosen)} persons, {len(templates)} templates", end="", file=sys.stderr)
    print(file=sys.stderr)
    x = np.vstack(templates)
    y = np.asarray(labels)
    # keep people with at least two templates (the within-person covariance needs them)
    keep_labels = [label for label in np.unique(y) if (y == label).sum() >= 2]
    mask = np.isin(y, keep_labels)
    x, y = x[mask], y[mask]
    means = np.vstack([x[y == label].mean(axis=0) for label in keep_labels])
    counts = np.array([(y == label).sum() for label in keep_labels])
    residuals = x - means[np.searchsorted(keep_labels, y)]
    within = residuals.T @ residuals / (len(x) - len(keep_labels))
    mu = means.mean(axis=0)
    between = np.cov(means.T) - within * float(np.mean(1.0 / counts))
    stats = pair_stats(x, y)
    np.savez_compressed(
        OUT,
        mu=mu.astype(np.float32),
        chol_between=_psd_cholesky(between).astype(np.float32),
        chol_within=_psd_cholesky(within).astype(np.float32),
        real_stats=json.dumps(stats),
        info=json.dumps(
            {
                "model_id": analyzer.model_id,
                "templates": len(x),
                "persons": len(keep_labels),
                "dataset": "faces-dev (LFW-style, people with >= 2 photos)",
                "seconds": round(time.perf_counter() - started, 1),
            }
        ),
    )
    print(json.dumps({"saved": str(OUT.relative_to(REPO_ROOT)), "persons": len(keep_labels), **stats}, indent=2))


if __name__ == "__main__":
    main()
