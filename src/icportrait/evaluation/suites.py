"""Named, versioned evaluation suites: lists of (profile, template[, ground truth]) samples.

- ``synth-small`` / ``synth-full``: held-out procedural identities rendered by the data
  engine with a fixed seed that training never uses, every identity under the *same* poses and
  lights (``shared_views``). A sample is identity ``i`` from views ``a`` and ``c`` (the
  profile references, ``a`` first), identity ``j != i`` from view ``b`` under light ``lb``
  (the template), and identity ``i`` from view ``b`` under light ``lb``: the ground truth,
  with its normals, face region and the ground-truth flow truth -> profile view ``a``.
- ``real``: the bundled public-domain portraits; the profile is one person's photo, the
  template another person's photo (and its mirror image).
- ``folder:DIR``: your own photos. Each image directly in DIR is one person; each
  sub-folder is one person with several photos (all used as profile references). Every
  ordered pair of distinct people is a sample, the template being the other's first photo.
- ``people`` / ``people-heldout``: ``folder:`` suites of the real people in the photo sources
  (:mod:`icportrait.data.photos`, docs/data-sources.md), laid out once in the cache: four
  people (the astronaut, Grace Hopper, Obama with three photos, Biden; 12 ordered pairs),
  and the two of them no stage of the embedded model trained on (Hopper and Biden; 2 pairs).

Suites are rendered once into a cache folder and reused. Changing a suite's definition means
a new version number, so results stay comparable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.io import PHOTO_SUFFIXES


@dataclass(frozen=True)
class SynthSuite:
    name: str
    version: int
    identities: int
    views: int
    lights: int
    pairs_per_identity: int
    size: int = 128
    seed: int = 9_000          # training sets use small seeds (0, 1); never this one
    yaw: tuple[float, float] = (-45.0, 45.0)
    feature_spread: float = 1.0  # ``data synth --feature-spread``: how far apart identities are

    @property
    def folder_name(self) -> str:
        return f"{self.name}-v{self.version}"


SYNTH_SUITES = {
    s.name: s for s in (
        # version 2: renders carry landmarks (cross-identity ground-truth flow); version 3:
        # identities at feature spread 1.8, which dlib tells apart (docs/synthetic-data.md)
        SynthSuite("synth-small", 3, identities=12, views=4, lights=2, pairs_per_identity=2,
                   feature_spread=1.8),
        SynthSuite("synth-full", 3, identities=48, views=6, lights=2, pairs_per_identity=4,
                   seed=9_001, feature_spread=1.8),
    )
}


@dataclass(frozen=True)
class PeopleSuite:
    name: str
    version: int
    people: tuple[str, ...]

    @property
    def folder_name(self) -> str:
        return f"{self.name}-v{self.version}"


# Each person: the photo source and its files of that person (the first is their template).
PEOPLE = {
    "astronaut": ("skimage", ("astronaut.png",)),
    "hopper": ("matplotlib", ("grace_hopper.jpg",)),
    "obama": ("face_recognition", ("obama.jpg", "obama2.jpg", "obama3.jpg")),
    "biden": ("face_recognition", ("biden.jpg",)),
}
PEOPLE_SUITES = {
    s.name: s for s in (
        PeopleSuite("people", 1, ("astronaut", "hopper", "obama", "biden")),
        PeopleSuite("people-heldout", 1, ("hopper", "biden")),
    )
}
SUITE_NAMES = (*SYNTH_SUITES, "real", *PEOPLE_SUITES, "folder:DIR")


@dataclass
class Sample:
    """One evaluation case. Images are H x W x 3 uint8 RGB.

    ``truth`` (synthetic only): the profile's identity in the template's pose and light;
    ``flow``/``valid``: ground-truth flow truth -> ``profile[0]`` ``(2, S, S)`` (pixel
    coordinates, the :mod:`icportrait.models.matching` convention); ``template_flow``/
    ``template_valid``: template -> ``profile[0]``, what the matching net computes (the same
    point of the face on the two heads, ``SynthDataset.cross_flow``), ``template_head`` its
    head's pixels; ``normals``: the truth
    view's camera-axes normals (S x S x 3, NaN on background); ``face_region``: its skin
    pixels (bool)."""

    id: str
    profile: list[np.ndarray]
    template: np.ndarray
    identity: str
    template_identity: str
    truth: np.ndarray | None = None
    flow: np.ndarray | None = None
    valid: np.ndarray | None = None
    template_flow: np.ndarray | None = None
    template_valid: np.ndarray | None = None
    template_head: np.ndarray | None = None
    normals: np.ndarray | None = None
    face_region: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.truth is not None


def cache_dir() -> Path:
    root = os.environ.get("ICPORTRAIT_CACHE") or Path.home() / ".cache" / "icportrait"
    return Path(root) / "eval"


def load_suite(name: str, cache: Path | None = None, limit: int | None = None) -> list[Sample]:
    """The samples of suite ``name`` (see the module docstring); ``limit`` keeps the first N."""
    if name in SYNTH_SUITES:
        samples = synth_samples(SYNTH_SUITES[name], cache or cache_dir())
    elif name == "real":
        samples = real_samples()
    elif name in PEOPLE_SUITES:
        samples = folder_samples(people_folder(PEOPLE_SUITES[name], cache or cache_dir()))
    elif name.startswith("folder:"):
        samples = folder_samples(Path(name.split(":", 1)[1]))
    else:
        raise ICPortraitError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_NAMES)}")
    return samples[:limit] if limit else samples


def synth_dataset(suite: SynthSuite, cache: Path):
    """Render the suite's dataset once (resumable, deterministic) and open it."""
    from icportrait.synth.dataset import SynthDataset
    from icportrait.synth.generate import SynthConfig, generate

    root = cache / suite.folder_name
    cfg = SynthConfig(identities=suite.identities, views=suite.views, lights=suite.lights,
                      size=suite.size, seed=suite.seed, yaw=suite.yaw,
                      extra={"shared_views": True, **({"feature_spread": suite.feature_spread}
                                                      if suite.feature_spread != 1.0 else {})})
    generate(root, cfg)
    return SynthDataset(root)


def synth_samples(suite: SynthSuite, cache: Path) -> list[Sample]:
    from icportrait.synth.head import REGIONS

    ds = synth_dataset(suite, cache)
    rng = np.random.default_rng([suite.seed, 1])
    n, v, n_l = suite.identities, suite.views, suite.lights
    samples = []
    for i in range(n):
        d = ds.identity(i)
        for k in range(suite.pairs_per_identity):
            a, c, b = rng.choice(v, 3, replace=False)
            la, lc, lb = rng.integers(n_l, size=3)
            j = (i + 1 + k) % n
            flow, valid = ds.flow(i, target=int(b), source=int(a))
            template_flow, template_valid = ds.cross_flow(j, int(b), i, int(a))
            normals = d["normals"][b].astype(np.float32) / 127
            normals[d["alpha"][b] < 128] = np.nan
            yaw_a, yaw_b = float(d["pose"][a][0]), float(d["pose"][b][0])
            samples.append(Sample(
                id=f"{suite.folder_name}-{i:03d}-{k}",
                profile=[d["rgb"][a, la], d["rgb"][c, lc]],
                template=ds.image(j, int(b), int(lb)),
                identity=f"synth-{i}", template_identity=f"synth-{j}",
                truth=d["rgb"][b, lb], flow=flow, valid=valid,
                template_flow=template_flow, template_valid=template_valid,
                template_head=ds.identity(j)["alpha"][b] >= 128, normals=normals,
                face_region=d["region"][b] == REGIONS["skin"],
                meta={"profile_view": int(a), "template_view": int(b),
                      "profile_light": int(la), "template_light": int(lb),
                      "yaw_gap": round(abs(yaw_b - yaw_a), 2),
                      "same_light": bool(la == lb),
                      "template_pose": [round(float(x), 2) for x in d["pose"][b]]},
            ))
    return samples


def real_samples() -> list[Sample]:
    """Each bundled portrait as the profile, the other (and its mirror) as the template."""
    from icportrait.faces.samples import SAMPLE_NAMES, load_sample

    people = {name: load_sample(name) for name in SAMPLE_NAMES}
    out = []
    for p, profile in people.items():
        for t, template in people.items():
            if p == t:
                continue
            for mirrored in (False, True):
                tmpl = np.ascontiguousarray(template[:, ::-1]) if mirrored else template
                out.append(Sample(id=f"real-{p}-as-{t}{'-mirror' if mirrored else ''}",
                                  profile=[profile], template=tmpl, identity=p,
                                  template_identity=t, meta={"mirrored_template": mirrored}))
    return out


def people_folder(suite: PeopleSuite, cache: Path, people: dict = PEOPLE) -> Path:
    """The suite's ``folder:`` layout in ``cache``, made once from the photo sources (a person
    with one photo as ``NAME.png``, with several as ``NAME/FILE.png``), written whole or not
    at all."""
    import shutil
    import tempfile

    from icportrait.data.photos import source_photos
    from icportrait.io import save_image

    root = cache / suite.folder_name
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    by_source: dict[str, list[str]] = {}
    for person in suite.people:
        by_source.setdefault(people[person][0], []).append(person)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for source, persons in by_source.items():
            files = [f for p in persons for f in people[p][1]]
            images = iter(source_photos(source, tuple(files)))
            for person in persons:
                names = people[person][1]
                for name in names:
                    path = f"{person}/{Path(name).stem}.png" if len(names) > 1 else \
                        f"{person}.png"
                    save_image(next(images), Path(tmp) / "suite" / path)
        shutil.move(Path(tmp) / "suite", root)
    return root


def folder_samples(folder: Path) -> list[Sample]:
    from icportrait.io import load_image

    if not folder.is_dir():
        raise ICPortraitError(f"suite folder not found: {folder}")
    people: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            photos = sorted(p for p in entry.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if photos:
                people[entry.name] = photos
        elif entry.suffix.lower() in PHOTO_SUFFIXES:
            people[entry.stem] = [entry]
    if len(people) < 2:
        raise ICPortraitError(
            f"{folder} needs photos of at least two people (one image per person, or one "
            f"sub-folder per person); found {len(people)}"
        )
    images = {name: [load_image(p) for p in paths] for name, paths in people.items()}
    return [Sample(id=f"{folder.name}-{p}-as-{t}", profile=images[p], template=images[t][0],
                   identity=p, template_identity=t)
            for p in people for t in people if p != t]
