"""Gallery layer: enrollment, 1:N search with calibrated decisions, 1:1 compare, erasure."""

from facetrace.gallery.analysis import AnalysisPool, AnalysisUnavailable, FaceModel
from facetrace.gallery.calibration import Calibration
from facetrace.gallery.enrollment import EnrollmentObserver, EnrollOutcome, StoredImage
from facetrace.gallery.results import (
    Candidate,
    Comparison,
    Decision,
    FaceResult,
    PersonRef,
    Probe,
    SearchPolicy,
    SearchResult,
    TemplateSearch,
)
from facetrace.gallery.service import Gallery
from facetrace.gallery.sources import EnrollItem, read_folder, read_manifest
from facetrace.vision.decode import ImageInput

__all__ = [
    "AnalysisPool",
    "AnalysisUnavailable",
    "Calibration",
    "Candidate",
    "Comparison",
    "Decision",
    "EnrollItem",
    "EnrollOutcome",
    "EnrollmentObserver",
    "FaceModel",
    "FaceResult",
    "Gallery",
    "ImageInput",
    "PersonRef",
    "Probe",
    "SearchPolicy",
    "SearchResult",
    "StoredImage",
    "TemplateSearch",
    "read_folder",
    "read_manifest",
]
