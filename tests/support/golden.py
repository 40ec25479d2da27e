"""The embedded model's reference outputs: fixed inputs, seeds and settings; what they gave.

``tests/weights/golden.json`` holds the SHA-256 of the shipped weights and of each case's
portrait (uint8 pixels), and each case's flow (float32, base64). A refactoring must leave the
portraits unchanged bit for bit and the flows to within :data:`FLOW_ATOL` cells: the flow's
sub-cell refinement is a softmax whose last bits differ between CPUs (AVX-512 or not), which
the uint8 portrait absorbs. A new release of ``weights/tiny`` records them again,
deliberately::

    .venv/bin/python tests/support/golden.py      # rewrites tests/weights/golden.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "weights" / "golden.json"
FLOW_ATOL = 1e-4  # cells; a changed match moves a flow by a sizeable fraction of a cell


def encode_flow(flow) -> str:
    return base64.b64encode(flow.numpy().astype("<f4").tobytes()).decode()


def decode_flow(text: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape)


def weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md"):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def outputs() -> dict[str, dict]:
    """Each case through ``generate_portrait`` (what ``icportrait generate`` runs)."""
    import torch

    from icportrait.faces.samples import load_sample
    from icportrait.generation import Settings, generate_portrait, make_template
    from icportrait.generation.pose_templates import parse_pose
    from icportrait.store import load_pipeline

    torch.set_num_threads(2)
    pipe = load_pipeline()
    a, g = load_sample("astronaut"), load_sample("grace_hopper")
    cases = {
        "photo": ([a], g, Settings(steps=6, seed=3)),
        "paste": ([a, g], a, Settings(steps=4, seed=1, paste_back=True)),
        "pose": ([g], make_template(pose=parse_pose("yaw=20")), Settings(steps=3, seed=0)),
    }
    out = {}
    for name, (profiles, template, settings) in cases.items():
        r = generate_portrait(pipe, profiles, template, settings)
        out[name] = {"image": hashlib.sha256(r.image.tobytes()).hexdigest(),
                     "flow": encode_flow(r.flow), "flow_shape": list(r.flow.shape)}
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from icportrait.store import EMBEDDED_MODEL

    record = {"weights_sha256": weights_digest(EMBEDDED_MODEL), "outputs": outputs()}
    GOLDEN.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {GOLDEN}")
