"""Reconciliation beyond the face: exclusion rules and secondary agreement, measured on faces-dev.

faces-dev (../shared/data/faces-dev, or $FACETRACE_DATASET, or the DATASET_DIR argument) is split and
scored exactly as ``bench/accuracy.py`` and ``../shared/eval-protocol.md`` do: the gallery's references
are the *reports* (ante-mortem records), every probe image is a *case* (a post-mortem record). The faces
carry no descriptors, so each identity is given simulated true attributes (sex, date of birth, height,
build, hair, eyes, facial hair, 0-3 distinguishing marks) and each record a simulated *recorded* version
of them under a documented error model (:class:`ErrorModel`, fixed seed). The product's own functions
then decide: ``facts.parse_descriptors`` / ``parse_mark`` read the records, ``rules.exclusions`` rules
pairs out, ``agreement.agreement`` gives the secondary likelihood ratio, ``agreement.adjusted_fmr`` and
the gallery's calibration rank the leads. For speed the 10 million report-case pairs are scored with
numpy formulas taken from those modules; every run checks them against the product functions on all
mated pairs, 100,000 random pairs and the first candidate of every search (a mismatch stops the run).

Figures, each on the protocol's mated / non-mated searches:

1. FNIR at FPIR 0.01 and 0.1 (thresholds from the non-mated searches, as the protocol says) for the face
   alone, face + exclusions, face + agreement (a widened search: nothing screened), and face + exclusions
   + agreement (the product's rule: an agreeing sex, age or height that an active exclusion rule screened
   on weighs nothing; rank by adjusted FMR = face FMR / LR, a lead when the adjusted FPIR over the
   compatible gallery is within the review FPIR, ``matching._passing``); the relative reduction of missed
   mates against the face alone (goal: at least 25% at the same FPIR), and the false leads per search that
   the product's lead rule returns at the calibrated review (0.1) and policy (0.01) FPIR.
2. False candidates removed by the exclusions (all non-mated pairs, the face's false first candidates
   above the protocol thresholds, the false leads at the calibrated review FPIR), and the true mates
   excluded, split by whether the excluding rule's inputs were recorded correctly (goal: none correct).
3. Marks-only search: every case with a recorded mark ranks all compatible reports by
   ``agreement.log10_lr`` without the face; the share of true reports at rank 1 and within 5.
4. Sensitivity: attributes correlated with the face (a stand-in for "look-alikes share sex and age"),
   only the issue's recording error (no typed-in errors), wider estimation errors than the issue's, the
   exclusion tolerances, the field model (the rule before: e 0.1 for age and height, screened fields
   counted, leads the union of face alone and face + agreement), sparing face leads from the exclusions
   and the LR cap; and the spread of the main figures over ten
   simulations of the records (seeds), the faces staying as they are.

    .venv/bin/python bench/reconcile.py [DATASET_DIR] [--quick] [--json] [--workers N] [--seed S] [--seeds N]
        [--out bench/results/reconcile.json] [--plots docs]

The embeddings are cached (``$FACETRACE_BENCH_CACHE``, default bench/.cache); the first run embeds the
6,323 images with the product's default model (about 4 minutes in one process on the 2-core machine),
then the run takes about 6 minutes in one process. ``--quick`` keeps every 4th identity (not the
protocol; about 15 seconds once the cache holds its images) and writes no plot or JSON unless asked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_relative(path: Path) -> str:
    """Return ``path`` relative to the repository (``../shared/...`` for the shared data), so that the
    results committed from one machine name no folder of that machine."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)


sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from facetrace.config import get_settings  # noqa: E402
from facetrace.evaluation.protocol import (  # noqa: E402
    ProbeResult,
    Sample,
    Split,
    build_split,
    compute_metrics,
    det_curve,
    fnir_at_fpir,
    threshold_at_fpir,
)
from facetrace.evaluation.run import GalleryScorer, embed_samples  # noqa: E402
from facetrace.gallery import Gallery  # noqa: E402
from facetrace.gallery.calibration import Calibration, fpir_from_fmr  # noqa: E402
from facetrace.workflow.reconcile import agreement as agreement_module  # noqa: E402
from facetrace.workflow.reconcile.agreement import (  # noqa: E402
    FIELD_MODEL,
    adjusted_fmr,
    agreement,
    compare_descriptors,
    shared_words,
)
from facetrace.workflow.reconcile.facts import (  # noqa: E402
    Descriptors,
    Mark,
    age_on,
    parse_descriptors,
    parse_mark,
)
from facetrace.workflow.reconcile.rules import ExclusionRules, exclusions  # noqa: E402
from facetrace.workflow.reconcile.vocabulary import CHOICES  # noqa: E402

SEED = 20261207
FOUND_ON = date(2026, 6, 1)  # every case is taken as found on this day (the report's age follows from its DOB)
FPIRS = (0.1, 0.01)
REVIEW_FPIR, POLICY_FPIR = 0.1, 0.01  # the product's defaults (FACETRACE_REVIEW_FPIR, FACETRACE_POLICY_FPIR)
QUICK_STRIDE = 4
VERIFY_RANDOM_PAIRS = 100_000
CATEGORICAL = ("build", "hair_colour", "hair_length", "eye_colour", "facial_hair")
RULE_INPUTS = ("sex", "age", "height")

# -- the population: true attributes ------------------------------------------------------------------
P_MALE = 0.7  # most missing persons in armed conflict are men; LFW is about 75% men too
AGES = np.arange(16, 86)
AGE_WEIGHTS = np.array([NormalDist(36, 14).pdf(float(a)) for a in AGES])
HEIGHT_CM = {"male": (176.0, 7.0), "female": (163.0, 6.5)}
BUILD = {"slight": 0.25, "medium": 0.5, "heavy": 0.25}
HAIR_YOUNG = {"black": 0.35, "brown": 0.38, "blond": 0.12, "red": 0.04, "grey": 0.06, "white": 0.01, "none": 0.04}
HAIR_OLD = {"black": 0.15, "brown": 0.2, "blond": 0.05, "red": 0.01, "grey": 0.4, "white": 0.12, "none": 0.07}
HAIR_LENGTH = {
    ("male", False): {"bald": 0.1, "short": 0.7, "medium": 0.15, "long": 0.05},
    ("male", True): {"bald": 0.25, "short": 0.6, "medium": 0.12, "long": 0.03},
    ("female", False): {"bald": 0.01, "short": 0.2, "medium": 0.4, "long": 0.39},
    ("female", True): {"bald": 0.02, "short": 0.35, "medium": 0.4, "long": 0.23},
}
EYES = {"brown": 0.45, "hazel": 0.12, "green": 0.08, "blue": 0.22, "grey": 0.1, "other": 0.03}
FACIAL_HAIR = {
    "male": {"none": 0.45, "stubble": 0.2, "moustache": 0.1, "beard": 0.1, "moustache_and_beard": 0.15},
    "female": {"none": 1.0},
}
MARK_COUNT = {0: 0.35, 1: 0.35, 2: 0.2, 3: 0.1}
MARK_TYPE = {
    "tattoo": 0.35,
    "scar": 0.3,
    "birthmark": 0.1,
    "piercing": 0.1,
    "amputation": 0.02,
    "deformity": 0.03,
    "dental": 0.1,
}
MARK_REGION: dict[str, dict[str, float]] = {
    "tattoo": {
        "forearm": 0.22,
        "upper_arm": 0.18,
        "shoulder": 0.12,
        "chest": 0.1,
        "back": 0.1,
        "hand": 0.06,
        "wrist": 0.05,
        "neck": 0.05,
        "lower_leg": 0.05,
        "finger": 0.04,
        "thigh": 0.03,
    },
    "scar": {
        "abdomen": 0.15,
        "knee": 0.12,
        "hand": 0.1,
        "forearm": 0.1,
        "finger": 0.08,
        "lower_leg": 0.08,
        "forehead": 0.06,
        "cheek": 0.05,
        "chest": 0.05,
        "back": 0.05,
        "eyebrow": 0.04,
        "chin": 0.04,
        "shoulder": 0.04,
        "thigh": 0.04,
    },
    "birthmark": {
        "back": 0.2,
        "cheek": 0.1,
        "neck": 0.1,
        "chest": 0.1,
        "shoulder": 0.1,
        "abdomen": 0.1,
        "thigh": 0.1,
        "upper_arm": 0.1,
        "forehead": 0.05,
        "hand": 0.05,
    },
    "piercing": {"ear": 0.6, "nose": 0.12, "eyebrow": 0.1, "lip": 0.1, "abdomen": 0.08},
    "amputation": {"finger": 0.6, "toe": 0.15, "hand": 0.1, "lower_leg": 0.1, "forearm": 0.05},
    "deformity": {"finger": 0.3, "hand": 0.2, "nose": 0.2, "ear": 0.15, "foot": 0.15},
    "dental": {"mouth": 1.0},
}
MIDLINE = frozenset({"scalp", "forehead", "nose", "lip", "mouth", "chin", "neck", "chest", "abdomen", "back"})
ADJACENT = {
    "forearm": ("wrist", "elbow"),
    "upper_arm": ("shoulder", "elbow"),
    "shoulder": ("upper_arm", "back"),
    "hand": ("wrist", "finger"),
    "wrist": ("forearm", "hand"),
    "finger": ("hand",),
    "chest": ("abdomen", "shoulder"),
    "abdomen": ("chest", "hip"),
    "back": ("shoulder",),
    "neck": ("chest",),
    "lower_leg": ("knee", "ankle"),
    "thigh": ("knee", "hip"),
    "knee": ("thigh", "lower_leg"),
    "cheek": ("chin",),
    "forehead": ("eyebrow",),
    "eyebrow": ("forehead",),
}
CONFUSED = {"scar": "birthmark", "birthmark": "scar", "deformity": "scar", "amputation": "deformity"}
# Words of a mark: (Cyrillic, Latin transliteration A, Latin transliteration B, English), most common first.
# Transliterations follow the usual Russian (BGN/PCGN) and Ukrainian national systems, not facetrace's key.
WORDS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "tattoo": (
        ("крест", "krest", "krest", "cross"),
        ("роза", "roza", "roza", "rose"),
        ("якорь", "yakor", "iakor", "anchor"),
        ("сердце", "serdtse", "sertse", "heart"),
        ("мама", "mama", "mama", "mother"),
        ("звезда", "zvezda", "zvezda", "star"),
        ("ВДВ", "VDV", "VDV", "VDV"),
        ("тризуб", "tryzub", "tryzub", "trident"),
        ("череп", "cherep", "cherep", "skull"),
        ("ангел", "angel", "anhel", "angel"),
        ("змея", "zmeya", "zmiia", "snake"),
        ("орёл", "oryol", "orel", "eagle"),
        ("волк", "volk", "volk", "wolf"),
        ("дракон", "drakon", "drakon", "dragon"),
        ("тигр", "tigr", "tyhr", "tiger"),
        ("Мария", "Mariya", "Mariia", "Maria"),
        ("солнце", "solntse", "sontse", "sun"),
        ("паук", "pauk", "pauk", "spider"),
        ("чайка", "chayka", "chaika", "seagull"),
        ("бабочка", "babochka", "babochka", "butterfly"),
        ("лилия", "liliya", "liliia", "lily"),
        ("луна", "luna", "luna", "moon"),
        ("птица", "ptitsa", "ptytsia", "bird"),
        ("кот", "kot", "kot", "cat"),
    ),
    "scar": (
        ("операция", "operatsiya", "operatsiia", "surgery"),
        ("ожог", "ozhog", "ozhoh", "burn"),
        ("пуля", "pulya", "pulia", "bullet"),
        ("нож", "nozh", "nozh", "knife"),
    ),
    "dental": (
        ("золото", "zoloto", "zoloto", "gold"),
        ("коронка", "koronka", "koronka", "crown"),
        ("щель", "shchel", "shchil", "gap"),
    ),
}
WORD_SHARE = {"tattoo": 0.85, "scar": 0.3, "dental": 0.4}  # marks of the type that carry a word


@dataclass(frozen=True)
class ErrorModel:
    """How the two records of one person are written. Rates are per record and field.

    A *recording error* (``sex_wrong``, ``typo``) makes the field wrong beyond any estimation error; it
    is flagged, so that an exclusion it causes is told apart from one the tolerances should have
    absorbed. Estimation errors (``case_age_error_years`` ...) are uniform within +-the bound.
    """

    name: str = "issue"
    unknown: float = 0.3  # each descriptor, each record
    sex_wrong: float = 0.03
    typo: float = 0.02  # date of birth, age range, report height, case height: far off (flagged)
    report_height_error_cm: float = 3.0  # the family's figure
    case_age_error_years: float = 8.0  # the centre of the estimated range
    case_age_half_width: float = 5.0  # the range is centre +- this (10 years wide)
    case_height_error_cm: float = 7.0
    case_height_half_width: float = 5.0
    dob_precision: tuple[float, float, float] = (0.6, 0.1, 0.3)  # full date, year and month, year only
    differs: Mapping[str, float] = field(
        default_factory=lambda: {
            "build": 0.1,
            "hair_colour": 0.08,
            "hair_length": 0.1,
            "eye_colour": 0.05,
            "facial_hair": 0.15,
        }
    )
    mark_on_report: float = 0.7  # each true mark is recorded on the report with this chance
    mark_on_case: float = 0.6  # ... and on the case (marks are missed on remains)
    mark_region_moved: float = 0.08  # recorded on an adjacent region (forearm -> wrist)
    mark_type_confused: float = 0.05  # scar <-> birthmark, deformity -> scar, amputation -> deformity
    mark_side_unknown: float = 0.25
    mark_side_wrong: float = 0.03
    word_on_report: float = 0.8  # a mark's word is written down
    word_on_case: float = 0.6
    cyrillic_on_report: float = 0.6  # else a Latin transliteration (A or B)
    cyrillic_on_case: float = 0.3
    word_translated: float = 0.2  # a Latin record writes the English word instead of transliterating


ISSUE_MODEL = ErrorModel()
NO_TYPO_MODEL = replace(ISSUE_MODEL, name="no typos", typo=0.0)
WIDER_MODEL = replace(
    ISSUE_MODEL, name="wider", case_age_error_years=12.0, case_height_error_cm=10.0, report_height_error_cm=5.0
)


@dataclass(frozen=True)
class TrueMark:
    type: str
    region: str
    side: str | None
    word: int | None  # index into WORDS[type]


@dataclass(frozen=True)
class Person:
    """One identity's true attributes."""

    sex: str
    born: date
    age: int  # on FOUND_ON
    height: int
    build: str
    hair_colour: str
    hair_length: str
    eye_colour: str
    facial_hair: str
    marks: tuple[TrueMark, ...]


@dataclass(frozen=True)
class Record:
    """A report's or a case's recorded version of a person, and which rule inputs are right."""

    descriptors: Descriptors
    date_of_birth: str | None
    marks: tuple[Mark, ...]
    mark_origin: frozenset[int]  # indices of the person's marks that this record holds
    correct: Mapping[str, bool]  # "sex", "age", "height": recorded without a recording error (or unknown)


def rng_for(*parts: object) -> np.random.Generator:
    """Return a generator seeded by ``parts`` alone (independent of the order records are drawn in)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng([int.from_bytes(digest[i : i + 8], "big") for i in range(0, 32, 8)])


def pick(table: Mapping[Any, float], u: float) -> Any:
    """Return the key of ``table`` (weights) at cumulative share ``u`` in [0, 1)."""
    keys = list(table)
    cumulative = np.cumsum([table[k] for k in keys])
    return keys[min(int(np.searchsorted(cumulative / cumulative[-1], u, side="right")), len(keys) - 1)]


def draw_person(identity: str, seed: int, u_given: Mapping[str, float] | None = None) -> Person:
    """Draw one identity's true attributes. ``u_given`` replaces the uniform numbers behind sex, age,
    height, hair colour and eye colour (the face-correlated variant)."""
    rng = rng_for(seed, "person", identity)
    u = {k: float(rng.random()) for k in ("sex", "age", "height", "hair_colour", "eye_colour")}
    u.update(u_given or {})
    sex = "male" if u["sex"] < P_MALE else "female"
    years = int(pick(dict(zip(AGES.tolist(), AGE_WEIGHTS.tolist(), strict=True)), u["age"]))
    born = FOUND_ON - timedelta(days=int(years * 365.25 + rng.random() * 365))
    age = int(age_on(born.isoformat(), FOUND_ON).low or 0)
    mean, sd = HEIGHT_CM[sex]
    height = round(mean + sd * NormalDist().inv_cdf(min(max(u["height"], 1e-6), 1 - 1e-6)))
    old = age >= 55
    marks = []
    for _ in range(int(pick(MARK_COUNT, rng.random()))):
        kind = str(pick(MARK_TYPE, rng.random()))
        region = str(pick(MARK_REGION[kind], rng.random()))
        side = "centre" if region in MIDLINE else ("left" if rng.random() < 0.5 else "right")
        word = None
        if kind in WORDS and rng.random() < WORD_SHARE[kind]:
            weights = {k: 1.0 / (k + 1) ** 0.8 for k in range(len(WORDS[kind]))}
            word = int(pick(weights, rng.random()))
        marks.append(TrueMark(kind, region, side, word))
    return Person(
        sex=sex,
        born=born,
        age=age,
        height=height,
        build=str(pick(BUILD, rng.random())),
        hair_colour=str(pick(HAIR_OLD if old else HAIR_YOUNG, u["hair_colour"])),
        hair_length=str(pick(HAIR_LENGTH[(sex, old)], rng.random())),
        eye_colour=str(pick(EYES, u["eye_colour"])),
        facial_hair=str(pick(FACIAL_HAIR[sex], rng.random())),
        marks=tuple(marks),
    )


def _categorical(rng: np.random.Generator, person: Person, model: ErrorModel) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in CATEGORICAL:
        value: str | None = getattr(person, name)
        if rng.random() < model.unknown:
            value = None
        elif rng.random() < model.differs[name]:
            others = [c for c in CHOICES[name] if c != value]
            value = others[int(rng.integers(len(others)))]
        out[name] = value
    return out


def _sex(rng: np.random.Generator, person: Person, model: ErrorModel) -> tuple[str | None, bool]:
    if rng.random() < model.unknown:
        return None, True
    if rng.random() < model.sex_wrong:
        return ("female" if person.sex == "male" else "male"), False
    return person.sex, True


def _far(rng: np.random.Generator, low: int, high: int) -> int:
    """A recording error's offset: low..high, either sign."""
    return int(rng.integers(low, high + 1)) * (1 if rng.random() < 0.5 else -1)


def _write_word(rng: np.random.Generator, word: tuple[str, str, str, str], cyrillic: float, model: ErrorModel) -> str:
    if rng.random() < cyrillic:
        return word[0]
    if rng.random() < model.word_translated:
        return word[3]
    return word[1] if rng.random() < 0.5 else word[2]


def _marks(
    rng: np.random.Generator, person: Person, model: ErrorModel, *, report: bool
) -> tuple[tuple[Mark, ...], frozenset[int]]:
    on, word_on = (model.mark_on_report, model.word_on_report) if report else (model.mark_on_case, model.word_on_case)
    cyrillic = model.cyrillic_on_report if report else model.cyrillic_on_case
    out, origin = [], set()
    for number, mark in enumerate(person.marks):
        if rng.random() >= on:
            continue
        origin.add(number)
        kind, region, side = mark.type, mark.region, mark.side
        if kind in CONFUSED and rng.random() < model.mark_type_confused:
            kind = CONFUSED[kind]
        if region in ADJACENT and rng.random() < model.mark_region_moved:
            region = ADJACENT[region][int(rng.integers(len(ADJACENT[region])))]
        roll = rng.random()
        if roll < model.mark_side_unknown:
            side = None
        elif roll < model.mark_side_unknown + model.mark_side_wrong and side in ("left", "right"):
            side = "right" if side == "left" else "left"
        keywords = []
        if mark.word is not None and rng.random() < word_on:
            keywords.append(_write_word(rng, WORDS[mark.type][mark.word], cyrillic, model))
        out.append(parse_mark({"type": kind, "region": region, "side": side, "keywords": keywords}))
    return tuple(out), frozenset(origin)


def record_report(person: Person, key: str, seed: int, model: ErrorModel) -> Record:
    """The report's (ante-mortem, from the family) version: sex, date of birth, height, descriptors, marks."""
    rng = rng_for(seed, "report", key)
    sex, sex_ok = _sex(rng, person, model)
    dob, age_ok = None, True
    if rng.random() >= model.unknown:
        born = person.born
        if rng.random() < model.typo:
            born = date(born.year + _far(rng, 3, 15), born.month, min(born.day, 28))
            age_ok = False
        precision = pick(dict(enumerate(model.dob_precision)), rng.random())
        dob = born.isoformat()[: (10, 7, 4)[precision]]
    height, height_ok = None, True
    if rng.random() >= model.unknown:
        error = rng.uniform(-model.report_height_error_cm, model.report_height_error_cm)
        if rng.random() < model.typo:
            error += _far(rng, 10, 25)
            height_ok = False
        height = min(max(round(person.height + error), 40), 250)
    data = {"sex": sex, "height": height, **_categorical(rng, person, model)}
    marks, origin = _marks(rng, person, model, report=True)
    correct = {"sex": sex_ok, "age": age_ok, "height": height_ok}
    return Record(parse_descriptors(data, record="report"), dob, marks, origin, correct)


def _range(
    rng: np.random.Generator, truth: float, error: float, half: float, typo: float, far: tuple[int, int]
) -> tuple[int, int, bool]:
    centre = truth + rng.uniform(-error, error)
    ok = True
    if rng.random() < typo:
        centre += _far(rng, *far)
        ok = False
    return round(centre - half), round(centre + half), ok


def record_case(person: Person, key: str, seed: int, model: ErrorModel) -> Record:
    """The case's (post-mortem examination) version: sex, estimated age and height ranges, descriptors, marks."""
    rng = rng_for(seed, "case", key)
    sex, sex_ok = _sex(rng, person, model)
    data: dict[str, Any] = {"sex": sex}
    age_ok = height_ok = True
    if rng.random() >= model.unknown:
        low, high, age_ok = _range(
            rng, person.age, model.case_age_error_years, model.case_age_half_width, model.typo, (15, 30)
        )
        data["age_min"], data["age_max"] = min(max(low, 0), 120), min(max(high, 0), 120)
    if rng.random() >= model.unknown:
        low, high, height_ok = _range(
            rng, person.height, model.case_height_error_cm, model.case_height_half_width, model.typo, (12, 25)
        )
        data["height_min"], data["height_max"] = min(max(low, 40), 250), min(max(high, 40), 250)
    data.update(_categorical(rng, person, model))
    marks, origin = _marks(rng, person, model, report=False)
    correct = {"sex": sex_ok, "age": age_ok, "height": height_ok}
    return Record(parse_descriptors(data, record="case"), None, marks, origin, correct)


# -- faces ---------------------------------------------------------------------------------------------


def default_dataset_dir() -> Path:
    """Return ``$FACETRACE_DATASET`` when set, else ``<repo root>/../shared/data/faces-dev``."""
    return Path(os.environ.get("FACETRACE_DATASET", REPO_ROOT.parent / "shared" / "data" / "faces-dev"))


def cache_dir() -> Path:
    return Path(os.environ.get("FACETRACE_BENCH_CACHE", REPO_ROOT / "bench" / ".cache"))


def embeddings(
    dataset: Path, split: Split, workers: int, gallery: Gallery
) -> tuple[dict[Path, np.ndarray | None], float]:
    """Return the product's embedding of the largest face of every split image (None: no face) and the
    seconds spent embedding; cached per dataset folder and model (images not in the cache are added)."""
    model_id = gallery.model_id
    target = cache_dir() / f"reconcile-embeddings-{dataset.name}.npz"
    known: dict[str, np.ndarray | None] = {}
    if target.exists():
        data = np.load(target, allow_pickle=False)
        if str(data["model_id"]) == model_id:
            for path, vector, ok in zip(data["paths"], data["vectors"], data["ok"], strict=True):
                known[str(path)] = vector if ok else None
    samples = split.all_samples()

    def name(sample: Sample) -> str:
        return sample.path.relative_to(dataset).as_posix()

    todo = [s for s in samples if name(s) not in known]
    seconds = 0.0
    if todo:
        print(f"embedding {len(todo)} images with {model_id} ({workers} worker(s))...", file=sys.stderr, flush=True)
        embedded = embed_samples(todo, workers=workers, options=gallery.analyzer_options)
        seconds = embedded.seconds
        for sample, vector in zip(todo, embedded.vectors, strict=True):
            known[name(sample)] = vector
        paths = sorted(known)
        dim = next(len(v) for v in known.values() if v is not None)
        blank = np.zeros(dim, np.float32)
        rows: list[np.ndarray] = [vector if (vector := known[p]) is not None else blank for p in paths]
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            target,
            paths=np.array(paths),
            vectors=np.vstack(rows),
            ok=np.array([known[p] is not None for p in paths]),
            model_id=np.array(model_id),
        )
    return {s.path: known[name(s)] for s in samples}, seconds


def log10_fmr(calibration: Calibration, scores: np.ndarray) -> np.ndarray:
    """``log10(calibration.fmr(s))`` for a whole array (the same three pieces: table, interpolation, tail)."""
    inside = np.interp(scores, calibration.scores, calibration.log_fmr)
    tail = calibration.tail_log_fmr + calibration.tail_slope * (scores - calibration.tail_start)
    out = np.where(scores > calibration.tail_start, tail, inside)
    return np.where(scores <= calibration.scores[0], min(0.0, float(calibration.log_fmr[0])), out)


def decision_score(adjusted_log10_fmr: np.ndarray, compatible: np.ndarray) -> np.ndarray:
    """Return ``-log10(lambda)`` with FPIR = 1 - exp(-lambda), lambda = -N log(1 - FMR_adj): higher is
    stronger, the same order as the adjusted FPIR over N compatible reports, without rounding to 1."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        small = adjusted_log10_fmr < -8.0
        fmr = np.power(10.0, np.minimum(adjusted_log10_fmr, 0.0))
        rate = np.where(small, adjusted_log10_fmr, np.log10(-np.log1p(-np.where(small, 0.5, fmr))))
        return -np.log10(np.maximum(compatible, 1.0)) - rate


def fpir_limit_score(target: float) -> float:
    """The :func:`decision_score` at which the adjusted FPIR equals ``target``."""
    return -math.log10(-math.log1p(-target))


# -- pairs ---------------------------------------------------------------------------------------------


@dataclass
class Pairs:
    """What the product's rules and agreement say of every (case, report) pair, as matrices (cases x reports)."""

    sex_conflict: np.ndarray
    age_gap: np.ndarray  # NaN: unknown on either record
    height_gap: np.ndarray
    verdicts: dict[str, np.ndarray]  # field -> 0 unknown, 1 agrees, 2 disagrees (agreement.compare_descriptors)
    llr_marks: np.ndarray  # the sum of the corresponding marks' log10 LRs
    rule_ok: dict[str, np.ndarray]  # rule -> inputs recorded correctly on both records
    marks_on_both: np.ndarray  # one of the person's marks recorded on both records (mated pairs)

    def excluded(self, rules: ExclusionRules) -> np.ndarray:
        out = self.sex_conflict.copy() if rules.sex else np.zeros_like(self.sex_conflict)
        with np.errstate(invalid="ignore"):
            if rules.age_tolerance_years is not None:
                out |= self.age_gap > rules.age_tolerance_years
            if rules.height_tolerance_cm is not None:
                out |= self.height_gap > rules.height_tolerance_cm
        return out

    def excluded_by(self, rules: ExclusionRules) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore"):
            return {
                "sex": self.sex_conflict & rules.sex,
                "age": self.age_gap > (rules.age_tolerance_years if rules.age_tolerance_years is not None else np.inf),
                "height": self.height_gap
                > (rules.height_tolerance_cm if rules.height_tolerance_cm is not None else np.inf),
            }

    def llr_fields(
        self, field_model: Mapping[str, tuple[float, float]] = FIELD_MODEL, screened: frozenset[str] = frozenset()
    ) -> np.ndarray:
        """The sum of the descriptors' log10 LRs, in FIELD_MODEL's order (as agreement.Agreement sums them); a
        field in ``screened`` (an exclusion rule applied to it) weighs nothing when it agrees
        (agreement.compare_descriptors)."""
        total = np.zeros(self.sex_conflict.shape)
        for name in FIELD_MODEL:
            agrees, disagrees = _lr_terms(name, field_model)
            total = total + np.array([0.0, 0.0 if name in screened else agrees, disagrees])[self.verdicts[name]]
        return total

    def log10_lr(
        self,
        cap: float = agreement_module.MAX_LOG10_LR,
        field_model: Mapping[str, tuple[float, float]] = FIELD_MODEL,
        screened: frozenset[str] = frozenset(),
    ) -> np.ndarray:
        return np.clip(self.llr_fields(field_model, screened) + self.llr_marks, -cap, cap)


def _span(low: float | None, high: float | None) -> tuple[float, float]:
    return (np.nan if low is None else float(low)), (np.nan if high is None else float(high))


def _gap(case: np.ndarray, report: np.ndarray) -> np.ndarray:
    """``Span.gap`` for every pair; NaN where either span is unknown. ``case``/``report``: (n, 2) low, high."""
    c_known = ~np.isnan(case).all(axis=1)
    r_known = ~np.isnan(report).all(axis=1)
    c_low, c_high = np.nan_to_num(case[:, 0], nan=-np.inf), np.nan_to_num(case[:, 1], nan=np.inf)
    r_low, r_high = np.nan_to_num(report[:, 0], nan=-np.inf), np.nan_to_num(report[:, 1], nan=np.inf)
    gap = np.maximum(0.0, np.maximum(r_low[None, :] - c_high[:, None], c_low[:, None] - r_high[None, :]))
    return np.where(c_known[:, None] & r_known[None, :], gap, np.nan)


def _lr_terms(name: str, field_model: Mapping[str, tuple[float, float]] = FIELD_MODEL) -> tuple[float, float]:
    """log10 LR of an agreeing and of a disagreeing field (agreement.py's rule)."""
    p, e = field_model[name]
    return math.log10((1 - e) / p), math.log10(e / (1 - p))


def _codes(records: Sequence[Record], name: str) -> np.ndarray:
    index = {c: k + 1 for k, c in enumerate(CHOICES[name])}
    return np.array([index.get(getattr(r.descriptors, name), 0) for r in records], dtype=np.int64)


def build_pairs(cases: Sequence[Record], reports: Sequence[Record], mate: np.ndarray) -> tuple[Pairs, dict[str, Any]]:
    """Score every (case, report) pair; also return how often fields agree between unrelated people and
    disagree between the two records of one person in this simulation (beside agreement.FIELD_MODEL)."""
    n_cases, n_reports = len(cases), len(reports)
    sexes = {None: 0, "female": 1, "male": 2}
    case_sex = np.array([sexes[c.descriptors.sex] for c in cases])
    report_sex = np.array([sexes[r.descriptors.sex] for r in reports])
    sex_known = (case_sex[:, None] > 0) & (report_sex[None, :] > 0)
    sex_same = case_sex[:, None] == report_sex[None, :]
    report_age = np.array([_span(*(lambda s: (s.low, s.high))(age_on(r.date_of_birth, FOUND_ON))) for r in reports])
    case_age = np.array([_span(c.descriptors.age_min, c.descriptors.age_max) for c in cases])
    report_height = np.array([_span(r.descriptors.height_min, r.descriptors.height_max) for r in reports])
    case_height = np.array([_span(c.descriptors.height_min, c.descriptors.height_max) for c in cases])
    age_gap, height_gap = _gap(case_age, report_age), _gap(case_height, report_height)
    model_check: dict[str, Any] = {}
    verdicts: dict[str, np.ndarray] = {}
    nonmate = ~mate
    for name in FIELD_MODEL:
        if name == "sex":
            known, same = sex_known, sex_same
        elif name in ("age", "height"):
            gap = age_gap if name == "age" else height_gap
            known, same = ~np.isnan(gap), gap == 0
        else:
            c_codes, r_codes = _codes(cases, name), _codes(reports, name)
            known = (c_codes[:, None] > 0) & (r_codes[None, :] > 0)
            same = c_codes[:, None] == r_codes[None, :]
        verdicts[name] = np.where(known, np.where(same, 1, 2), 0).astype(np.int8)
        p, e = FIELD_MODEL[name]
        model_check[name] = {
            "p_model": p,
            "p_simulated": float((same & known & nonmate).sum() / max(1, (known & nonmate).sum())),
            "e_model": e,
            "e_simulated": float((~same & known & mate).sum() / max(1, (known & mate).sum())),
        }
    llr_marks = np.zeros((n_cases, n_reports))
    by_place: dict[tuple[str, str], set[int]] = defaultdict(set)
    for j, report in enumerate(reports):
        for mark in report.marks:
            by_place[(mark.type, mark.region)].add(j)
    for i, case in enumerate(cases):
        candidates = (
            set().union(*(by_place.get((m.type, m.region), set()) for m in case.marks)) if case.marks else set()
        )
        for j in candidates:
            corresponding = agreement_module.corresponding_marks(list(reports[j].marks), list(case.marks))
            if corresponding:
                llr_marks[i, j] = sum(math.log10(p.lr) for p in corresponding)
    rule_ok = {
        rule: np.array([c.correct[rule] for c in cases])[:, None]
        & np.array([r.correct[rule] for r in reports])[None, :]
        for rule in RULE_INPUTS
    }
    both = np.zeros((n_cases, n_reports), dtype=bool)
    for i, j in zip(*np.nonzero(mate), strict=True):
        both[i, j] = bool(cases[i].mark_origin & reports[j].mark_origin)
    pairs = Pairs(sex_known & ~sex_same, age_gap, height_gap, verdicts, llr_marks, rule_ok, both)
    return pairs, model_check


def mark_rarity_check(cases: Sequence[Record], reports: Sequence[Record], mate: np.ndarray) -> dict[str, Any]:
    """For each mark type: the share of unrelated reports with a corresponding mark (same type and region,
    sides not contradicting), beside agreement.MARK_RARITY, and how often such a pair also shares a word."""
    by_place: dict[tuple[str, str], list[tuple[int, Mark]]] = defaultdict(list)
    for j, report in enumerate(reports):
        for mark in report.marks:
            by_place[(mark.type, mark.region)].append((j, mark))
    found: dict[str, list[float]] = defaultdict(list)
    worded: dict[str, list[bool]] = defaultdict(list)
    n_reports = len(reports)
    for i, case in enumerate(cases):
        for cm in case.marks:
            hits = set()
            for j, rm in by_place.get((cm.type, cm.region), []):
                sides_ok = cm.side is None or rm.side is None or "both" in (cm.side, rm.side) or cm.side == rm.side
                if mate[i, j] or not sides_ok:
                    continue
                hits.add(j)
                if cm.keywords and rm.keywords:
                    worded[cm.type].append(bool(shared_words(rm, cm)))
            found[cm.type].append(len(hits) / n_reports)
    return {
        kind: {
            "rarity_model": agreement_module.MARK_RARITY[kind],
            "rarity_simulated": round(float(np.mean(found[kind])), 4) if found[kind] else None,
            "unrelated_pairs_sharing_a_word_when_both_have_words": round(float(np.mean(worded[kind])), 4)
            if worded[kind]
            else None,
        }
        for kind in agreement_module.MARK_RARITY
    }


def verify(
    pairs: Pairs,
    cases: Sequence[Record],
    reports: Sequence[Record],
    which: Sequence[tuple[int, int]],
    face_scores: np.ndarray,
    face_rows: np.ndarray,
    calibration: Calibration,
    n_compatible_by_case: np.ndarray,
) -> int:
    """Check the matrices against the product's ``exclusions``, ``agreement`` (screened by the default rules,
    and not screened), ``adjusted_fmr`` and ``fpir_from_fmr`` over the compatible reports (and the face FMR
    against ``calibration.fmr``) on the pairs ``which``; raise AssertionError on any mismatch."""
    rules = ExclusionRules()
    screened = rules.fields()  # a screened, non-widened search (records.agreement_of(report, case, rules))
    excluded = pairs.excluded_by(rules)
    llr = pairs.log10_lr(screened=screened)
    llr_open = pairs.log10_lr()  # a widened search: nothing screened
    for i, j in which:
        case, report = cases[i], reports[j]
        product = {
            e.rule for e in exclusions(report.descriptors, report.date_of_birth, case.descriptors, FOUND_ON, rules)
        }
        ours = {rule for rule in RULE_INPUTS if excluded[rule][i, j]}
        assert product == ours, f"exclusions differ for case {i}, report {j}: product {product}, bench {ours}"
        secondary = agreement(
            report.descriptors,
            report.date_of_birth,
            list(report.marks),
            case.descriptors,
            FOUND_ON,
            list(case.marks),
            screened,
        )
        assert abs(secondary.log10_lr - llr[i, j]) < 1e-9, f"log10 LR differs for {i}, {j}"
        open_fields = compare_descriptors(report.descriptors, report.date_of_birth, case.descriptors, FOUND_ON)
        open_total = sum(math.log10(f.lr) for f in open_fields) + sum(math.log10(m.lr) for m in secondary.marks)
        open_llr = max(-agreement_module.MAX_LOG10_LR, min(agreement_module.MAX_LOG10_LR, open_total))
        assert abs(open_llr - llr_open[i, j]) < 1e-9, f"unscreened log10 LR differs for {i}, {j}"
        row = face_rows[i]
        if row >= 0:
            face_fmr = calibration.fmr(float(face_scores[row, j]))
            ours_log = float(log10_fmr(calibration, np.array([face_scores[row, j]]))[0])
            assert abs(math.log10(face_fmr) - ours_log) < 1e-9, f"face FMR differs for {i}, {j}"
            adjusted = adjusted_fmr(face_fmr, secondary)
            ours_adjusted = min(0.0, max(-300.0, ours_log - float(llr[i, j])))
            assert abs(math.log10(adjusted) - ours_adjusted) < 1e-9, f"adjusted FMR differs for {i}, {j}"
            n_compatible = int(n_compatible_by_case[i])
            fpir = fpir_from_fmr(adjusted, n_compatible)
            rate = 10.0 ** -float(decision_score(np.array([ours_adjusted]), np.array([float(n_compatible)]))[0])
            ours_fpir = -math.expm1(-rate)
            assert abs(fpir - ours_fpir) <= 1e-7 * fpir + 1e-300, f"adjusted FPIR differs for {i}, {j}"
    return len(which)


# -- searches ------------------------------------------------------------------------------------------


@dataclass
class World:
    """One simulated set of records on the faces-dev split, with the face scores."""

    model: ErrorModel
    cases: list[Record]
    reports: list[Record]
    truths: list[str | None]  # per case: the identity when mated, else None
    gallery_ids: list[str]
    mate: np.ndarray  # cases x reports
    mate_index: np.ndarray  # per case: the report index of its mate, -1 when non-mated
    face_rows: np.ndarray  # per case: its row in ``scores``, -1 when no face was found
    scores: np.ndarray  # face rows x reports: the product's normalised scores
    log_fmr: np.ndarray  # face rows x reports: log10 FMR(score)
    pairs: Pairs
    model_check: dict[str, Any]


def _results(world: World, key: np.ndarray, score: np.ndarray, top: int = 10) -> tuple[list[ProbeResult], ...]:
    """Protocol results of one system: per face row, the candidates by ``key`` (lower first, then higher face
    score), each with ``score``; excluded reports carry key +inf and are left out."""
    mated: list[ProbeResult] = []
    nonmated: list[ProbeResult] = []
    first = None
    if top == 1:  # the same first candidate as the lexsort below, for the whole matrix at once
        lowest = key.min(axis=1, keepdims=True)
        first = np.argmax(np.where(key == lowest, world.scores, -np.inf), axis=1)
    for i, truth in enumerate(world.truths):
        row = world.face_rows[i]
        candidates: list[tuple[str, float]] = []
        if row >= 0:
            order = first[row : row + 1] if first is not None else np.lexsort((-world.scores[row], key[row]))[:top]
            candidates = [(world.gallery_ids[j], float(score[row, j])) for j in order if np.isfinite(key[row, j])]
        (mated if truth is not None else nonmated).append(ProbeResult(truth, candidates))
    return mated, nonmated


FULL = "face + exclusions + agreement"
LEAD_UNION = "union: face alone or face + agreement (before)"
ALL_N = "  same, FPIR over all reports"  # the adjusted FPIR over the whole gallery, not the compatible part
SYSTEMS = ("face alone", "face + exclusions", "face + agreement", FULL, ALL_N)


@dataclass(frozen=True)
class Variant:
    """A setting of the reconciliation parameters (the product's defaults when left as they are)."""

    rules: ExclusionRules = ExclusionRules()
    cap: float = agreement_module.MAX_LOG10_LR
    field_model: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(FIELD_MODEL))
    spare_face_leads: bool = False  # never exclude a candidate whose face alone is a lead at the review FPIR
    screen: bool = True  # an agreeing field that an active exclusion rule screened on weighs nothing (the product)

    def screened(self) -> frozenset[str]:
        return self.rules.fields() if self.screen else frozenset()


def systems(world: World, variant: Variant, only: Sequence[str] = SYSTEMS) -> dict[str, dict[str, Any]]:
    """The systems' ranking keys (lower first), protocol scores and decision scores (face rows x reports)."""
    rows = world.face_rows >= 0
    excluded = world.pairs.excluded(variant.rules)[rows]
    llr = world.pairs.log10_lr(variant.cap, variant.field_model, variant.screened())[rows]
    llr_open = world.pairs.log10_lr(variant.cap, variant.field_model)[rows]  # widened: nothing screened
    n_all = np.full((excluded.shape[0], 1), float(excluded.shape[1]))
    if variant.spare_face_leads:
        excluded &= decision_score(world.log_fmr, n_all) < fpir_limit_score(REVIEW_FPIR)
    n_compatible = (~excluded).sum(axis=1, keepdims=True).astype(float)
    adjusted = np.clip(world.log_fmr - llr, -300.0, 0.0)
    adjusted_open = np.clip(world.log_fmr - llr_open, -300.0, 0.0)
    out: dict[str, dict[str, Any]] = {}
    for name, adj, n, ex, lr in (
        ("face alone", world.log_fmr, n_all, None, None),
        ("face + exclusions", world.log_fmr, n_compatible, excluded, None),
        ("face + agreement", adjusted_open, n_all, None, llr_open),
        (FULL, adjusted, n_compatible, excluded, llr),
        (ALL_N, adjusted, n_all, excluded, llr),
    ):
        if name not in only:
            continue
        if name == "face alone":
            key, score = -world.scores, world.scores  # the protocol's own figures on the raw score
        else:
            key, score = adj.copy(), decision_score(adj, n)
        if ex is not None:
            key[ex] = np.inf
            score = np.where(ex, -np.inf, score)
        out[name] = {"key": key, "score": score, "decision": decision_score(adj, n), "excluded": ex, "llr": lr}
    return out


def evaluate(
    world: World, variant: Variant, *, details: bool = True, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Return the protocol's figures of the four systems, and (``details``) the exclusions' effect and the
    leads at the calibrated review and policy FPIR."""
    report: dict[str, Any] = {"systems": {}}
    rows = world.face_rows >= 0
    mate = world.mate[rows]
    face_cases = np.nonzero(rows)[0]
    mated_rows = np.array([world.truths[i] is not None for i in face_cases])
    curves: dict[str, list[tuple[float, float]]] = {}
    base: dict[str, float] = {}
    only = only or (SYSTEMS if details else ("face alone", "face + exclusions", FULL, ALL_N))
    face_false_leads: dict[float, np.ndarray] = {}
    lead_sets: dict[tuple[str, float], np.ndarray] = {}
    rules = variant.rules
    found = systems(world, variant, only)
    for name, system in found.items():
        mated, nonmated = _results(world, system["key"], system["score"], top=10 if details else 1)
        figures: dict[str, Any] = (
            compute_metrics(mated, nonmated)
            if details
            else {f"fnir_at_fpir_{f}": fnir_at_fpir(mated, nonmated, f) for f in FPIRS}
        )
        for fpir in FPIRS:
            key = f"fnir_at_fpir_{fpir}"
            if name == "face alone":
                base[key] = figures[key]
            figures[f"missed_mates_reduction_at_fpir_{fpir}"] = 1.0 - figures[key] / base[key] if base[key] else 0.0
            figures[f"threshold_at_fpir_{fpir}"] = threshold_at_fpir(nonmated, fpir)
        if details:
            curves[name] = det_curve(mated, nonmated, 40)
        passing = {
            target: (system["decision"] >= fpir_limit_score(target))
            & (True if system["excluded"] is None else ~system["excluded"])
            for target in (REVIEW_FPIR, POLICY_FPIR)
        }
        for target, ok in passing.items():
            lead_sets[(name, target)] = ok
            if name == "face alone":
                face_false_leads[target] = ok & ~mate
            figures[f"leads_at_fpir_{target}"] = {
                "mates_found": float((ok & mate)[mated_rows].any(axis=1).mean()),
                "false_leads_per_search": float((ok & ~mate).sum(axis=1).mean()),
                "searches_with_a_false_lead": float((ok & ~mate).any(axis=1).mean()),
            }
        report["systems"][name] = figures
    # The product's lead rule (workflow/matching.py ``_passing``): one criterion, the adjusted FPIR over the
    # compatible reports within the target, except that a pair whose face alone passes and whose secondary
    # log10 LR >= 0 always passes (the product's rounding guard; here it changes nothing, as such a pair's
    # adjusted FPIR is at most its face FPIR). Beside it: the same over all reports, and the rule before,
    # the union "face alone (compatible) OR face + agreement (compatible)".
    if ("face + exclusions", REVIEW_FPIR) in lead_sets and (FULL, REVIEW_FPIR) in lead_sets:
        llr = found[FULL]["llr"]
        rules_out: dict[str, dict[str, Any]] = {}
        for label, combine in (
            ("product lead rule", lambda face, full, _all: full | (face & (llr >= 0))),
            ("the same, adjusted FPIR over all reports", lambda face, _full, all_n: all_n | (face & (llr >= 0))),
            (LEAD_UNION, lambda face, full, _all: face | full),
        ):
            if ALL_N not in found and "all reports" in label:
                continue
            rules_out[label] = {
                str(target): {
                    "mates_found": float((ok & mate)[mated_rows].any(axis=1).mean()),
                    "false_leads_per_search": float((ok & ~mate).sum(axis=1).mean()),
                    "searches_with_a_false_lead": float((ok & ~mate).any(axis=1).mean()),
                }
                for target in (REVIEW_FPIR, POLICY_FPIR)
                for ok in [
                    combine(
                        lead_sets[("face + exclusions", target)],
                        lead_sets[(FULL, target)],
                        lead_sets.get((ALL_N, target)),
                    )
                ]
            }
        report["lead_rules"] = rules_out
    if not details:
        return report
    report["_det"] = curves
    excluded = world.pairs.excluded(rules)
    face = report["systems"]["face alone"]
    nonmate_pairs = ~world.mate
    effect: dict[str, Any] = {"nonmated_pairs_excluded": float(excluded[nonmate_pairs].mean())}
    # The face's false first candidates above the protocol thresholds, in the non-mated searches.
    top = np.argmax(world.scores, axis=1)
    best = world.scores[np.arange(len(top)), top]
    nonmated_rows = ~mated_rows
    for fpir in FPIRS:
        above = nonmated_rows & (best > face[f"threshold_at_fpir_{fpir}"])
        hit = excluded[face_cases, top][above]
        effect[f"face_false_first_candidates_above_T{fpir}"] = int(above.sum())
        effect[f"of_which_excluded_at_T{fpir}"] = float(hit.mean()) if hit.size else 0.0
    # The face's false leads at the calibrated review and policy FPIR: how many the rules rule out.
    for target, false_leads in face_false_leads.items():
        removed = excluded[face_cases][false_leads]
        effect[f"face_false_leads_at_fpir_{target}"] = int(false_leads.sum())
        effect[f"of_which_excluded_at_fpir_{target}"] = float(removed.mean()) if removed.size else 0.0
    # True mates excluded, and whether the rule that excluded them read correctly recorded inputs.
    by_rule = world.pairs.excluded_by(rules)
    mated_cases = world.mate_index >= 0
    i = np.nonzero(mated_cases)[0]
    j = world.mate_index[mated_cases]
    fired = {rule: by_rule[rule][i, j] for rule in RULE_INPUTS}
    good = {rule: fired[rule] & world.pairs.rule_ok[rule][i, j] for rule in RULE_INPUTS}
    any_fired = np.any([fired[r] for r in RULE_INPUTS], axis=0)
    any_good = np.any([good[r] for r in RULE_INPUTS], axis=0)
    effect["true_mates"] = int(len(i))
    effect["true_mates_excluded"] = int(any_fired.sum())
    effect["true_mates_excluded_with_correct_inputs"] = int(any_good.sum())
    effect["true_mates_excluded_only_by_recording_errors"] = int((any_fired & ~any_good).sum())
    effect["true_mates_excluded_by_rule"] = {
        rule: {"all": int(fired[rule].sum()), "correct_inputs": int(good[rule].sum())} for rule in RULE_INPUTS
    }
    report["exclusions"] = effect
    return report


def marks_only(world: World, variant: Variant, ranks: int = 20) -> dict[str, Any]:
    """Every mated case with a recorded mark ranks all compatible reports by log10 LR (no face). Ties are
    broken at random: the figures are the expected shares over the tie-breaks."""
    excluded, cap = world.pairs.excluded(variant.rules), variant.cap
    llr = np.round(world.pairs.log10_lr(cap, variant.field_model, variant.screened()), 9)
    cmc_all, cmc_both = [], []
    for i in np.nonzero(world.mate_index >= 0)[0]:
        if not world.cases[i].marks:
            continue
        j = world.mate_index[i]
        curve = np.zeros(ranks)
        if not excluded[i, j] and llr[i, j] > 0:  # the product's search lists only log10 LR > 0
            compatible = ~excluded[i]
            better = int((llr[i][compatible] > llr[i, j]).sum())
            tied = int((llr[i][compatible] == llr[i, j]).sum()) - 1
            k = np.arange(1, ranks + 1)
            curve = np.clip((k - better) / (tied + 1), 0.0, 1.0)
        cmc_all.append(curve)
        if world.pairs.marks_on_both[i, j]:
            cmc_both.append(curve)
    mated = int((world.mate_index >= 0).sum())
    out: dict[str, Any] = {"mated_cases": mated}
    for name, cmc in (("mark_recorded_on_both", cmc_both), ("mark_recorded_on_the_case", cmc_all)):
        mean = np.mean(cmc, axis=0) if cmc else np.zeros(ranks)
        out[name] = {"cases": len(cmc), "rank1": float(mean[0]), "rank5": float(mean[4]), "cmc": mean.tolist()}
    # Marks-only leads: adjusted FMR = 1 / LR (no face), a lead when its adjusted FPIR over the compatible
    # reports is within the review FPIR. Could one ever be? Only if N_compatible * 10^-cap is small enough.
    n_compatible = (~excluded).sum(axis=1)
    with_marks = np.array([bool(c.marks) for c in world.cases])
    lead = (
        (decision_score(np.clip(-llr, -300.0, 0.0), n_compatible[:, None]) >= fpir_limit_score(REVIEW_FPIR))
        & ~excluded
        & (world.pairs.llr_marks > 0)  # a marks lead needs a corresponding mark (matching._marks_hits)
    )
    mated_with_marks = with_marks & (world.mate_index >= 0)
    out["leads_at_review_fpir"] = {
        "mates_found": float((lead & world.mate)[mated_with_marks].any(axis=1).mean()),
        "false_leads_per_case": float((lead & ~world.mate)[with_marks].sum(axis=1).mean()),
    }
    best_possible = 1.0 - np.power(1.0 - 10.0**-cap, n_compatible)
    out["cases_where_a_marks_only_lead_can_reach_review_fpir"] = float((best_possible <= REVIEW_FPIR).mean())
    out["median_compatible_reports"] = float(np.median(n_compatible))
    return out


# -- the run -------------------------------------------------------------------------------------------


def identity_vectors(split: Split, vectors: dict[Path, np.ndarray | None]) -> dict[str, np.ndarray]:
    """Each identity's mean face (unit length), over its images in the split."""
    grouped: dict[str, list[np.ndarray]] = defaultdict(list)
    for sample in split.all_samples():
        vector = vectors[sample.path]
        if vector is not None:
            grouped[sample.identity].append(vector)
    out = {}
    for identity, items in grouped.items():
        mean = np.mean(items, axis=0)
        out[identity] = mean / np.linalg.norm(mean)
    return out


def correlated_uniforms(faces: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Uniform numbers from each identity's rank along the first principal components of the identities'
    mean faces: sex on the 1st, age the 2nd, height the 3rd, hair colour the 4th, eye colour the 5th. Faces
    that look alike then share these attributes far more often than chance (a worst case for exclusions)."""
    names = sorted(faces)
    matrix = np.vstack([faces[n] for n in names])
    centred = matrix - matrix.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for k, attribute in enumerate(("sex", "age", "height", "hair_colour", "eye_colour")):
        projection = centred @ components[k]
        ranks = np.argsort(np.argsort(projection))
        for name, rank in zip(names, ranks, strict=True):
            out[name][attribute] = (rank + 0.5) / len(names)
    return out


def make_world(
    split: Split,
    faces: tuple[list[str], np.ndarray, np.ndarray, np.ndarray],
    calibration: Calibration,
    model: ErrorModel,
    seed: int,
    u_given: dict[str, dict[str, float]] | None,
) -> World:
    gallery_ids, face_rows, scores, log_fmr = faces
    identities = sorted({s.identity for s in split.all_samples()})
    people = {name: draw_person(name, seed, (u_given or {}).get(name)) for name in identities}
    reports = [record_report(people[name], name, seed, model) for name in gallery_ids]
    probes = [*split.mated, *split.nonmated]
    cases = [record_case(people[s.identity], f"{s.identity}/{s.path.name}", seed, model) for s in probes]
    truths: list[str | None] = [s.identity for s in split.mated] + [None] * len(split.nonmated)
    position = {name: j for j, name in enumerate(gallery_ids)}
    mate_index = np.array([position.get(t, -1) if t is not None else -1 for t in truths])
    mate = np.zeros((len(cases), len(reports)), dtype=bool)
    has = mate_index >= 0
    mate[np.nonzero(has)[0], mate_index[has]] = True
    pairs, check = build_pairs(cases, reports, mate)
    return World(model, cases, reports, truths, gallery_ids, mate, mate_index, face_rows, scores, log_fmr, pairs, check)


def face_scores(
    split: Split, vectors: dict[Path, np.ndarray | None], model_id: str, calibration: Calibration
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The product's normalised face scores of every probe against the enrolled reports, as
    ``facetrace.evaluation.run.evaluate_embedded`` computes them, and their log10 FMR."""
    enrolled: list[tuple[str, np.ndarray]] = [
        (s.identity, vector) for s in split.gallery if (vector := vectors[s.path]) is not None
    ]
    gallery_ids = [name for name, _ in enrolled]
    scorer = GalleryScorer(np.vstack([v for _, v in enrolled]), model_id)
    probes = [*split.mated, *split.nonmated]
    found = [vectors[s.path] for s in probes]
    face_rows = np.cumsum([v is not None for v in found]) - 1
    face_rows = np.where([v is not None for v in found], face_rows, -1)
    scores = scorer.scores(np.vstack([v for v in found if v is not None])).astype(np.float64)
    return gallery_ids, face_rows, scores, log10_fmr(calibration, scores)


def verify_world(world: World, calibration: Calibration, seed: int) -> int:
    """Verify on all mated pairs, random pairs, and every face row's first candidate of each system."""
    rng = np.random.default_rng(seed)
    n_cases, n_reports = world.mate.shape
    which = {(int(i), int(j)) for i, j in zip(*np.nonzero(world.mate), strict=True)}
    count = min(VERIFY_RANDOM_PAIRS, n_cases * n_reports)
    which |= {
        (int(i), int(j))
        for i, j in zip(rng.integers(n_cases, size=count), rng.integers(n_reports, size=count), strict=True)
    }
    rows = np.nonzero(world.face_rows >= 0)[0]
    for system in systems(world, Variant()).values():
        key = system["key"]
        best = np.argmin(np.where(np.isfinite(key), key, np.inf), axis=1)
        which |= {(int(i), int(j)) for i, j in zip(rows, best, strict=True)}
    n_compatible = (~world.pairs.excluded(ExclusionRules())).sum(axis=1)
    return verify(
        world.pairs, world.cases, world.reports, sorted(which), world.scores, world.face_rows, calibration, n_compatible
    )


def seed_spread(
    split: Split,
    faces: tuple[list[str], np.ndarray, np.ndarray, np.ndarray],
    calibration: Calibration,
    seeds: list[int],
) -> dict[str, Any]:
    """The main figures for each seed, and their mean, minimum and maximum."""
    rows: dict[str, list[float]] = defaultdict(list)
    for seed in seeds:
        world = make_world(split, faces, calibration, ISSUE_MODEL, seed, None)
        figures = evaluate(world, Variant(), details=False, only=SYSTEMS)
        for t in (REVIEW_FPIR, POLICY_FPIR):
            rule = figures["lead_rules"]["product lead rule"][str(t)]
            rows[f"product lead rule | false leads per search@{t}"].append(rule["false_leads_per_search"])
            rows[f"product lead rule | mates found@{t}"].append(rule["mates_found"])
        for name, f in figures["systems"].items():
            for fpir in FPIRS:
                rows[f"{name.strip()} | FNIR@{fpir}"].append(f[f"fnir_at_fpir_{fpir}"])
                rows[f"{name.strip()} | fewer missed@{fpir}"].append(f[f"missed_mates_reduction_at_fpir_{fpir}"])
            rows[f"{name.strip()} | false leads@{REVIEW_FPIR}"].append(
                f[f"leads_at_fpir_{REVIEW_FPIR}"]["false_leads_per_search"]
            )
        for variant in SPREAD_VARIANTS:
            evaluated = evaluate(world, VARIANTS[variant], details=False)
            figures = evaluated["systems"]
            for fpir in FPIRS:
                rows[f"{variant} | fewer missed@{fpir}"].append(figures[FULL][f"missed_mates_reduction_at_fpir_{fpir}"])
            rule = LEAD_UNION if variant == BEFORE else "product lead rule"
            rows[f"{variant} | false leads@{REVIEW_FPIR} ({'union' if variant == BEFORE else 'product'} rule)"].append(
                evaluated["lead_rules"][rule][str(REVIEW_FPIR)]["false_leads_per_search"]
            )
        mated = world.mate_index >= 0
        i, j = np.nonzero(mated)[0], world.mate_index[mated]
        by_rule = world.pairs.excluded_by(ExclusionRules())
        fired = np.any([by_rule[r][i, j] for r in RULE_INPUTS], axis=0)
        good = np.any([by_rule[r][i, j] & world.pairs.rule_ok[r][i, j] for r in RULE_INPUTS], axis=0)
        rows["true mates excluded"].append(float(fired.sum()))
        rows["true mates excluded with correct inputs"].append(float(good.sum()))
        marks = marks_only(world, Variant())["mark_recorded_on_both"]
        rows["marks-only rank 1 (mark on both)"].append(marks["rank1"])
        rows["marks-only within 5 (mark on both)"].append(marks["rank5"])
        del world
    return {
        "seeds": seeds,
        "figures": {
            k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "values": v}
            for k, v in rows.items()
        },
    }


def run(dataset: Path, *, quick: bool, workers: int, seed: int, extra_seeds: int) -> dict[str, Any]:
    start = time.perf_counter()
    split = build_split(dataset, identity_stride=QUICK_STRIDE if quick else 1)
    gallery = Gallery(get_settings())
    calibration = gallery.calibration
    vectors, embed_seconds = embeddings(dataset, split, workers, gallery)
    faces = face_scores(split, vectors, gallery.model_id, calibration)
    default = Variant()
    result: dict[str, Any] = {
        "dataset": repo_relative(dataset),
        "quick": quick,
        "split": split.counts(),
        "failure_to_extract": int(sum(v is None for v in vectors.values())),
        "model_id": gallery.model_id,
        "calibration": calibration.info.get("source", ""),
        "seed": seed,
        "found_on": FOUND_ON.isoformat(),
        "error_model": {k: v for k, v in ISSUE_MODEL.__dict__.items() if k != "name"},
        "rules": default.rules.__dict__,
        "max_log10_lr": default.cap,
    }
    world = make_world(split, faces, calibration, ISSUE_MODEL, seed, None)
    result["verified_pairs"] = verify_world(world, calibration, seed)
    main = evaluate(world, default)
    result["_det"] = main.pop("_det")
    result.update(main)
    result["marks_only"] = marks_only(world, default)
    result["simulated_vs_field_model"] = world.model_check
    result["simulated_vs_mark_rarity"] = mark_rarity_check(world.cases, world.reports, world.mate)
    result["true_attributes_shared_with_face_false_candidate"] = shared_attributes(world, split, seed, None)
    result["variants"] = sweep(world, VARIANTS)
    # Sensitivity 1: only the recording error the issue names (wrong sex), no typed-in errors.
    no_typo = make_world(split, faces, calibration, NO_TYPO_MODEL, seed, None)
    result["no_typos"] = evaluate(no_typo, default)
    result["no_typos"].pop("_det")
    # Sensitivity 2: wider estimation errors than the issue's.
    wider = make_world(split, faces, calibration, WIDER_MODEL, seed, None)
    result["wider_errors"] = {
        "error_model": {k: v for k, v in WIDER_MODEL.__dict__.items() if k.startswith(("case_", "report_"))},
        **evaluate(wider, default),
    }
    result["wider_errors"].pop("_det")
    result["wider_errors"]["variants"] = sweep(wider, {k: VARIANTS[k] for k in WIDER_VARIANTS})
    # Sensitivity 3: attributes that follow the face (look-alikes share sex, age, height, hair, eyes).
    u_given = correlated_uniforms(identity_vectors(split, vectors))
    correlated = make_world(split, faces, calibration, ISSUE_MODEL, seed, u_given)
    result["face_correlated"] = evaluate(correlated, default)
    result["_det_correlated"] = result["face_correlated"].pop("_det")
    result["face_correlated"]["marks_only"] = marks_only(correlated, default)
    result["face_correlated"]["true_attributes_shared_with_face_false_candidate"] = shared_attributes(
        correlated, split, seed, u_given
    )
    result["face_correlated"]["variants"] = sweep(correlated, {k: VARIANTS[k] for k in CORRELATED_VARIANTS})
    # The spread over other simulations of the records (the faces stay as they are).
    result["seed_spread"] = seed_spread(split, faces, calibration, [seed, *range(1, extra_seeds + 1)])
    result["embed_seconds"] = round(embed_seconds, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def shared_attributes(
    world: World, split: Split, seed: int, u_given: dict[str, dict[str, float]] | None
) -> dict[str, float]:
    """How often the face's first candidate in a non-mated search has the searched person's true sex, an age
    within 5 years and a height within 5 cm (1/2, ~0.3, ~0.4 when attributes are independent of the face)."""
    people = {
        name: draw_person(name, seed, (u_given or {}).get(name)) for name in {s.identity for s in split.all_samples()}
    }
    probes = [*split.mated, *split.nonmated]
    same_sex, near_age, near_height = [], [], []
    for i, sample in enumerate(probes):
        row = world.face_rows[i]
        if world.truths[i] is not None or row < 0:
            continue
        a, b = people[sample.identity], people[world.gallery_ids[int(np.argmax(world.scores[row]))]]
        same_sex.append(a.sex == b.sex)
        near_age.append(abs(a.age - b.age) <= 5)
        near_height.append(abs(a.height - b.height) <= 5)
    return {
        "same_sex": float(np.mean(same_sex)),
        "age_within_5_years": float(np.mean(near_age)),
        "height_within_5_cm": float(np.mean(near_height)),
    }


BEFORE_FIELD_MODEL = {**FIELD_MODEL, "age": (FIELD_MODEL["age"][0], 0.1), "height": (FIELD_MODEL["height"][0], 0.1)}
NO_EXCLUSIONS = ExclusionRules(sex=False, age_tolerance_years=None, height_tolerance_cm=None)
BEFORE = "before: e(age, height) 0.1, screened fields counted"
VARIANTS: dict[str, Variant] = {
    "product defaults": Variant(),
    BEFORE: Variant(field_model=BEFORE_FIELD_MODEL, screen=False),
    "e(age) = e(height) = 0.1": Variant(field_model=BEFORE_FIELD_MODEL),
    "agreeing screened fields counted": Variant(screen=False),
    "tolerances 3 y / 3 cm": Variant(rules=ExclusionRules(age_tolerance_years=3.0, height_tolerance_cm=3.0)),
    "tolerances 8 y / 8 cm": Variant(rules=ExclusionRules(age_tolerance_years=8.0, height_tolerance_cm=8.0)),
    "tolerances 10 y / 10 cm": Variant(rules=ExclusionRules(age_tolerance_years=10.0, height_tolerance_cm=10.0)),
    "sex rule off": Variant(rules=ExclusionRules(sex=False)),
    "no exclusions": Variant(rules=NO_EXCLUSIONS),
    "exclusions spare face leads": Variant(spare_face_leads=True),
    "LR cap 10^3": Variant(cap=3.0),
    "LR cap 10^5": Variant(cap=5.0),
    "LR cap 10^6": Variant(cap=6.0),
    "LR cap 10^5, no exclusions": Variant(rules=NO_EXCLUSIONS, cap=5.0),
}
SPREAD_VARIANTS = (
    BEFORE,
    "tolerances 10 y / 10 cm",
    "sex rule off",
    "exclusions spare face leads",
    "no exclusions",
)
WIDER_VARIANTS = (
    "product defaults",
    BEFORE,
    "tolerances 8 y / 8 cm",
    "tolerances 10 y / 10 cm",
    "no exclusions",
    "exclusions spare face leads",
)
CORRELATED_VARIANTS = (
    "product defaults",
    BEFORE,
    "no exclusions",
    "exclusions spare face leads",
)


def sweep(world: World, variants: Mapping[str, Variant]) -> dict[str, dict[str, Any]]:
    """For each variant: FNIR of face + exclusions + agreement, the true mates and non-mated pairs excluded,
    the false leads per search at the calibrated review FPIR, and the marks-only figures."""
    out = {}
    mated = world.mate_index >= 0
    i = np.nonzero(mated)[0]
    j = world.mate_index[mated]
    for name, variant in variants.items():
        evaluated = evaluate(world, variant, details=False)
        figures = evaluated["systems"]
        full = figures[FULL]
        by_rule = world.pairs.excluded_by(variant.rules)
        excluded = world.pairs.excluded(variant.rules)
        rows = world.face_rows[i]
        spared = np.zeros(len(i), dtype=bool)
        if variant.spare_face_leads:
            n = float(world.mate.shape[1])
            strong = decision_score(world.log_fmr[rows, j], np.full(len(i), n)) >= fpir_limit_score(REVIEW_FPIR)
            spared = (rows >= 0) & strong
        good = np.any([by_rule[r][i, j] & world.pairs.rule_ok[r][i, j] for r in RULE_INPUTS], axis=0) & ~spared
        fired = np.any([by_rule[r][i, j] for r in RULE_INPUTS], axis=0) & ~spared
        marks_figures = marks_only(world, variant)
        marks, marks_leads = marks_figures["mark_recorded_on_both"], marks_figures["leads_at_review_fpir"]
        out[name] = {
            **{k: v for k, v in full.items() if k.startswith(("fnir", "missed"))},
            "fnir_fpir_over_all_reports": {f: figures[ALL_N][f"fnir_at_fpir_{f}"] for f in FPIRS},
            "false_leads_per_search_at_review": full[f"leads_at_fpir_{REVIEW_FPIR}"]["false_leads_per_search"],
            "lead_rules": {
                f"{short} @ {t}": evaluated["lead_rules"][name][str(t)]
                for short, name in (("product", "product lead rule"), ("union", LEAD_UNION))
                for t in (REVIEW_FPIR, POLICY_FPIR)
            },
            "false_leads_per_search_at_review_over_all_reports": figures[ALL_N][f"leads_at_fpir_{REVIEW_FPIR}"][
                "false_leads_per_search"
            ],
            "face_alone_false_leads_per_search_at_review": figures["face alone"][f"leads_at_fpir_{REVIEW_FPIR}"][
                "false_leads_per_search"
            ],
            "true_mates_excluded": int(fired.sum()),
            "true_mates_excluded_with_correct_inputs": int(good.sum()),
            "nonmated_pairs_excluded": float(excluded[~world.mate].mean()),
            "marks_only_rank1": marks["rank1"],
            "marks_only_rank5": marks["rank5"],
            "marks_only_leads_at_review_fpir": marks_leads,
        }
    return out


# -- output --------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = {
        "face alone": "tab:grey",
        "face + exclusions": "tab:orange",
        "face + agreement": "tab:green",
        FULL: "tab:blue",
        ALL_N: "tab:purple",
    }
    for name, curve in result["_det"].items():
        xs, ys = zip(*curve, strict=True)
        left.plot(xs, ys, marker=".", color=colours[name], label=name.strip())
    for name in ("face alone", "face + agreement", FULL):
        xs, ys = zip(*result["_det_correlated"][name], strict=True)
        if name != "face alone":
            left.plot(xs, ys, ls="--", color=colours[name], label=f"{name}, face-correlated attributes")
    for fpir in FPIRS:
        left.axvline(fpir, color="k", lw=0.6, ls=":")
    left.set_xscale("log")
    left.set_xlabel("FPIR (non-mated searches with a first candidate above the threshold)")
    left.set_ylabel("FNIR (mated searches whose mate is not first above it)")
    left.set_title("faces-dev, simulated descriptors and marks")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    marks = result["marks_only"]
    ranks = np.arange(1, len(marks["mark_recorded_on_both"]["cmc"]) + 1)
    for name, style in (("mark_recorded_on_both", "-"), ("mark_recorded_on_the_case", "--")):
        label = f"{name.replace('_', ' ')} ({marks[name]['cases']} cases)"
        right.plot(ranks, marks[name]["cmc"], style, marker=".", label=label)
    right.set_xticks([1, 5, 10, 15, 20])
    right.set_xlabel("rank")
    right.set_ylabel("share of cases whose report is within this rank")
    right.set_title("Marks-only search (log10 LR, exclusions applied, no face)")
    right.set_ylim(0, 1)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    target = folder / "reconciliation.png"
    fig.savefig(target, dpi=110)
    return target


def print_lead_rules(rules: dict[str, Any]) -> None:
    for name, by_target in rules.items():
        cells = [
            f"{t}: {f['mates_found']:.3f} / {f['false_leads_per_search']:.3f} / {f['searches_with_a_false_lead']:.3f}"
            for t, f in by_target.items()
        ]
        print(f"  {name:50} " + "   ".join(cells))


def print_report(result: dict[str, Any]) -> None:
    print(f"dataset {result['dataset']}{' (quick: every 4th identity)' if result['quick'] else ''}: {result['split']}")
    print(
        f"model {result['model_id']}, FTX {result['failure_to_extract']}, seed {result['seed']}, "
        f"rules {result['rules']}, LR cap 10^{result['max_log10_lr']:g}; "
        f"{result['verified_pairs']} pairs checked against the product functions"
    )

    def table(systems: dict[str, dict[str, Any]], title: str) -> None:
        print(f"\n{title}")
        head = f"{'system':32} {'FNIR@.1':>8} {'FNIR@.01':>9} {'fewer missed @.1':>17} {'@.01':>6}"
        print(head + (f" {'rank1':>6} {'rank5':>6}" if "rank1" in next(iter(systems.values())) else ""))
        for name, f in systems.items():
            line = (
                f"{name:32} {f['fnir_at_fpir_0.1']:8.4f} {f['fnir_at_fpir_0.01']:9.4f}"
                f" {f['missed_mates_reduction_at_fpir_0.1']:17.1%} {f['missed_mates_reduction_at_fpir_0.01']:6.1%}"
            )
            print(line + (f" {f['rank1']:6.4f} {f['rank5']:6.4f}" if "rank1" in f else ""))

    def leads(systems: dict[str, dict[str, Any]]) -> None:
        print(f"\nleads at the calibrated FPIR ({'mates found / false leads per search / searches with one'})")
        for name, f in systems.items():
            cells = [
                f"{t}: {f[f'leads_at_fpir_{t}']['mates_found']:.3f} / "
                f"{f[f'leads_at_fpir_{t}']['false_leads_per_search']:.3f} / "
                f"{f[f'leads_at_fpir_{t}']['searches_with_a_false_lead']:.3f}"
                for t in (REVIEW_FPIR, POLICY_FPIR)
            ]
            print(f"  {name:32} " + "   ".join(cells))

    def excl(effect: dict[str, Any]) -> None:
        print(
            f"\nexclusions: {effect['nonmated_pairs_excluded']:.1%} of non-mated pairs;"
            + "".join(
                f" {effect[f'of_which_excluded_at_T{f}']:.1%} of the face's"
                f" {effect[f'face_false_first_candidates_above_T{f}']} false first candidates above T@{f};"
                for f in FPIRS
            )
        )
        print(
            "  the face's false leads (calibrated FPIR): "
            + "; ".join(
                f"{effect[f'face_false_leads_at_fpir_{t}']} at {t},"
                f" {effect[f'of_which_excluded_at_fpir_{t}']:.1%} excluded"
                for t in (REVIEW_FPIR, POLICY_FPIR)
            )
        )
        rules = ", ".join(
            f"{r} {v['all']} ({v['correct_inputs']} correct)" for r, v in effect["true_mates_excluded_by_rule"].items()
        )
        print(
            f"  true mates excluded: {effect['true_mates_excluded']} of {effect['true_mates']}:"
            f" {effect['true_mates_excluded_with_correct_inputs']} by a rule with correctly recorded inputs,"
            f" {effect['true_mates_excluded_only_by_recording_errors']} only through recording errors [{rules}]"
        )

    table(result["systems"], "face, exclusions and agreement (simulated descriptors, the issue's error model)")
    leads(result["systems"])
    print_lead_rules(result["lead_rules"])
    excl(result["exclusions"])
    m = result["marks_only"]
    print("\nmarks-only search (no face; log10 LR over compatible reports; expected over random tie-breaks)")
    for name in ("mark_recorded_on_both", "mark_recorded_on_the_case"):
        print(
            f"  {name.replace('_', ' '):28} {m[name]['cases']:5} cases: rank 1 {m[name]['rank1']:.3f}, "
            f"within 5 {m[name]['rank5']:.3f}"
        )
    print(
        f"  marks-only leads at the review FPIR {REVIEW_FPIR}: true report found for "
        f"{m['leads_at_review_fpir']['mates_found']:.1%} of mated cases with a mark, "
        f"{m['leads_at_review_fpir']['false_leads_per_case']:.3f} false leads per case with a mark"
    )
    print(
        f"  cases where a marks-only lead can reach the review FPIR at all: "
        f"{m['cases_where_a_marks_only_lead_can_reach_review_fpir']:.1%} (median compatible reports "
        f"{m['median_compatible_reports']:.0f})"
    )
    print("\nsimulated vs agreement.FIELD_MODEL (p: unrelated pairs agree, e: one person's records disagree)")
    for name, c in result["simulated_vs_field_model"].items():
        print(
            f"  {name:12} p {c['p_model']:.2f} simulated {c['p_simulated']:.3f}"
            f"   e {c['e_model']:.2f} simulated {c['e_simulated']:.3f}"
        )
    print("simulated vs agreement.MARK_RARITY (unrelated report with a corresponding mark; sharing a word)")
    for kind, c in result["simulated_vs_mark_rarity"].items():
        print(
            f"  {kind:12} {c['rarity_model']:.3f} simulated {c['rarity_simulated']}"
            f"   word shared {c['unrelated_pairs_sharing_a_word_when_both_have_words']}"
        )
    shared = result["true_attributes_shared_with_face_false_candidate"]
    print(
        f"\nface's false first candidates sharing the true attribute: independent {shared}; "
        f"face-correlated {result['face_correlated']['true_attributes_shared_with_face_false_candidate']}"
    )
    table(result["face_correlated"]["systems"], "sensitivity: attributes correlated with the face")
    leads(result["face_correlated"]["systems"])
    print_lead_rules(result["face_correlated"]["lead_rules"])
    excl(result["face_correlated"]["exclusions"])
    fc = result["face_correlated"]["marks_only"]["mark_recorded_on_both"]
    print(f"  marks-only, mark recorded on both: rank 1 {fc['rank1']:.3f}, within 5 {fc['rank5']:.3f}")
    table(result["no_typos"]["systems"], "sensitivity: no typed-in errors (typo = 0; wrong sex 3% remains)")
    excl(result["no_typos"]["exclusions"])
    table(result["wider_errors"]["systems"], f"sensitivity: wider errors {result['wider_errors']['error_model']}")
    excl(result["wider_errors"]["exclusions"])
    for title, rows in (
        ("parameters (issue's error model)", result["variants"]),
        ("parameters, wider errors", result["wider_errors"]["variants"]),
        ("parameters, face-correlated attributes", result["face_correlated"]["variants"]),
    ):
        print(
            f"\n{title}: face + exclusions + agreement\n"
            f"  {'variant':52} {'FNIR@.1':>8} {'FNIR@.01':>9} {'fewer @.1':>9} {'@.01':>6}"
            f" {'mates excl (ok)':>15} {'nonmate excl':>12} {'false leads product .1/.01 (union .1)':>38}"
            f" {'marks r1/r5':>11}"
            f" {'marks leads: found/false':>24}"
        )
        for name, row in rows.items():
            print(
                f"  {name:52} {row['fnir_at_fpir_0.1']:8.4f} {row['fnir_at_fpir_0.01']:9.4f}"
                f" {row['missed_mates_reduction_at_fpir_0.1']:9.1%} {row['missed_mates_reduction_at_fpir_0.01']:6.1%}"
                f" {row['true_mates_excluded']:9} ({row['true_mates_excluded_with_correct_inputs']:3})"
                f" {row['nonmated_pairs_excluded']:12.1%}"
                f" {row['lead_rules'][f'product @ {REVIEW_FPIR}']['false_leads_per_search']:24.3f}"
                f"/{row['lead_rules'][f'product @ {POLICY_FPIR}']['false_leads_per_search']:.3f}"
                f" ({row['lead_rules'][f'union @ {REVIEW_FPIR}']['false_leads_per_search']:.3f})"
                f" {row['marks_only_rank1']:5.3f}/{row['marks_only_rank5']:.3f}"
                f" {row['marks_only_leads_at_review_fpir']['mates_found']:16.3f}/"
                f"{row['marks_only_leads_at_review_fpir']['false_leads_per_case']:.3f}"
            )
    spread = result["seed_spread"]
    print(f"\nspread over {len(spread['seeds'])} simulations of the records (seeds {spread['seeds']}): mean [min, max]")
    for name, f in spread["figures"].items():
        print(f"  {name:55} {f['mean']:8.3f} [{f['min']:.3f}, {f['max']:.3f}]")
    print(f"\n{result['seconds']:.0f} s ({result['embed_seconds']:.0f} s embedding)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset_dir())
    parser.add_argument("--quick", action="store_true", help="every 4th identity (not the protocol)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--workers", type=int, default=1, help="embedding processes on a cold cache (default 1)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--seeds", type=int, default=None, help="also simulate seeds 1..N for the spread (default 9; quick: 2)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/reconcile.json)")
    parser.add_argument("--plots", type=Path, default=None, help="plot folder (default docs)")
    args = parser.parse_args()
    extra = args.seeds if args.seeds is not None else (2 if args.quick else 9)
    result = run(args.dataset, quick=args.quick, workers=args.workers, seed=args.seed, extra_seeds=extra)
    out = args.out or (None if args.quick else REPO_ROOT / "bench" / "results" / "reconcile.json")
    plots = args.plots or (None if args.quick else REPO_ROOT / "docs")
    if plots is not None:
        result["plot"] = repo_relative(plot(result, plots))
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(public, indent=1, default=float) + "\n")
    if args.json:
        print(json.dumps(public, indent=2, default=float))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
