"""Write a synthetic view-consistent profile dataset: identities x views x lights.

Layout of a dataset folder (documented in ``docs/synthetic-data.md``)::

    manifest.json            generator version, seed, parameter ranges, counts, shard list
    shard-00000.npz          arrays of up to `per_shard` identities (see SHARD_ARRAYS)
    shard-00000.json         per-identity metadata (head parameters, lights); written last,
                             so its presence marks the shard as complete

Identity ``i`` is drawn from ``numpy.random.default_rng([seed, i])``: the data do not depend
on how the work is split (``--shard i/n``) or resumed. Geometry maps (alpha, depth, normals,
surface coordinates, regions) are stored once per view, since lighting does not change them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icportrait import __version__
from icportrait.errors import ICPortraitError
from icportrait.faces.pose import HeadPose, pose_to_matrix
from icportrait.io import PHOTO_SUFFIXES, atomic_write_bytes, atomic_write_text

GENERATOR_VERSION = 1
SHARED_SCENE = 2**31 - 1  # rng stream of the poses/lights shared by all identities

# name -> (dtype, per-identity shape given V views, L lights, S size)
SHARD_ARRAYS = {
    "rgb": ("uint8", "V L S S 3"),          # sRGB renders
    "alpha": ("uint8", "V S S"),            # coverage x 255
    "depth": ("float16", "V S S"),          # camera z, NaN on background
    "normals": ("int8", "V S S 3"),         # camera-axes unit normals x 127
    "surface_xyz": ("float16", "V S S 3"),  # rest-frame surface point, NaN on background
    "region": ("uint8", "V S S"),           # region labels, 255 on background
    "pose": ("float32", "V 3"),             # yaw, pitch, roll (degrees)
    "rotation": ("float32", "V 3 3"),       # head -> camera
    "translation": ("float32", "3"),        # camera position of the pivot
}


@dataclass(frozen=True)
class SynthConfig:
    identities: int
    views: int = 8
    lights: int = 2
    size: int = 128
    seed: int = 0
    yaw: tuple[float, float] = (-60.0, 60.0)
    pitch: tuple[float, float] = (-25.0, 25.0)
    roll: tuple[float, float] = (-10.0, 10.0)
    margin: float = 1.0
    per_shard: int = 16
    source: str = "procedural"
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        spread = self.extra.get("feature_spread", 1.0)
        if not 0 < spread <= 3:
            raise ICPortraitError(f"--feature-spread must be in (0, 3], got {spread}")
        if self.identities < 1:
            raise ICPortraitError(f"--identities must be at least 1, got {self.identities}")
        if self.views < 1 or self.lights < 1:
            raise ICPortraitError(f"--views and --lights must be at least 1, got {self.views}, "
                                  f"{self.lights}")
        if not 32 <= self.size <= 1024:
            raise ICPortraitError(f"--size must be in [32, 1024], got {self.size}")
        for name, (lo, hi), limit in (("yaw", self.yaw, 90), ("pitch", self.pitch, 60),
                                      ("roll", self.roll, 60)):
            if lo > hi:
                raise ICPortraitError(f"{name} range ({lo}, {hi}) is empty: min > max")
            if lo < -limit or hi > limit:
                raise ICPortraitError(f"{name} range ({lo}, {hi}) exceeds ±{limit}°: the "
                                      "face would not be visible")
        if not 0.5 <= self.margin <= 3:
            raise ICPortraitError(f"margin must be in [0.5, 3], got {self.margin}")
        if self.per_shard < 1:
            raise ICPortraitError(f"per_shard must be at least 1, got {self.per_shard}")

    @property
    def num_shards(self) -> int:
        return -(-self.identities // self.per_shard)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def shard_name(j: int) -> str:
    return f"shard-{j:05d}"


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n): this worker takes shards j with j % n == i."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ICPortraitError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ICPortraitError(f"--shard {spec}: need 0 <= i < n")
    return i, n


def sample_views(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """V poses (yaw, pitch, roll). Yaw is stratified so every identity spans the range."""
    v = cfg.views
    edges = np.linspace(cfg.yaw[0], cfg.yaw[1], v + 1)
    yaw = rng.uniform(edges[:-1], edges[1:]) if v > 1 else rng.uniform(*cfg.yaw, size=1)
    pitch = rng.uniform(*cfg.pitch, size=v)
    roll = rng.uniform(*cfg.roll, size=v)
    return np.stack([rng.permutation(yaw), pitch, roll], 1).astype(np.float32)


def _light_to_json(light) -> dict:
    d = dataclasses.asdict(light)
    d["sh"] = np.asarray(light.sh).round(5).tolist()
    return d


def photo_paths(source: str) -> list[Path]:
    """The portraits of a ``photos:DIR`` source, sorted (identity i is the i-th photo)."""
    folder = Path(source.split(":", 1)[1])
    if not folder.is_dir():
        raise ICPortraitError(f"photo folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise ICPortraitError(f"{folder} has no .png/.jpg/.webp photos")
    return paths


def _identity_mesh(index: int, cfg: SynthConfig, rng: np.random.Generator):
    """The head of identity ``index`` and its metadata: procedural, or a lifted photo."""
    if cfg.source == "procedural":
        from icportrait.synth.head import build_head, sample_head_params

        params = sample_head_params(rng, float(cfg.extra.get("feature_spread", 1.0)))
        return build_head(params), {"params": dataclasses.asdict(params)}
    from icportrait.faces import detect_faces, face_mesh, select_face
    from icportrait.io import load_image
    from icportrait.synth.photo_lift import lifted_head_mesh

    path = photo_paths(cfg.source)[index]
    image = load_image(path)
    try:
        mesh = face_mesh(image, select_face(detect_faces(image)))
    except ICPortraitError as exc:
        raise ICPortraitError(f"{path}: {exc}") from exc
    return lifted_head_mesh(image, mesh), {"photo": path.name}


def render_identity(index: int, cfg: SynthConfig) -> tuple[dict[str, np.ndarray], dict]:
    """All views x lights of identity ``index``: arrays (see SHARD_ARRAYS) and metadata."""
    from icportrait.synth.raster import Camera, head_translation, random_lighting, render

    rng = np.random.default_rng([cfg.seed, index])
    mesh, source_meta = _identity_mesh(index, cfg, rng)
    camera = Camera(margin=cfg.margin)
    # ``extra={"shared_views": True}``: every identity gets the same poses and lights, so view
    # v / light l of identity j is the exact template for rendering identity i there
    # (evaluation suites need such ground truth).
    scene = np.random.default_rng([cfg.seed, SHARED_SCENE]) \
        if cfg.extra.get("shared_views") else rng
    poses = sample_views(scene, cfg)
    lights = [random_lighting(scene) for _ in range(cfg.lights)]
    v, n_l, s = cfg.views, cfg.lights, cfg.size
    out = {
        "rgb": np.zeros((v, n_l, s, s, 3), np.uint8),
        "alpha": np.zeros((v, s, s), np.uint8),
        "depth": np.zeros((v, s, s), np.float16),
        "normals": np.zeros((v, s, s, 3), np.int8),
        "surface_xyz": np.zeros((v, s, s, 3), np.float16),
        "region": np.zeros((v, s, s), np.uint8),
        "pose": poses,
        "rotation": np.zeros((v, 3, 3), np.float32),
        "translation": head_translation(mesh, camera).astype(np.float32),
    }
    for vi, (yaw, pitch, roll) in enumerate(poses):
        rot = pose_to_matrix(HeadPose(float(yaw), float(pitch), float(roll)))
        out["rotation"][vi] = rot
        for li, light in enumerate(lights):
            r = render(mesh, rot, s, camera, light, geometry=li == 0)
            out["rgb"][vi, li] = r["rgb"]
            if li == 0:
                out["alpha"][vi] = np.rint(r["alpha"] * 255).astype(np.uint8)
                out["depth"][vi] = r["depth"]
                out["normals"][vi] = np.rint(np.nan_to_num(r["normals"]) * 127).astype(np.int8)
                out["surface_xyz"][vi] = r["surface_xyz"]
                out["region"][vi] = r["region"]
    meta = {
        "identity": index,
        **source_meta,
        "lights": [_light_to_json(x) for x in lights],
        "camera": dataclasses.asdict(camera),
        # rest-frame landmarks: what cross-identity correspondence is anchored on
        # (icportrait.synth.correspondence.cross_identity_flow)
        "landmarks": {k: [float(c) for c in v] for k, v in mesh.landmarks.items()},
    }
    return out, meta


def write_manifest(root: Path, cfg: SynthConfig) -> dict:
    """Create the manifest, or check that an existing one was made with the same settings."""
    path = root / "manifest.json"
    manifest = {
        "kind": "icportrait-synth",
        "generator_version": GENERATOR_VERSION,
        "icportrait": __version__,
        "config": json.loads(json.dumps(cfg.to_json())),  # tuples -> lists, as stored
        "shards": [shard_name(j) for j in range(cfg.num_shards)],
        "arrays": {k: {"dtype": d, "shape": s} for k, (d, s) in SHARD_ARRAYS.items()},
    }
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("config") != manifest["config"] or \
                old.get("generator_version") != GENERATOR_VERSION:
            raise ICPortraitError(
                f"{root} already holds a dataset made with other settings; use a new --out "
                "folder (or the same settings to resume)"
            )
        return old
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def generate(
    root: str | Path, cfg: SynthConfig, shard: tuple[int, int] = (0, 1),
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render the dataset into ``root``; finished shards are skipped (resumable).

    Returns counts: shards written now, skipped, and views rendered per second.
    """
    cfg.validate()
    if cfg.source.startswith("photos:"):
        n = len(photo_paths(cfg.source))
        if cfg.identities > n:
            raise ICPortraitError(f"--identities {cfg.identities} but {cfg.source} has only "
                                  f"{n} photos")
    elif cfg.source != "procedural":
        raise ICPortraitError(f"source must be 'procedural' or 'photos:DIR', got {cfg.source!r}")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ICPortraitError(f"cannot write to {root}: {exc.strerror or exc}") from exc
    write_manifest(root, cfg)
    mine = [j for j in range(cfg.num_shards) if j % shard[1] == shard[0]]
    todo = [j for j in mine if not (root / f"{shard_name(j)}.json").exists()]
    written, views, t0 = 0, 0, time.perf_counter()
    for n_done, j in enumerate(todo):
        ids = range(j * cfg.per_shard, min((j + 1) * cfg.per_shard, cfg.identities))
        arrays: dict[str, list] = {k: [] for k in SHARD_ARRAYS}
        metas = []
        for i in ids:
            data, meta = render_identity(i, cfg)
            for k in SHARD_ARRAYS:
                arrays[k].append(data[k])
            metas.append(meta)
            views += cfg.views * cfg.lights
        buf = io.BytesIO()
        np.savez_compressed(buf, identity=np.array(list(ids), np.int64),
                            **{k: np.stack(v) for k, v in arrays.items()})
        atomic_write_bytes(root / f"{shard_name(j)}.npz", buf.getvalue())
        atomic_write_text(root / f"{shard_name(j)}.json",
                          json.dumps({"identities": metas}) + "\n")
        written += 1
        if progress:
            progress(n_done + 1, len(todo))
    dt = time.perf_counter() - t0
    return {"shards_written": written, "shards_skipped": len(mine) - len(todo),
            "views_rendered": views, "views_per_second": round(views / dt, 1) if dt else None}
