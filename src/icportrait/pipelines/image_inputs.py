"""Turning user images (paths, PIL, numpy, tensors) into model-ready batches, with clear errors.

Resize rule: every image is centre-cropped to a square and resized (area filter) to the
model's resolution. Aligned face crops from :func:`icportrait.faces.prepare_face` are square
already, so for them this is a plain resize.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image
import torch

from icportrait.errors import ImageError
from icportrait.io import load_image

ImageLike = str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


def as_image_list(images, name: str) -> list:
    """One image or a sequence of images -> a list (a 4D tensor counts as a sequence)."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]
    if not items:
        raise ImageError(f"no {name} image given (need at least one)")
    return items


def to_rgb_uint8(image: ImageLike, name: str) -> np.ndarray:
    """Any accepted image as an RGB uint8 ``(H, W, 3)`` array."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ImageError(
                f"{name}: a tensor image must be (3, H, W) RGB in [0, 1], got "
                f"{tuple(image.shape)}"
            )
        arr = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray((arr * 255 + 0.5).astype(np.uint8))
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: an array image needs 1, 3 or 4 channels, got {image.shape[2]}")
    try:
        return load_image(image)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from exc


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = image[y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def to_model_batch(images: Sequence[np.ndarray], size: int, device, dtype) -> torch.Tensor:
    """RGB uint8 arrays -> ``(N, 3, size, size)`` tensor in [-1, 1]."""
    arr = np.stack([square_resize(im, size) for im in images]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
