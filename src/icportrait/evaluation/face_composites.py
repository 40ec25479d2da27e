"""Photos with faces at known places, for measuring detection: portraits pasted onto real
backgrounds at chosen sizes, rolls and yaws.

A face is either a real portrait's head (a feathered ellipse around its face, so hair and
background come along) turned in the image plane, or the portrait's face lifted to a
textured mesh (icportrait.synth.photo_lift) and rendered turned by a yaw, then pasted the
same way. The truth of each pasted face is where its mesh points land: a centre and a size,
the width of the face mesh before roll (what a detector's box measures), and its yaw and
roll.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from icportrait.faces import face_mesh, select_face
from icportrait.faces.detect import FaceBox, detect_faces
from icportrait.faces.pose import HeadPose, pose_to_matrix


@dataclass(frozen=True)
class PlacedFace:
    """Where a pasted face is: centre (x, y), size (px, face-mesh width), yaw and roll."""

    center: tuple[float, float]
    size: float
    yaw: float
    roll: float
    source: str

    def matches(self, box: FaceBox) -> bool:
        """A detection is this face if the face's centre is in the box and the sizes agree
        within a factor of two (detectors frame faces differently)."""
        cx, cy = self.center
        inside = box.x0 <= cx <= box.x1 and box.y0 <= cy <= box.y1
        return inside and 0.5 <= max(box.width, box.height) / self.size <= 2.5


@dataclass
class Portrait:
    """A source portrait and its face mesh (image pixels)."""

    name: str
    image: np.ndarray
    mesh: np.ndarray

    @classmethod
    def of(cls, name: str, image: np.ndarray) -> Portrait:
        return cls(name, image, face_mesh(image, select_face(detect_faces(image))))


def _face_patch(portrait: Portrait, yaw: float, size: float, roll: float, lifted: bool):
    """The face as an RGBA patch at ``size`` px face width, turned by ``roll`` (and by
    ``yaw`` when ``lifted``), and its centre in the patch."""
    from icportrait.faces.topology import fill_holes, mesh_triangles
    from icportrait.synth.photo_lift import LiftedFace, render_lifted

    pts = portrait.mesh[:468]
    width = float(np.ptp(pts[:, 0]))  # the face's own width, before any turn
    if lifted:
        # Eyes and mouth closed over (the bare mesh has holes there).
        face = LiftedFace(portrait.image, pts.astype(np.float64), fill_holes(mesh_triangles()))
        rot = pose_to_matrix(HeadPose(yaw, 0.0, 0.0))
        # Drawn pixels are the same on any background; the rest is transparent.
        image = render_lifted(face, rot, background=(0, 0, 0))
        white = render_lifted(face, rot, background=(255, 255, 255))
        alpha = (image == white).all(-1).astype(np.float32)
        centre = ((pts - face.center) @ rot.T + face.center)[:, :2].mean(0)
    else:
        image = portrait.image
        centre = pts[:, :2].mean(0)
        alpha = np.zeros(image.shape[:2], np.float32)
        axes = (int(width * 0.85), int(np.ptp(pts[:, 1]) * 0.9))
        cv2.ellipse(alpha, (int(centre[0]), int(centre[1] - 0.1 * axes[1])), axes, 0, 0, 360,
                    1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, width * 0.03))
    scale = size / width
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, scale)
    half = int(np.ceil(size * 1.6))
    m[:, 2] += np.array([half, half]) - centre
    side = 2 * half
    src = image if scale >= 0.5 else cv2.GaussianBlur(image, (0, 0), 0.25 / scale)
    rgb = cv2.warpAffine(src, m, (side, side), flags=cv2.INTER_AREA if scale < 1
                         else cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, m, (side, side), flags=cv2.INTER_LINEAR)
    return rgb, a, (half, half)


def composite(background: np.ndarray, portraits: list[Portrait], rng: np.random.Generator,
              n_faces: int, sizes: tuple[float, float] = (32, 256),
              rolls: tuple[float, float] = (-45, 45), yaws: tuple[float, float] = (-60, 60),
              lifted_fraction: float = 0.5) -> tuple[np.ndarray, list[PlacedFace]]:
    """``background`` with up to ``n_faces`` faces pasted where they do not overlap.

    Sizes are drawn log-uniformly, rolls and yaws uniformly; a share ``lifted_fraction`` of
    the faces is lifted and yaw-turned, the rest keep their portrait's own yaw (0 recorded)."""
    out = background.copy().astype(np.float32)
    h, w = out.shape[:2]
    placed: list[PlacedFace] = []
    taken: list[tuple[float, float, float]] = []
    for _ in range(n_faces):
        portrait = portraits[rng.integers(len(portraits))]
        size = float(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]))))
        roll = float(rng.uniform(*rolls))
        lifted = rng.random() < lifted_fraction
        yaw = float(rng.uniform(*yaws)) if lifted else 0.0
        rgb, a, (ph, pw) = _face_patch(portrait, yaw, size, roll, lifted)
        side = rgb.shape[0]
        for _try in range(30):  # a place that leaves room around every face
            cx, cy = rng.uniform(size * 0.7, w - size * 0.7), rng.uniform(size, h - size * 0.8)
            if all(np.hypot(cx - x, cy - y) > 1.3 * (size + s) for x, y, s in taken):
                break
        else:
            continue
        x0, y0 = round(cx) - pw, round(cy) - ph
        xs0, ys0 = max(0, -x0), max(0, -y0)
        xs1, ys1 = min(side, w - x0), min(side, h - y0)
        region = out[y0 + ys0:y0 + ys1, x0 + xs0:x0 + xs1]
        alpha = a[ys0:ys1, xs0:xs1, None]
        region[:] = region * (1 - alpha) + rgb[ys0:ys1, xs0:xs1] * alpha
        taken.append((cx, cy, size))
        placed.append(PlacedFace((cx, cy), size, yaw, roll, portrait.name))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), placed


def score_detections(faces: list[PlacedFace], boxes: list[FaceBox]) -> tuple[list[bool], int]:
    """Which faces were found (one detection each, best-scoring first) and how many
    detections match no face (false positives)."""
    found = [False] * len(faces)
    false_pos = 0
    for box in sorted(boxes, key=lambda b: -b.score):
        hit = next((i for i, f in enumerate(faces) if not found[i] and f.matches(box)), None)
        if hit is None:
            false_pos += 1
        else:
            found[hit] = True
    return found, false_pos
