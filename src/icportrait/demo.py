"""`icportrait demo`: the whole product on bundled public-domain inputs, offline.

With the embedded model (or ``$ICPORTRAIT_MODEL``): a portrait of one bundled person in the
other's template photo (pasted back), its matching-flow picture, a pose sweep (templates
rendered from the neutral synthetic head), a relighting sweep (the template relit through
its face mesh), and identity distances of the outputs. Then the face toolkit: detection,
478-point landmarks, head pose, alignment, masks, paste-back and dlib identity distances.
Everything is written as images, ``results.json`` and ``report.html`` with the timings.
"""

from __future__ import annotations

import html
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from icportrait import __version__
from icportrait.defaults import STEPS
from icportrait.faces import (
    SAME_PERSON_THRESHOLD,
    analyze_faces,
    face_embedding,
    identity_distance,
    paste_back,
    prepare_face,
)
from icportrait.faces.draw import annotate, overlay_mask
from icportrait.faces.samples import SAMPLE_NAMES, load_sample
from icportrait.generation.runs import LIGHT_SWEEP, POSE_SWEEP_YAWS
from icportrait.io import atomic_write_text, save_image


def _variants(name: str, image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    return {
        name: image,
        f"{name} (mirrored)": np.ascontiguousarray(image[:, ::-1]),
        f"{name} (half size)": cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
    }


PROFILE, TEMPLATE = "astronaut", "grace_hopper"


def _generation(out: Path, model: Path | None, steps: int, say) -> dict:
    """The generation part of the demo: portrait, flow, pose sweep, relighting sweep."""
    from icportrait.generation import (
        Settings,
        flow_picture,
        generate_portrait,
        grid,
        light_sweep,
        pose_sweep,
        sweep_lights,
        sweep_poses,
        sweep_sheet,
    )
    from icportrait.store import default_model_path, load_pipeline

    say("loading the model")
    t0 = time.perf_counter()
    pipe = load_pipeline(model)
    res: dict = {"model": str(model or default_model_path()), "steps": steps,
                 "resolution": pipe.resolution, "seconds_load": round(time.perf_counter() - t0, 3)}
    profile, template = [load_sample(PROFILE)], load_sample(TEMPLATE)
    settings = Settings(steps=steps, seed=0)
    say("portrait")
    portrait = generate_portrait(pipe, profile, template, settings)
    # Pasted back (what --paste-back does): the face at the photo's own resolution.
    pasted = generate_portrait(pipe, profile, template, replace(settings, paste_back=True))
    save_image(pasted.image, out / "portrait_pasted.png")
    save_image(portrait.image, out / "portrait.png")
    save_image(np.asarray(flow_picture(portrait.flow, confidence=portrait.confidence)),
               out / "flow.png")
    res["portrait"] = {"profile": PROFILE, "template": TEMPLATE,
                       "seconds": round(portrait.seconds, 3)}
    say("pose sweep")
    poses = sweep_poses()
    sweep = pose_sweep(pipe, profile, poses, settings)
    save_image(sweep_sheet(sweep, pipe.resolution), out / "pose_sweep.png")
    res["pose_sweep"] = {"poses": [p.as_dict() for p in poses],
                         "seconds": round(sum(r.seconds for r in sweep), 3)}
    say("relighting sweep")
    lit = light_sweep(pipe, profile, sweep_lights(), settings, photo=template)
    # the relit template photos, as aligned face crops
    save_image(grid([prepare_face(r.template, size=256).image for r in lit]),
               out / "light_templates.png")
    save_image(grid([r.image for r in lit], size=pipe.resolution), out / "light_sweep.png")
    res["light_sweep"] = {"lights": list(LIGHT_SWEEP),
                          "seconds": round(sum(r.seconds for r in lit), 3)}
    # One picture of it all (the README's): profile, template, portrait, two relit portraits;
    # below, the pose sweep.
    tiles = [prepare_face(profile[0], size=256).image, prepare_face(template, size=256).image,
             portrait.image, lit[0].image, lit[2].image, *[r.image for r in sweep]]
    save_image(grid(tiles, cols=5, size=160), out / "summary.png")
    say("identity of the outputs")
    embed = _embedding
    ref, tmpl = embed(profile[0]), embed(template)
    out_emb = embed(portrait.image)
    res["identity"] = {
        "portrait_to_profile": None if out_emb is None else round(
            identity_distance(out_emb, ref), 4),
        "portrait_to_template": None if out_emb is None else round(
            identity_distance(out_emb, tmpl), 4),
        "profile_to_template": round(identity_distance(ref, tmpl), 4),
    }
    return res


def _embedding(image: np.ndarray) -> np.ndarray | None:
    """dlib descriptor of the largest face (on a copy upscaled to >= 256 px), or None."""
    from icportrait.evaluation.scoring import read_face

    found = read_face(image)
    return None if found is None else found.embedding


def run_demo(out_dir: str | Path, progress: Callable[[str], None] | None = None,
             model: Path | None = None, steps: int = STEPS) -> dict:
    """Run the demo into ``out_dir``; returns the results that ``results.json`` holds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    generation = _generation(out, model, steps, say)
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
    results["generation"] = generation
    results["seconds_total"] = round(time.perf_counter() - t_start, 2)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "report.html", _report_html(results))
    return results


def _report_html(results: dict) -> str:
    e = html.escape
    yaws = ", ".join(f"{y:+g}°" for y in POSE_SWEEP_YAWS)
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
    g = results["generation"]
    ident = g["identity"]

    def dist(v):
        return "no face found" if v is None else f"{v:.3f}"

    generation = f"""<h2>Generation</h2>
<p>Model: <code>{e(g['model'])}</code> ({g['resolution']} px, {g['steps']} steps; loaded in
{g['seconds_load']:.1f} s). Profile: {e(PROFILE)}; template: {e(TEMPLATE)}.</p>
<div class=row>
<figure><img src='{e(PROFILE)}_aligned.png'><figcaption>profile (aligned)</figcaption></figure>
<figure><img src='{e(TEMPLATE)}_aligned.png'><figcaption>template (aligned)</figcaption></figure>
<figure><img src='portrait.png' style='height:256px'><figcaption>portrait
({g['portrait']['seconds']:.1f} s)</figcaption></figure>
<figure><img src='portrait_pasted.png'><figcaption>pasted back into the template
</figcaption></figure>
<figure><img src='flow.png'><figcaption>matching flow (profile | target)</figcaption></figure>
</div>
<figure><img src='summary.png'><figcaption>profile, template, portrait, portraits with the
template relit from the left and the right; below, a pose sweep</figcaption></figure>
<p>Identity (dlib distance, same person below {SAME_PERSON_THRESHOLD}): portrait → profile
{dist(ident['portrait_to_profile'])}, portrait → template {dist(ident['portrait_to_template'])},
profile → template {ident['profile_to_template']:.3f}.</p>
<h3>Pose sweep (yaw {yaws}; {g['pose_sweep']['seconds']:.1f} s)</h3>
<p>Rendered templates above, portraits below.</p><img src='pose_sweep.png'>
<h3>Relighting sweep ({', '.join(LIGHT_SWEEP)}; {g['light_sweep']['seconds']:.1f} s)</h3>
<p>The template relit through its face mesh, then the portraits.</p>
<img src='light_templates.png'><br><img src='light_sweep.png' style='height:136px'>
"""
    return f"""<!doctype html><html><head><meta charset=utf-8><title>icportrait demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}
.row{{display:flex;gap:8px;flex-wrap:wrap}}img{{max-height:256px}}figure{{margin:0}}</style>
</head><body><h1>icportrait demo</h1>
<p>icportrait {e(results['icportrait'])}, Python {e(results['python'])}; finished in
{results['seconds_total']:.1f} s. Command: <code>{e(results['command'])}</code></p>
{generation}
<h2>Face toolkit</h2><h3>Faces</h3>
<table><tr><th>image</th><th>score</th><th>size px</th><th>yaw</th>
<th>pitch</th><th>roll</th><th>landmarks</th><th>seconds</th></tr>{''.join(rows)}</table>
<h3>Pictures</h3>{pictures}
<h3>Identity (dlib descriptor distance, same person below {SAME_PERSON_THRESHOLD})</h3>
<table><tr><th>a</th><th>b</th><th>distance</th><th>verdict</th></tr>{ident}</table>
</body></html>
"""
