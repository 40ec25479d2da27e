"""Build the 3D head template used by :mod:`icportrait.faces.pose`.

Reproduce the shipped ``data/head_template.json`` with::

    python -m icportrait.faces.head_template

How it is made (no third-party 3D model is involved, so it is licence-clean):

1. mediapipe's face mesh (478 points with depth) is run on the bundled public-domain
   portraits and on their mirror images;
2. the rigid landmarks are kept (eyelids, iris and lips move with expression and are dropped);
3. the clouds are centred, scaled to unit RMS radius and averaged by generalised Procrustes
   alignment; the mean is made mirror-symmetric (mirror pairs come from the mirrored photos);
4. axes: x is the normal of the symmetry plane, pointing to the image's right; y points from
   forehead to chin within that plane; z = x × y points away from the viewer;
5. zero pitch is calibrated: both portraits look straight into the camera, so the template
   is tilted about x until their mean estimated pitch is 0.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from icportrait.faces.detect import detect_faces, select_face
from icportrait.faces.landmarks import face_mesh
from icportrait.faces.pose import HeadPose, HeadTemplate, head_pose, pose_to_matrix

TEMPLATE_PATH = Path(__file__).parent / "data" / "head_template.json"
FOREHEAD, CHIN = 10, 152
VERSION = 1


def _rigid_indices() -> list[int]:
    from mediapipe.python.solutions import face_mesh_connections as c

    moving = set()
    for conns in (c.FACEMESH_LIPS, c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE):
        moving |= set(itertools.chain(*conns))
    moving -= {33, 133, 263, 362}  # eye corners do not move with blinks
    return [i for i in range(468) if i not in moving]


def _normalise(p: np.ndarray) -> np.ndarray:
    p = p - p.mean(0)
    return p / np.sqrt((p**2).sum(1).mean())


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation R minimising |R src - dst| for centred N x 3 clouds."""
    u, _, vt = np.linalg.svd(dst.T @ src)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _mirror_permutation(cloud: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """perm[i] = the landmark that is i's mirror image, from a photo and its mirror."""
    # The mesh model labels points by where they appear, so un-flipping the mirrored mesh
    # gives the photo's own geometry with left and right labels swapped: no rotation needed.
    back = mirrored * np.array([-1.0, 1.0, 1.0])
    d = ((cloud[:, None, :] - back[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def build(images: list[np.ndarray]) -> dict:
    meshes, mirrors = [], []
    for img in images:
        for flip, store in ((False, meshes), (True, mirrors)):
            im = np.ascontiguousarray(img[:, ::-1]) if flip else img
            store.append(face_mesh(im, select_face(detect_faces(im)))[:468].copy())
    # Mirror pairs over all 468 points, by majority over the photos.
    perms = np.stack([_mirror_permutation(_normalise(m), _normalise(f))
                      for m, f in zip(meshes, mirrors, strict=True)])
    perm = np.array([np.bincount(col).argmax() for col in perms.T])

    clouds = [_normalise(m) for m in meshes + mirrors]
    mean = clouds[0]
    for _ in range(5):  # generalised Procrustes
        aligned = [(_kabsch(c, mean) @ c.T).T for c in clouds]
        mean = _normalise(np.mean(aligned, 0))
    # Mirror-symmetrise: reflect, relabel, realign, average.
    refl = (mean * np.array([-1.0, 1.0, 1.0]))[perm]
    refl = (_kabsch(refl, mean) @ refl.T).T
    sym = _normalise((mean + refl) / 2)

    # Axes: x across the face (image-left landmark -> its mirror), y forehead -> chin.
    pairs = [(i, perm[i]) for i in range(468) if perm[i] != i and sym[perm[i], 0] > sym[i, 0]]
    x = np.mean([sym[j] - sym[i] for i, j in pairs], 0)
    x /= np.linalg.norm(x)
    y = sym[CHIN] - sym[FOREHEAD]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    sym = sym @ np.stack([x, y, z]).T  # express in the new axes

    idx = _rigid_indices()
    template = HeadTemplate(np.array(idx), sym[idx])
    # Zero pitch: the frontal portraits (and their mirrors) should average to pitch 0.
    pitches = [head_pose(m, img.shape, template).pitch
               for m, img in zip(meshes + mirrors, images + images, strict=True)]
    offset = float(np.mean(pitches))
    tilt = pose_to_matrix(HeadPose(0.0, offset, 0.0))
    template = HeadTemplate(template.indices, template.points @ tilt.T)
    return {
        "version": VERSION,
        "made_by": "python -m icportrait.faces.head_template",
        "pitch_offset_deg": round(offset, 3),
        "indices": template.indices.tolist(),
        "points": np.round(template.points, 6).tolist(),
    }


def main() -> None:
    from icportrait.faces.samples import SAMPLE_NAMES, load_sample
    from icportrait.io import atomic_write_text

    data = build([load_sample(n) for n in SAMPLE_NAMES])
    atomic_write_text(TEMPLATE_PATH, json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {TEMPLATE_PATH} ({len(data['indices'])} points, "
          f"pitch offset {data['pitch_offset_deg']:.2f} deg)")


if __name__ == "__main__":
    main()
