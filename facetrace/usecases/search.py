"""Searches of uploaded photos: 1:N search (always for a case reference and a purpose), 1:1
compare and face detection. Each is audited, refusals included, and counted in the metrics."""

from __future__ import annotations

from typing import Any

from facetrace.gallery.quality_bands import quality_band
from facetrace.store.media import sha256_bytes
from facetrace.usecases.actors import Actor, audited
from facetrace.usecases.errors import InvalidRequest
from facetrace.usecases.service import Service
from facetrace.usecases.uploads import ImageSource


def search(
    service: Service, actor: Actor, image: ImageSource, *, case_reference: str, purpose: str, top: int
) -> dict[str, Any]:
    """Search every face of ``image`` against the gallery; return the result (as
    ``facetrace search --json``, each face with its ``quality_band``: the band's label and what it
    means for the error rates, in plain words). The case reference and purpose are recorded with the search.

    Raises:
        InvalidRequest: a blank case reference or purpose.
        ImageError: an unusable image (too large, empty, not an image).
    """
    case_reference, purpose = case_reference.strip(), purpose.strip()
    with (
        service.metrics.counting_search("image") as tally,
        audited(service, actor, "search", case_reference=case_reference, purpose=purpose) as note,
    ):
        if not case_reference or not purpose:
            raise InvalidRequest("case_reference and purpose must not be blank")
        data, name = image.read(service.settings.max_upload_bytes)
        note.detail["image_sha256"] = sha256_bytes(data)
        found = service.gallery.search(data, name=name, top_k=top)
        result = found.to_dict()
        for face, shown in zip(found.faces, result["faces"], strict=True):
            # From the unrounded quality and the search's own minimum, so that the band agrees with quality_ok.
            band = quality_band(face.face.quality.score, min_quality=found.policy.min_quality)
            shown["quality_band"] = band.as_dict()
        persons = {c["person"]["id"] for f in result["faces"] for c in f["candidates"]}
        note.records = [f"person:{p}" for p in sorted(persons)]
        note.detail["faces"] = len(result["faces"])
        note.detail["matches"] = [f["match"] for f in result["faces"] if f["match"]]
        tally.match = bool(note.detail["matches"])
    return result


def compare(service: Service, actor: Actor, a: ImageSource, b: ImageSource) -> dict[str, Any]:
    """1:1 verification of the largest faces of two photos; return the score and decision.

    Raises:
        ImageError: an unusable image.
    """
    with service.metrics.counting_search("compare") as tally, audited(service, actor, "compare") as note:
        limit = service.settings.max_upload_bytes
        (data_a, name_a), (data_b, name_b) = a.read(limit), b.read(limit)
        note.detail["images"] = [sha256_bytes(data_a), sha256_bytes(data_b)]
        result = service.gallery.compare(data_a, data_b, names=(name_a, name_b)).to_dict()
        note.detail.update(score=result["score"], match=result["match"])
        tally.match = bool(result["match"])
    return result


def detect(service: Service, actor: Actor, image: ImageSource) -> dict[str, Any]:
    """Return the faces of a photo with landmarks and quality (nothing searched or stored).

    Raises:
        ImageError: an unusable image.
    """
    with audited(service, actor, "detect") as note:
        data, name = image.read(service.settings.max_upload_bytes)
        note.detail["image_sha256"] = sha256_bytes(data)
        faces = service.gallery.detect(data, name)
        note.detail["faces"] = len(faces)
    return {
        "image": name,
        "faces": [{**f.as_dict(), "quality_ok": f.quality.score >= service.settings.min_quality} for f in faces],
    }
