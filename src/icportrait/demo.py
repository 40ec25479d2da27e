"""`icportrait demo`: the most complete job the project can run today, on bundled inputs.

For now this is the face toolkit on the public-domain portraits that ship in packages:
detection, 478-point landmarks, head pose, canonical alignment, face masks, paste-back, and
dlib identity distances (including a mirrored and a rescaled copy of each portrait), written
as images, ``results.json`` and a self-contained ``report.html``. The generation model joins
here once it exists.
"""

from __future__ import annotations

import html
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from icportrait import __version__
from icportrait.faces import (
    SAME_PERSON_THRESHOLD,
    analyze_faces,
    face_embedding,
    identity_distance,
    paste_back,
    prepare_face,
    save_image,
)
from icportrait.faces.draw import annotate, overlay_mask
from icportrait.faces.io import atomic_write_text
from icportrait.samples import SAMPLE_NAMES, load_sample


def _variants(name: str, image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    return {
        name: image,
        f"{name} (mirrored)": np.ascontiguousarray(image[:, ::-1]),
        f"{name} (half size)": cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
    }


def run_demo(out_dir: str | Path, progress: Callable[[str], None] | None = None) -> dict:
    """Run the demo into ``out_dir``; returns the results that ``results.json`` holds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    results: dict = {
        "command": " ".join(["icportrait", *sys.argv[1:]]) if sys.argv else "icportrait demo",
        "icportrait": __version__,
        "python": platform.python_version(),
        "samples": [],
        "identity": [],
    }
    embeddings: dict[str, np.ndarray] = {}
    for name in SAMPLE_NAMES:
        say(f"face toolkit on {name}")
        image = load_sample(name)
        t0 = time.perf_counter()
        faces = analyze_faces(image)
        t_analyze = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = prepare_face(image, size=256)
        t_align = time.perf_counter() - t0
        # Paste the aligned crop back, tinted inside the face mask, to show the inverse map.
        tinted = overlay_mask(prepared.image, prepared.mask, colour=(80, 160, 255), alpha=0.35)
        pasted = paste_back(prepared.aligned, tinted, image, mask=prepared.mask)
        files = {
            "annotated": f"{name}_annotated.png",
            "aligned": f"{name}_aligned.png",
            "mask": f"{name}_mask.png",
            "pasted": f"{name}_pasted_back.png",
        }
        save_image(annotate(image, faces), out / files["annotated"])
        save_image(prepared.image, out / files["aligned"])
        save_image(overlay_mask(prepared.image, prepared.mask), out / files["mask"])
        save_image(pasted, out / files["pasted"])
        results["samples"].append({
            "name": name,
            "size": [image.shape[1], image.shape[0]],
            "faces": [f.to_dict() for f in faces],
            "seconds_detect_landmarks_pose": round(t_analyze, 4),
            "seconds_prepare": round(t_align, 4),
            "files": files,
        })
        for label, variant in _variants(name, image).items():
            box = max(analyze_faces(variant), key=lambda f: f.box.area).box
            embeddings[label] = face_embedding(variant, box)
    say("identity distances")
    labels = list(embeddings)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            d = identity_distance(embeddings[a], embeddings[b])
            results["identity"].append({"a": a, "b": b, "distance": round(d, 4),
                                        "same_person": d < SAME_PERSON_THRESHOLD})
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "report.html", _report_html(results))
    return results


def _report_html(results: dict) -> str:
    e = html.escape
    rows = []
    for s in results["samples"]:
        for f in s["faces"]:
            pose = f["pose"] or {}
            rows.append(
                f"<tr><td>{e(s['name'])}</td><td>{f['score']:.3f}</td><td>{f['size_px']}</td>"
                f"<td>{pose.get('yaw', '')}</td><td>{pose.get('pitch', '')}</td>"
                f"<td>{pose.get('roll', '')}</td><td>{f['landmarks']}</td>"
                f"<td>{s['seconds_detect_landmarks_pose']:.3f}</td></tr>"
            )
    pictures = "".join(
        f"<h3>{e(s['name'])}</h3><div class=row>"
        + "".join(f"<figure><img src='{e(p)}'><figcaption>{e(k)}</figcaption></figure>"
                  for k, p in s["files"].items())
        + "</div>"
        for s in results["samples"]
    )
    ident = "".join(
        f"<tr><td>{e(r['a'])}</td><td>{e(r['b'])}</td><td>{r['distance']:.3f}</td>"
        f"<td>{'same' if r['same_person'] else 'different'}</td></tr>"
        for r in results["identity"]
    )
    return f"""<!doctype html><html><head><meta charset=utf-8><title>icportrait demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}
.row{{display:flex;gap:8px;flex-wrap:wrap}}img{{max-height:256px}}figure{{margin:0}}</style>
</head><body><h1>icportrait demo: face toolkit</h1>
<p>icportrait {e(results['icportrait'])}, Python {e(results['python'])}.
Command: <code>{e(results['command'])}</code></p>
<h2>Faces</h2><table><tr><th>image</th><th>score</th><th>size px</th><th>yaw</th>
<th>pitch</th><th>roll</th><th>landmarks</th><th>seconds</th></tr>{''.join(rows)}</table>
<h2>Pictures</h2>{pictures}
<h2>Identity (dlib descriptor distance, same person below {SAME_PERSON_THRESHOLD})</h2>
<table><tr><th>a</th><th>b</th><th>distance</th><th>verdict</th></tr>{ident}</table>
</body></html>
"""
