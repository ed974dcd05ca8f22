"""Model files shipped by the ``face_recognition_models`` package, loaded once per process.

Nothing is ever downloaded: a missing file is a configuration error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import dlib

from facetrace.errors import ConfigError


def model_dir() -> Path:
    """Return the folder holding dlib's model files.

    Raises:
        ConfigError: the ``face_recognition_models`` package is not installed.
    """
    try:
        import face_recognition_models
    except ImportError:  # pragma: no cover - a packaging error
        raise ConfigError("the face_recognition_models package is not installed") from None
    return Path(face_recognition_models.__file__).parent / "models"


def model_path(name: str) -> Path:
    """Return the path of model file ``name``; raise ConfigError when it is absent."""
    path = model_dir() / name
    if not path.is_file():
        raise ConfigError(f"model file {name} is missing from face_recognition_models")
    return path


@cache
def hog_detector() -> Any:
    return dlib.get_frontal_face_detector()


@cache
def cnn_detector() -> Any:
    return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@cache
def landmarks5() -> Any:
    return dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))


@cache
def landmarks68() -> Any:
    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


@cache
def resnet_descriptor() -> Any:
    return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))


MODEL_FILES = (
    "mmod_human_face_detector.dat",
    "shape_predictor_5_face_landmarks.dat",
    "shape_predictor_68_face_landmarks.dat",
    "dlib_face_recognition_resnet_model_v1.dat",
)
