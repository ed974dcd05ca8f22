"""Follow faces across the sampled frames of a video: one **track** per person on screen.

Association rule (applied at each analysed frame, greedily, strongest pair first):

1. *Continuity link*: a face continues a track when the track was seen at most
   ``max_gap_s`` ago, no scene cut happened since, the face's box overlaps the track's box
   (IoU >= ``iou_min`` with either the last box or the box predicted from the track's
   velocity), and the faces still look alike (similarity >= ``continuity_score``, a lax
   bar that only stops identity swaps when two people cross).
2. *Re-identification link*: otherwise a face continues a track seen at most
   ``relink_gap_s`` ago, wherever it is on screen and across a cut, when the similarity
   reaches ``relink_score``, a strict bar (the gallery sets it to the score of a 1-in-1000
   false match). This joins the two sides of a cut in a shot/reverse-shot, or a person who
   turns away or leaves the frame for a moment.
3. A face that links to nothing starts a new track. A track with no face for longer than
   ``relink_gap_s`` is closed.

Continuity pairs always outrank re-identification pairs; within each kind the higher
score wins. "Similarity" is the larger of the cosine with the track's last embedding and
with the mean of its embeddings so far.

Each track keeps only its ``keep_best`` faces of highest quality (with their crops), so its
memory does not grow with its length. Its template is the quality-weighted mean of those
faces' embeddings, L2-normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of the association rule (see the module docstring)."""

    iou_min: float = 0.2
    max_gap_s: float = 1.0
    relink_gap_s: float = 2.0
    continuity_score: float = 0.84  # cosine of FMR 0.5 for dlib-resnet-v1+flip
    relink_score: float = 0.93  # cosine of FMR 0.001 for dlib-resnet-v1+flip
    keep_best: int = 5
    segment_gap_s: float = 0.5  # sightings further apart than this start a new segment


@dataclass
class Observation:
    """One face seen in one analysed frame."""

    time_s: float
    frame: int
    box: Box
    embedding: np.ndarray
    quality: float
    detail: dict[str, Any] = field(default_factory=dict)  # JSON-ready face description
    crop: np.ndarray | None = field(default=None, repr=False)  # RGB crop around the face


def iou(a: Box, b: Box) -> float:
    """Return the intersection over union of two boxes (0 when either is empty)."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """The faces of one person followed across a video."""

    id: int
    first_time: float
    first_frame: int
    last_time: float
    last_frame: int
    last_box: Box
    last_embedding: np.ndarray
    cuts_seen: int  # the tracker's cut count when this track was last updated
    observations: int = 0
    best: list[Observation] = field(default_factory=list)
    segments: list[list[float]] = field(default_factory=list)
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per second
    _sum: np.ndarray | None = field(default=None, repr=False)

    def add(self, obs: Observation, keep_best: int, cuts: int, segment_gap_s: float) -> None:
        """Append one observation (called by the tracker)."""
        if self.observations:
            dt = obs.time_s - self.last_time
            if dt > 0 and self.cuts_seen == cuts:
                (ax, ay), (bx, by) = _centre(self.last_box), _centre(obs.box)
                self.velocity = ((bx - ax) / dt, (by - ay) / dt)
            else:
                self.velocity = (0.0, 0.0)
        self.observations += 1
        self.last_time, self.last_frame, self.last_box = obs.time_s, obs.frame, obs.box
        self.last_embedding = obs.embedding
        self.cuts_seen = cuts
        self._sum = obs.embedding.astype(np.float64) if self._sum is None else self._sum + obs.embedding
        if self.segments and obs.time_s - self.segments[-1][1] <= segment_gap_s:
            self.segments[-1][1] = obs.time_s
        else:
            self.segments.append([obs.time_s, obs.time_s])
        self.best.append(obs)
        self.best.sort(key=lambda o: o.quality, reverse=True)
        del self.best[keep_best:]  # crops of weaker faces are dropped with them

    @property
    def mean_embedding(self) -> np.ndarray:
        """Return the L2-normalised mean of every embedding seen so far."""
        assert self._sum is not None
        return _normalise(self._sum)

    def similarity(self, embedding: np.ndarray) -> float:
        """Return how alike ``embedding`` is to this track (see the module docstring)."""
        return max(float(np.dot(self.last_embedding, embedding)), float(np.dot(self.mean_embedding, embedding)))

    def predicted_box(self, time_s: float) -> Box:
        """Return the last box moved by the track's velocity to ``time_s``."""
        dt = time_s - self.last_time
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        left, top, right, bottom = self.last_box
        return (round(left + dx), round(top + dy), round(right + dx), round(bottom + dy))

    @property
    def template(self) -> np.ndarray:
        """Return the quality-weighted mean of the best faces' embeddings, L2-normalised."""
        weights = np.array([max(o.quality, 1.0) for o in self.best], dtype=np.float64)
        stacked = np.vstack([o.embedding for o in self.best]).astype(np.float64)
        return _normalise((weights[:, None] * stacked).sum(axis=0)).astype(np.float32)

    @property
    def best_quality(self) -> float:
        return self.best[0].quality if self.best else 0.0

    def thumbnail_jpeg(self, quality: int = 88) -> bytes | None:
        """Return the JPEG bytes of the best face's crop, or None when no crop was kept."""
        for obs in self.best:
            if obs.crop is not None and obs.crop.size:
                ok, buf = cv2.imencode(
                    ".jpg", cv2.cvtColor(obs.crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
                )
                if ok:
                    return buf.tobytes()
        return None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (without template and thumbnail)."""
        return {
            "track": self.id,
            "first_seen_s": round(self.first_time, 3),
            "last_seen_s": round(self.last_time, 3),
            "duration_s": round(self.last_time - self.first_time, 3),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "faces": self.observations,
            "segments": [[round(a, 3), round(b, 3)] for a, b in self.segments],
            "quality": round(self.best_quality, 1),
            "best_faces": [
                {"time_s": round(o.time_s, 3), "frame": o.frame, "box": list(o.box), **o.detail} for o in self.best
            ],
        }


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else vector


class Tracker:
    """Builds tracks from the faces of successive analysed frames (in time order)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.active: list[Track] = []
        self.closed: list[Track] = []
        self.cuts = 0
        self._next_id = 1
        self._last_time = -math.inf

    def update(self, time_s: float, frame: int, faces: list[Observation], *, cut: bool = False) -> list[int]:
        """Add the faces of the frame at ``time_s``; ``cut`` says a scene cut happened since the
        previous analysed frame. Return the track id given to each face, in order.

        Raises:
            ValueError: frames are not given in time order.
        """
        if time_s < self._last_time:
            raise ValueError(f"frames must come in time order ({time_s} after {self._last_time})")
        self._last_time = time_s
        cfg = self.config
        if cut:
            self.cuts += 1
        still: list[Track] = []
        for track in self.active:
            (still if time_s - track.last_time <= cfg.relink_gap_s else self.closed).append(track)
        self.active = still
        pairs: list[tuple[int, float, int, int]] = []  # (kind, score, track index, face index)
        for ti, track in enumerate(self.active):
            gap = time_s - track.last_time
            same_shot = track.cuts_seen == self.cuts and gap <= cfg.max_gap_s
            for fi, face in enumerate(faces):
                sim = track.similarity(face.embedding)
                overlap = 0.0
                if same_shot:
                    overlap = max(iou(track.last_box, face.box), iou(track.predicted_box(time_s), face.box))
                if overlap >= cfg.iou_min and sim >= cfg.continuity_score:
                    pairs.append((1, overlap + sim, ti, fi))
                elif sim >= cfg.relink_score:
                    pairs.append((0, sim, ti, fi))
        pairs.sort(reverse=True)
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for _, _, ti, fi in pairs:
            if ti in used or fi in assigned:
                continue
            used.add(ti)
            assigned[fi] = self.active[ti]
        ids = []
        for fi, face in enumerate(faces):
            found = assigned.get(fi)
            if found is None:
                track = Track(
                    id=self._next_id,
                    first_time=face.time_s,
                    first_frame=face.frame,
                    last_time=face.time_s,
                    last_frame=face.frame,
                    last_box=face.box,
                    last_embedding=face.embedding,
                    cuts_seen=self.cuts,
                )
                self._next_id += 1
                self.active.append(track)
            else:
                track = found
            track.add(face, cfg.keep_best, self.cuts, cfg.segment_gap_s)
            ids.append(track.id)
        return ids

    def finish(self) -> list[Track]:
        """Close every track; return all tracks ordered by first sighting."""
        self.closed.extend(self.active)
        self.active = []
        return sorted(self.closed, key=lambda t: (t.first_time, t.id))
