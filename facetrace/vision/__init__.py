"""Vision layer: decode images, detect, align, score quality and embed faces.

Depends on nothing else in facetrace; every other layer depends on it.
"""

from facetrace.vision.decode import decode_image, load_image
from facetrace.vision.pipeline import Face, FaceAnalyzer, get_analyzer

__all__ = ["Face", "FaceAnalyzer", "decode_image", "get_analyzer", "load_image"]
