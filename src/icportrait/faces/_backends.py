"""Lazy, cached access to the bundled face models (mediapipe and dlib).

Both libraries are imported on first use only, so `import icportrait` stays fast and a
missing package surfaces as a :class:`MissingDependencyError` that names the fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from icportrait.errors import MissingDependencyError

_INSTALL_HINT = "run `make install` (or see the README's set-up)"
# mediapipe's graph objects are not thread-safe: keep one per thread.
_local = threading.local()


def _import_mediapipe():
    # mediapipe's C++ logging is noisy on every graph start; keep user terminals clean.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import mediapipe as mp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"the face toolkit needs mediapipe==0.10.21 ({exc}); {_INSTALL_HINT}"
        ) from exc
    if not hasattr(mp, "solutions"):  # pragma: no cover
        raise MissingDependencyError(
            f"mediapipe {mp.__version__} lacks the bundled `solutions` models; "
            f"install mediapipe==0.10.21 ({_INSTALL_HINT})"
        )
    return mp


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 (C++ logging), not just sys.stderr.

    mediapipe's native code prints INFO/WARNING lines (XNNPACK, absl, feedback tensors) when a
    graph starts and on its first frame; they would bury the one-line errors users read.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietGraph:
    """A mediapipe solution whose start-up chatter is silenced (see above)."""

    def __init__(self, factory):
        with _native_stderr_silenced():
            self._graph = factory()
        self._warm = False

    def process(self, image):
        if self._warm:
            return self._graph.process(image)
        with _native_stderr_silenced():
            result = self._graph.process(image)
        self._warm = True
        return result


def mediapipe_detector(model_selection: int) -> _QuietGraph:
    """A mediapipe FaceDetection graph: 0 = short range (selfies), 1 = full range."""
    key = f"det{model_selection}"
    if not hasattr(_local, key):
        mp = _import_mediapipe()
        setattr(_local, key, _QuietGraph(lambda: mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=0.5
        )))
    return getattr(_local, key)


def mediapipe_face_mesh() -> _QuietGraph:
    """A mediapipe FaceMesh graph for still images with refined (iris) landmarks: 478 points."""
    if not hasattr(_local, "mesh"):
        mp = _import_mediapipe()
        _local.mesh = _QuietGraph(lambda: mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=0.3,
        ))
    return _local.mesh


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError(
            f"the face toolkit needs dlib-bin ({exc}); {_INSTALL_HINT}"
        ) from exc
    return dlib


@lru_cache(maxsize=1)
def dlib_model_dir() -> Path:
    # `import face_recognition_models` needs pkg_resources (gone in setuptools >= 81), so
    # locate the package's data folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"dlib's face models are missing: install face_recognition_models ({_INSTALL_HINT})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_model_path(name: str) -> Path:
    path = dlib_model_dir() / name
    if not path.is_file():
        raise MissingDependencyError(f"dlib model file {path} is missing; {_INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def dlib_hog_detector():
    return _import_dlib().get_frontal_face_detector()


@lru_cache(maxsize=1)
def dlib_shape_predictor_5():
    dlib = _import_dlib()
    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))


@lru_cache(maxsize=1)
def dlib_face_recognizer():
    dlib = _import_dlib()
    path = dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    return dlib.face_recognition_model_v1(str(path))


@lru_cache(maxsize=1)
def dlib_cnn_detector():
    dlib = _import_dlib()
    return dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))
