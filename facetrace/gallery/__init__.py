"""Gallery layer: enrollment, 1:N search with calibrated decisions, 1:1 compare, erasure."""

from facetrace.gallery.calibration import Calibration
from facetrace.gallery.service import EnrollOutcome, Gallery
from facetrace.gallery.sources import EnrollItem, read_folder, read_manifest

__all__ = ["Calibration", "EnrollItem", "EnrollOutcome", "Gallery", "read_folder", "read_manifest"]
