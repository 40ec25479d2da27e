"""A detected face's box, and the image check every face function starts with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icportrait.errors import ImageError


@dataclass(frozen=True)
class FaceBox:
    """One detected face."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    detector: str
    angle: float = 0.0  # degrees the image was turned by in the pass that found the face

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def size(self) -> float:
        """The box's shorter side in pixels (what MIN_FACE_SIZE is compared with)."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def as_list(self) -> list[float]:
        return [round(v, 2) for v in (self.x0, self.y0, self.x1, self.y1)]


def clip_box(x0, y0, x1, y1, w, h, score, detector, angle: float = 0.0) -> FaceBox | None:
    x0, x1 = float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))
    y0, y1 = float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return FaceBox(x0, y0, x1, y1, float(score), detector, angle)


def check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(
            f"expected an RGB uint8 array of shape (H, W, 3), got {dtype} {shape}; load files "
            "with icportrait.io.load_image"
        )
