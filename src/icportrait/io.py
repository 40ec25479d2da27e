"""Robust image loading and atomic saving for real user photos.

:func:`load_image` turns whatever the user hands us (a path, bytes, a file object, a Pillow
image or a numpy array) into one predictable thing: a C-contiguous ``uint8`` RGB array of
shape ``(H, W, 3)``, upright according to its EXIF orientation. Every failure becomes an
:class:`~icportrait.errors.ImageError` with a one-line message, so the CLI never shows a
Pillow traceback.

:func:`save_image`, :func:`atomic_write_bytes` and :func:`atomic_write_text` write through a
temporary file in the target directory and ``os.replace`` it into place, so a crash or an
encoding error never leaves a half-written file behind or destroys the previous one.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from icportrait.errors import ImageError

__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_image",
    "save_image",
]

#: Default decompression-bomb limit, in pixels (width * height).
#: 100 MP admits every phone's full-resolution mode (48-50 MP and the 64-108 MP of a few)
#: and 45-61 MP cameras, while its decoded RGB copy (300 MB) stays well inside a laptop's
#: memory. A tiny file that declares a larger canvas (a "decompression bomb") is rejected from
#: its header, before any pixel is decoded. Pass ``max_pixels`` to change it.
MAX_PIXELS: int = 100_000_000

#: Smallest accepted side, in pixels: anything smaller cannot contain a usable face.
MIN_SIDE: int = 16

#: Everything :func:`load_image` accepts.
ImageSource: TypeAlias = (
    str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)

# Only formats that photos actually come in. Pillow would otherwise also try legacy and exotic
# decoders on untrusted files (EPS even runs Ghostscript); a smaller surface is safer.
# AVIF/HEIF are used only when available (HEIF needs the pillow-heif plugin registered).
_ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF", "HEIF")

# Modes with an alpha channel; other modes may carry a "transparency" colour/index in .info.
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: File suffixes of the photos that folder inputs (templates, datasets, suites) are read from.
PHOTO_SUFFIXES = tuple(_SAVE_FORMATS)

# Serialises the rare calls that must lift Pillow's global bomb limit (see _pillow_limits).
_PIL_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Load an image as a C-contiguous ``uint8`` RGB array of shape ``(H, W, 3)``.

    Args:
        source: a path (``str`` or ``os.PathLike``), encoded file contents (``bytes``), a binary
            file object, a ``PIL.Image.Image``, or a numpy array. Arrays must be ``HxW``,
            ``HxWx1``, ``HxWx3`` (RGB, not OpenCV's BGR) or ``HxWx4`` (RGBA), with dtype
            ``uint8``, ``uint16`` (full 0-65535 range) or float in ``[0, 1]``.
        max_pixels: largest accepted ``width * height``. For files it is checked against the
            header before any pixel is decoded.
        background: RGB colour that transparent pixels are composited over.

    Alpha policy: alpha (an alpha channel, or a palette/grey/RGB ``transparency`` entry) is
    composited over ``background`` (white by default), never dropped. Dropping it would turn
    transparent areas into whatever colour the hidden pixels hold, usually black, which gives
    dark halos and fake edges around cut-out portraits and confuses face detection.

    Other conversions:

    * EXIF orientation is applied, so a phone photo stored sideways with an orientation tag
      comes out upright. A corrupt EXIF block is ignored rather than rejecting the photo.
    * 16-bit greyscale (``I;16*``) is scaled to 8 bits by ``round(v / 257)`` (65535 -> 255,
      32768 -> 128), not clipped. 32-bit ``I`` images holding values in 0-65535 are treated as
      16-bit; other ranges, and float ``F`` images outside ``[0, 255]``, are stretched from
      their min-max to 0-255 because those modes carry no white point. ``F`` images within
      ``[0, 1]`` are scaled by 255; within ``[0, 255]`` they are used as is.
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr`` and the rest go through Pillow's conversion.
    * Multi-frame files (GIF, TIFF, MPO) give their first frame.

    Returns:
        A new array; it never shares memory with ``source``.

    Raises:
        ImageError: the file is missing, a directory, empty, not a supported image, truncated
            or corrupt, smaller than :data:`MIN_SIDE` on a side, larger than ``max_pixels``,
            or the array has an unsupported dtype, dimensionality or channel count.
    """
    _check_options(max_pixels, background)

    if isinstance(source, np.ndarray):
        image = _image_from_array(source, max_pixels)
        return _to_rgb_array(image, background)
    if isinstance(source, Image.Image):
        return _load_pil(source, "<PIL image>", max_pixels, background)
    if isinstance(source, (str, os.PathLike)):
        path = _checked_path(source)
        return _open_and_load(path, str(path), max_pixels, background)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("image data is empty (0 bytes): <bytes>")
        return _open_and_load(io.BytesIO(data), "<bytes>", max_pixels, background)
    if hasattr(source, "read"):
        label = _file_label(source)
        if _is_empty_stream(source):
            raise ImageError(f"image data is empty (0 bytes): {label}")
        return _open_and_load(source, label, max_pixels, background)
    raise ImageError(
        f"unsupported image source type {type(source).__name__}; expected a path, bytes, "
        "a binary file object, a PIL image or a numpy array"
    )


def _check_options(max_pixels: int, background: Any) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    ok = (
        isinstance(background, (tuple, list))
        and len(background) == 3
        and all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in background)
    )
    if not ok:
        raise ImageError(f"background must be an RGB triple of ints in 0-255, got {background!r}")


def _checked_path(source: str | os.PathLike) -> Path:
    """Give the common path mistakes their own message before Pillow sees the path."""
    path = Path(source)
    try:
        if not path.exists():
            raise ImageError(f"image file not found: {path}")
        if path.is_dir():
            raise ImageError(f"image path is a directory, not a file: {path}")
        # Only regular files: a pipe or device reports size 0 but may still deliver data.
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(f"image file is empty (0 bytes): {path}")
    except (OSError, ValueError) as exc:  # e.g. permission denied, NUL byte in the path
        raise ImageError(f"cannot access image file {path}: {_one_line(exc)}") from exc
    return path


def _file_label(fileobj: Any) -> str:
    name = getattr(fileobj, "name", None)
    return name if isinstance(name, str) and name else "<file object>"


def _is_empty_stream(fileobj: Any) -> bool:
    """True if a seekable stream has no bytes left; unseekable streams are left to Pillow."""
    try:
        pos = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(pos)
    except (AttributeError, OSError, ValueError):
        return False
    return end == pos


@contextlib.contextmanager
def _pillow_limits(max_pixels: int) -> Iterator[None]:
    """Make our own ``max_pixels`` check the one that decides.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and raises above twice that. The warning is
    silenced because our header check runs right after ``Image.open``. Only when the caller
    allows more than Pillow would is the global lifted, for this call only, under a lock, and
    restored afterwards.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit = Image.MAX_IMAGE_PIXELS
        if pil_limit is None or max_pixels <= 2 * pil_limit:
            yield
            return
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS  # re-read under the lock: no other call has it lifted
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _open_and_load(
    fp: Path | IO[bytes], label: str, max_pixels: int, background: tuple[int, int, int]
) -> np.ndarray:
    # Image.OPEN lists only the plugins imported so far: in a fresh process that is none.
    Image.init()
    formats = [f for f in _ALLOWED_FORMATS if f in Image.OPEN]
    with _pillow_limits(max_pixels):
        try:
            image = Image.open(fp, formats=formats)
        except UnidentifiedImageError as exc:
            raise ImageError(
                f"not a supported image (unrecognised or unsupported format): {label}"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(
                f"image is too large ({_one_line(exc)}); limit is {max_pixels:,} px: {label}"
            ) from exc
        except Exception as exc:  # Pillow raises many types for bad headers
            raise ImageError(f"cannot open image ({_one_line(exc)}): {label}") from exc
        # Close our file handle (for paths) even if decoding fails.
        with image:
            return _load_pil(image, label, max_pixels, background)


def _load_pil(
    image: Image.Image, label: str, max_pixels: int, background: tuple[int, int, int]
) -> np.ndarray:
    # Image.open is lazy: size comes from the header, nothing has been decoded yet.
    _check_size(*image.size, label=label, max_pixels=max_pixels)
    try:
        # Force the full decode here so truncated files fail now, with a clear message,
        # instead of later inside a conversion. LOAD_TRUNCATED_IMAGES stays off on purpose:
        # a half-grey photo would silently give wrong detections.
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image is too large ({_one_line(exc)}): {label}") from exc
    except MemoryError as exc:
        raise ImageError(f"not enough memory to decode image: {label}") from exc
    except Exception as exc:  # OSError, SyntaxError, EOFError, zlib.error...
        raise ImageError(f"image is truncated or corrupt ({_one_line(exc)}): {label}") from exc

    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not cost the user the photo
        upright = image
    try:
        return _to_rgb_array(upright, background)
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(f"not enough memory to convert image: {label}") from exc
    except Exception as exc:  # unsupported modes raise ValueError and friends
        raise ImageError(
            f"cannot convert image mode {upright.mode} to RGB ({_one_line(exc)}): {label}"
        ) from exc


def _check_size(width: int, height: int, *, label: str, max_pixels: int) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"image is too large: {width}x{height} = {pixels:,} px exceeds the limit of "
            f"{max_pixels:,} px: {label}"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(
            f"image is too small: {width}x{height} px, need at least {MIN_SIDE} px on each "
            f"side: {label}"
        )


def _to_rgb_array(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # Pillow's own conversion clips high-bit data at 255; scale it instead.
        gray = _high_bit_to_uint8(np.asarray(image), float_mode=mode == "F")
        image = Image.fromarray(gray)
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        if mode == "La":  # premultiplied; Pillow has no direct La -> RGBA conversion
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*(int(c) for c in background), 255))
        image = Image.alpha_composite(canvas, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    # np.array copies: the result is writable, contiguous and owns its memory.
    return np.array(image, dtype=np.uint8, order="C")


def _high_bit_to_uint8(values: np.ndarray, *, float_mode: bool) -> np.ndarray:
    if float_mode:
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:
            return _unit_float_to_uint8(values)
        if lo >= 0.0 and hi <= 255.0:
            return np.rint(values).astype(np.uint8)
        return _stretch(values, lo, hi)
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return _uint16_to_uint8(values)
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 0xFFFF:
        return _uint16_to_uint8(values)
    return _stretch(values.astype(np.float64), lo, hi)


def _uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    # Exact round(v * 255 / 65535) == round(v / 257) in integers; astype also fixes byte order.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _unit_float_to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _image_from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    label = f"<array shape={array.shape} dtype={array.dtype}>"
    if array.ndim not in (2, 3):
        raise ImageError(
            f"image array must have 2 or 3 dimensions (HxW or HxWxC), got {array.ndim}: {label}"
        )
    if array.ndim == 3:
        channels = array.shape[2]
        if channels not in (1, 3, 4):
            raise ImageError(
                f"image array has {channels} channels; expected 1 (grey), 3 (RGB) or "
                f"4 (RGBA): {label}"
            )
        if channels == 1:
            array = array[:, :, 0]
    height, width = array.shape[:2]
    _check_size(width, height, label=label, max_pixels=max_pixels)

    if array.dtype == np.uint8:
        data = array
    elif array.dtype == np.uint16:
        data = _uint16_to_uint8(array)
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ImageError(f"float image array contains NaN or infinity: {label}")
        lo, hi = float(array.min()), float(array.max())
        # Small tolerance for rounding noise; anything else is most likely 0-255 data in a
        # float array, which would silently come out almost white if clipped.
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageError(
                f"float image array values must be in [0, 1], got [{lo:g}, {hi:g}] "
                f"(divide 0-255 data by 255 or pass uint8): {label}"
            )
        data = _unit_float_to_uint8(array)
    else:
        raise ImageError(
            f"unsupported image array dtype {array.dtype}; expected uint8, uint16 or float "
            f"in [0, 1]: {label}"
        )
    return Image.fromarray(np.ascontiguousarray(data))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_image(image: np.ndarray, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Encode ``image`` and write it atomically to ``path``; return the path written.

    The format comes from the suffix (``.png``, ``.jpg``/``.jpeg``, ``.webp``, any case).
    ``image`` is a ``uint8`` array ``HxW`` (grey), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA; not
    for JPEG). ``quality`` (1-100) applies to JPEG and WebP. Parent directories are created.
    The file is encoded in memory first, so a failure leaves any existing file untouched.

    Raises:
        ImageError: unknown suffix, unsupported array, or the file cannot be written.
    """
    target = Path(path)
    fmt = _SAVE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_SAVE_FORMATS))
        raise ImageError(
            f"cannot save image: unknown suffix {target.suffix!r} (use {known}): {target}"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageError(f"quality must be an integer in 1-100, got {quality!r}")

    array = np.asarray(image)
    label = f"<array shape={array.shape} dtype={array.dtype}>"
    if array.dtype != np.uint8:
        raise ImageError(f"cannot save image: expected a uint8 array, got {label}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(f"cannot save image: expected HxW, HxWx3 or HxWx4, got {label}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"cannot save an empty image {label}: {target}")
    if fmt == "JPEG" and array.ndim == 3 and array.shape[2] == 4:
        raise ImageError(f"cannot save an RGBA image as JPEG (use .png or .webp): {target}")

    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    buffer = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=fmt, **options)
    except Exception as exc:  # encoder errors come in several types
        raise ImageError(f"cannot encode image as {fmt} ({_one_line(exc)}): {target}") from exc
    return atomic_write_bytes(target, buffer.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    The bytes go to a temporary file in the same directory (``os.replace`` is only atomic
    within one file system), are flushed to disk, then replace ``path`` in one step: readers
    see the old file or the new one, never a partial one. Parent directories are created.
    The temporary file is removed if anything fails.

    Raises:
        ImageError: the file cannot be written.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the permissions, like a plain open();
        # tempfile.mkstemp would leave the final file readable by its owner only.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    except OSError as exc:
        raise ImageError(f"cannot write file ({_one_line(exc)}): {target}") from exc
    return target


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Newlines are written as given, with no platform translation.
    """
    try:
        data = text.encode(encoding)
    except (UnicodeError, LookupError) as exc:
        raise ImageError(f"cannot encode text as {encoding} ({_one_line(exc)}): {path}") from exc
    return atomic_write_bytes(path, data)
