"""Tests for icportrait.io: loading every kind of input, clear errors, atomic saving."""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from icportrait.errors import ICPortraitError, ImageError
from icportrait.io import (
    MAX_PIXELS,
    MIN_SIDE,
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    save_image,
)

H, W = 40, 60


def _gradient_rgb(h: int = H, w: int = W) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def _noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_rgb(arr: np.ndarray, h: int = H, w: int = W) -> None:
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8
    assert arr.flags.c_contiguous
    assert arr.flags.writeable


def _png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but whose pixel data is a few bytes.

    Decoding it would fail as truncated, so a "too large" error proves the header check ran first.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------
# Formats and modes
# ------------------------------------------------------------------------------------------


def test_errors_are_icportrait_errors() -> None:
    assert issubclass(ImageError, ICPortraitError)


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = _gradient_rgb()
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    out = load_image(path)
    _assert_rgb(out)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    rgb = _gradient_rgb()
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    out = load_image(str(path))
    _assert_rgb(out)
    assert np.abs(out.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("L", 100, (100, 100, 100)),
        ("1", 1, (255, 255, 255)),
        ("1", 0, (0, 0, 0)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
        ("RGB", (10, 20, 30), (10, 20, 30)),
    ],
)
def test_opaque_modes(mode: str, color: object, expected: tuple[int, int, int]) -> None:
    out = load_image(Image.new(mode, (W, H), color))
    _assert_rgb(out)
    assert np.abs(out[5, 5].astype(int) - expected).max() <= 2


@pytest.mark.parametrize(("mode", "ext"), [("L", "png"), ("1", "png"), ("CMYK", "jpg")])
def test_opaque_modes_from_files(tmp_path: Path, mode: str, ext: str) -> None:
    path = tmp_path / f"img.{ext}"
    Image.new(mode, (W, H)).save(path)
    _assert_rgb(load_image(path))


def test_p_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    Image.fromarray(_gradient_rgb()).convert("P").save(path)
    with Image.open(path) as im:
        assert im.mode == "P"
    _assert_rgb(load_image(path))


def test_p_with_transparency_uses_background(tmp_path: Path) -> None:
    im = Image.new("P", (W, H), 0)
    im.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)  # index 0 black, index 1 red
    im.paste(1, (0, 0, W // 2, H))  # left half red, right half index 0 (transparent)
    im.info["transparency"] = 0
    path = tmp_path / "pt.png"
    im.save(path, transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    out = load_image(path, background=(0, 255, 0))
    _assert_rgb(out)
    assert tuple(out[5, 5]) == (200, 10, 10)
    assert tuple(out[5, W - 5]) == (0, 255, 0)  # composited, not dropped to palette black


def test_rgba_alpha_zero_gives_background(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (W, H), (0, 0, 0, 0)).save(path)
    out = load_image(path)
    _assert_rgb(out)
    assert (out == 255).all()  # default white, not the black hidden under alpha 0
    out = load_image(path, background=(10, 20, 30))
    assert (out == np.array([10, 20, 30], np.uint8)).all()


def test_rgba_half_alpha_is_blended(tmp_path: Path) -> None:
    path = tmp_path / "half.png"
    Image.new("RGBA", (W, H), (0, 0, 0, 128)).save(path)
    out = load_image(path)
    assert abs(int(out[0, 0, 0]) - 127) <= 1


def test_la_is_composited(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.new("LA", (W, H), (0, 0)).save(path)
    with Image.open(path) as im:
        assert im.mode == "LA"
    out = load_image(path, background=(1, 2, 3))
    _assert_rgb(out)
    assert tuple(out[0, 0]) == (1, 2, 3)


def test_i16_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    gray = np.zeros((H, W), np.uint16)
    gray[:, :20] = 65535
    gray[:, 20:40] = 32768
    gray[:, 40:] = 257 * 10
    path = tmp_path / "g16.png"
    Image.fromarray(gray).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = load_image(path)
    _assert_rgb(out)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert abs(int(out[0, 30, 0]) - 128) <= 1
    assert tuple(out[0, 50]) == (10, 10, 10)


def test_i16_big_endian_and_i32() -> None:
    big = Image.frombytes("I;16B", (W, H), (np.full((H, W), 32768, ">u2")).tobytes())
    assert abs(int(load_image(big)[0, 0, 0]) - 128) <= 1
    i32 = Image.fromarray(np.full((H, W), 65535, np.int32))
    assert i32.mode == "I"
    assert load_image(i32)[0, 0, 0] == 255


def test_f_mode() -> None:
    unit = Image.fromarray(np.full((H, W), 0.5, np.float32))
    assert unit.mode == "F"
    out = load_image(unit)
    _assert_rgb(out)
    assert out[0, 0, 0] == 128
    assert load_image(Image.fromarray(np.full((H, W), 200.0, np.float32)))[0, 0, 0] == 200


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (W, H), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = load_image(path)
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


# ------------------------------------------------------------------------------------------
# EXIF orientation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [
        # Tag 6 means "rotate 90 degrees clockwise to display"; store the picture turned
        # counter-clockwise (ROTATE_90) so that the clockwise turn restores it.
        (6, Image.Transpose.ROTATE_90),
        # Tag 8 means "rotate 90 degrees counter-clockwise to display".
        (8, Image.Transpose.ROTATE_270),
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, stored_as: Image.Transpose
) -> None:
    upright = np.zeros((H, W, 3), np.uint8)
    upright[:, : W // 2] = (255, 0, 0)  # left half red
    upright[:, W // 2 :] = (0, 0, 255)  # right half blue
    stored = Image.fromarray(upright).transpose(stored_as)
    assert stored.size == (H, W)  # stored sideways: 40 wide, 60 tall
    exif = stored.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)

    with Image.open(path) as raw:
        assert raw.size == (H, W)
        assert raw.getexif()[0x0112] == orientation

    out = load_image(path)
    _assert_rgb(out)  # (40, 60, 3): upright again
    left = out[:, 5 : W // 2 - 5].mean(axis=(0, 1))
    right = out[:, W // 2 + 5 : -5].mean(axis=(0, 1))
    assert left[0] > 200 and left[2] < 60  # red
    assert right[2] > 200 and right[0] < 60  # blue


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def _one_line_error(excinfo: pytest.ExceptionInfo[ImageError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="not found") as excinfo:
        load_image(path)
    assert str(path) in _one_line_error(excinfo)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)") as excinfo:
        load_image(path)
    assert str(path) in _one_line_error(excinfo)


def test_empty_bytes_and_stream() -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(io.BytesIO())


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(ImageError, match="not a supported image") as excinfo:
        load_image(path)
    assert str(path) in _one_line_error(excinfo)


def test_eps_is_not_decoded(tmp_path: Path) -> None:
    # EPS would run Ghostscript; it is outside the allowed photo formats.
    path = tmp_path / "x.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n")
    with pytest.raises(ImageError, match="not a supported image"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_noise_rgb(64, 64)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt") as excinfo:
        load_image(path)
    assert str(path) in _one_line_error(excinfo)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_too_small(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(path)
    with pytest.raises(ImageError, match=r"too small: 1x1"):
        load_image(path)
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((MIN_SIDE - 1, 100, 3), np.uint8))
    _assert_rgb(load_image(np.zeros((MIN_SIDE, MIN_SIDE), np.uint8)), MIN_SIDE, MIN_SIDE)


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageError, match=r"too large: 100x100 = 10,000 px .* 5,000 px") as excinfo:
        load_image(path, max_pixels=5000)
    assert str(path) in _one_line_error(excinfo)
    with pytest.raises(ImageError, match="too large"):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=5000)


def test_too_large_is_checked_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.png"
    Image.new("1", (3000, 3000)).save(path)

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match=r"too large: 3000x3000 = 9,000,000 px"):
        load_image(path, max_pixels=1_000_000)


def test_decompression_bomb_header(tmp_path: Path) -> None:
    # A 50 MP phone photo's size passes the default limit (the file is then found truncated).
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(8160, 6120))
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)
    # 12000x10000 declared in a 100-byte file: over our default limit, under Pillow's.
    path.write_bytes(_png_with_header_size(12_000, 10_000))
    with pytest.raises(ImageError, match="too large: 12000x10000"):
        load_image(path)
    assert 12_000 * 10_000 > MAX_PIXELS
    # 100000x100000: Pillow itself refuses in Image.open; that too must become ImageError.
    path.write_bytes(_png_with_header_size(100_000, 100_000))
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
    # Our limit passes it, so decoding is attempted and the missing data is reported.
    path.write_bytes(_png_with_header_size(64, 64))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_pillow_bomb_warning_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    data = io.BytesIO()
    Image.new("RGB", (80, 80)).save(data, format="PNG")  # 6400 px: Pillow would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_rgb(load_image(data.getvalue(), max_pixels=10_000), 80, 80)
    big = io.BytesIO()
    Image.new("RGB", (120, 120)).save(big, format="PNG")  # 14400 px: Pillow would refuse
    with pytest.raises(ImageError, match="too large"):
        load_image(big.getvalue(), max_pixels=10_000)
    # A caller allowing more than Pillow does gets the image, and Pillow's global is restored.
    _assert_rgb(load_image(big.getvalue(), max_pixels=20_000), 120, 120)
    assert Image.MAX_IMAGE_PIXELS == 5000


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((20, 20, 2), np.uint8), "2 channels"),
        (np.zeros((20, 20, 5), np.uint8), "5 channels"),
        (np.zeros((1, 20, 20, 3), np.uint8), "2 or 3 dimensions"),
        (np.zeros(400, np.uint8), "2 or 3 dimensions"),
        (np.zeros((20, 20, 3), np.int64), "dtype int64"),
        (np.zeros((20, 20, 3), bool), "dtype bool"),
        (np.full((20, 20, 3), 255.0), r"\[0, 1\]"),
        (np.full((20, 20, 3), np.nan), "NaN"),
    ],
)
def test_bad_arrays(array: np.ndarray, fragment: str) -> None:
    with pytest.raises(ImageError, match=fragment):
        load_image(array)


def test_bad_source_and_options() -> None:
    with pytest.raises(ImageError, match="unsupported image source type int"):
        load_image(123)  # type: ignore[arg-type]
    rgb = _gradient_rgb()
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(rgb, max_pixels=0)
    with pytest.raises(ImageError, match="background"):
        load_image(rgb, background=(0, 0, 300))


# ------------------------------------------------------------------------------------------
# Other source types
# ------------------------------------------------------------------------------------------


def test_bytes_and_file_objects(tmp_path: Path) -> None:
    rgb = _gradient_rgb()
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(load_image(data), rgb)
    np.testing.assert_array_equal(load_image(bytearray(data)), rgb)
    np.testing.assert_array_equal(load_image(io.BytesIO(data)), rgb)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_image(handle), rgb)
        assert not handle.closed  # the caller's file stays the caller's


def test_file_object_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(b"garbage" * 10)
    with open(path, "rb") as handle, pytest.raises(ImageError, match=r"bad\.png"):
        load_image(handle)


def test_pil_image_is_not_modified() -> None:
    im = Image.new("RGBA", (W, H), (255, 0, 0, 0))
    out = load_image(im)
    _assert_rgb(out)
    assert (out == 255).all()
    assert im.mode == "RGBA" and im.getpixel((0, 0)) == (255, 0, 0, 0)


def test_numpy_inputs() -> None:
    rgb = _gradient_rgb()
    out = load_image(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)

    strided = load_image(np.asfortranarray(rgb)[:, ::-1])
    _assert_rgb(strided)
    np.testing.assert_array_equal(strided, rgb[:, ::-1])

    gray16 = np.full((H, W), 65535, np.uint16)
    gray16[:, :10] = 32768
    out16 = load_image(gray16)
    _assert_rgb(out16)
    assert out16[0, 20, 0] == 255 and abs(int(out16[0, 0, 0]) - 128) <= 1

    out_f = load_image(np.full((H, W, 3), 0.5, np.float32))
    _assert_rgb(out_f)
    assert (out_f == 128).all()

    _assert_rgb(load_image(np.zeros((H, W, 1), np.uint8)))
    rgba = np.zeros((H, W, 4), np.uint8)
    assert (load_image(rgba, background=(0, 0, 255)) == (0, 0, 255)).all()


# ------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".JPEG", ".webp"])
def test_save_round_trip(tmp_path: Path, suffix: str) -> None:
    rgb = _gradient_rgb()
    target = tmp_path / "nested" / "dir" / f"out{suffix}"
    assert save_image(rgb, target) == target
    out = load_image(target)
    _assert_rgb(out)
    if suffix == ".png":
        np.testing.assert_array_equal(out, rgb)
    else:
        assert np.abs(out.astype(int) - rgb).mean() < 8
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_save_replaces_existing_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")
    rgb = _gradient_rgb()
    save_image(rgb, target)
    np.testing.assert_array_equal(load_image(target), rgb)
    assert os.listdir(tmp_path) == ["out.png"]  # no temp files left


def test_save_unknown_suffix_leaves_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.bmpx"
    target.write_bytes(b"keep me")
    with pytest.raises(ImageError, match=r"unknown suffix '\.bmpx'"):
        save_image(_gradient_rgb(), target)
    assert target.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["out.bmpx"]


def test_save_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="uint8"):
        save_image(np.zeros((20, 20, 3), np.float32), tmp_path / "a.png")
    with pytest.raises(ImageError, match="RGBA image as JPEG"):
        save_image(np.zeros((20, 20, 4), np.uint8), tmp_path / "a.jpg")
    with pytest.raises(ImageError, match="quality"):
        save_image(np.zeros((20, 20, 3), np.uint8), tmp_path / "a.jpg", quality=0)
    assert os.listdir(tmp_path) == []


def test_atomic_write_text_and_bytes(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "sub" / "report.json", '{"a": "é"}\n')
    assert path.read_bytes() == '{"a": "é"}\n'.encode()
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["report.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600


def test_atomic_write_failure_removes_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(ImageError, match="cannot write file"):
        atomic_write_bytes(target, b"data")
    assert os.listdir(tmp_path) == ["taken"]
    assert os.listdir(target) == []


def test_loads_in_a_fresh_process(tmp_path: Path) -> None:
    # Pillow registers its format plugins lazily; the first load in a process must work too.
    import subprocess
    import sys

    path = tmp_path / "first.png"
    Image.new("RGB", (32, 24), (10, 20, 30)).save(path)
    code = f"from icportrait.io import load_image; print(load_image({str(path)!r}).shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "(24, 32, 3)", out.stderr
