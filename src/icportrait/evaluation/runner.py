"""Run methods over a suite, score every output, aggregate: ``results.json``.

Layout of an output folder::

    inputs/<sample>-profile-<k>.png, -template.png, -truth.png
    samples/<method>/<sample>.png      output image (and -flow.png for IC-Portrait)
    samples/<method>/<sample>.json     its scores; present = done (a rerun skips it)
    results.json                       every score per sample, aggregates, command, versions
    report.html                        see :mod:`icportrait.evaluation.report`
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from icportrait import __version__
from icportrait.defaults import EVAL_STEPS
from icportrait.errors import FaceError, ICPortraitError, ImageError
from icportrait.evaluation import scoring
from icportrait.evaluation.methods import (
    ABLATIONS,
    NEEDS_TRUTH,
    ModelRunner,
    check_methods,
    run_baseline,
)
from icportrait.evaluation.suites import Sample, load_suite
from icportrait.io import atomic_write_text, load_image, save_image

# Aggregated as the mean over samples where defined; "face_detected" becomes the rate.
SUMMARY_KEYS = ("face_detected", "id_to_profile", "id_to_truth", "id_to_template", "rank1",
                "yaw_error", "pitch_error", "roll_error", "psnr", "face_psnr", "ssim",
                "ms_ssim", "light_direction_error", "shading_error", "brisque", "flow_pck",
                "flow_pck10", "flow_epe", "flow_pck_no_motion", "flow_pck10_no_motion",
                *(f"landmark_pck{n}{b}" for b in ("", "_no_motion", "_mesh") for n in (5, 10)),
                "flow_confidence_visible", "flow_confidence_occluded",
                "id_to_profile_sface", "id_to_truth_sface", "id_to_template_sface",
                "rank1_sface", "seconds", "peak_rss_mb")
JUDGES = ("dlib", "sface")   # identity judges: dlib always, SFace on request


def _reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: "5" resets the process's peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory_mb() -> float | None:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_eval(suite: str, out: Path, methods: list[str], model: Path | None = None,
             steps: int = EVAL_STEPS, seed: int = 0, limit: int | None = None,
             progress: Callable[[str, int, int], None] | None = None,
             judges: tuple[str, ...] = ("dlib",)) -> dict:
    """Evaluate ``methods`` on ``suite``; finished (method, sample) pairs are reused.
    ``judges``: identity judges, ``dlib`` always, and ``sface`` for a second opinion
    (evaluation.sface; its scores carry the ``_sface`` suffix)."""
    check_methods(methods, model)
    unknown = sorted(set(judges) - set(JUDGES))
    if unknown:
        raise ICPortraitError(f"unknown identity judge {', '.join(unknown)}; choose from "
                              f"{', '.join(JUDGES)}")
    second = None
    if "sface" in judges:
        from icportrait.evaluation import sface
        from icportrait.evaluation.suites import cache_dir

        second = sface.judge(cache_dir())
    samples = load_suite(suite, limit=limit)
    if not samples:
        raise ICPortraitError(f"suite {suite} has no samples")
    if not samples[0].synthetic:  # these need ground truth
        methods = [m for m in methods if m not in NEEDS_TRUTH]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = None
    if model is not None and any(m in ABLATIONS for m in methods):
        from icportrait.store import load_pipeline

        runner = ModelRunner(load_pipeline(model), steps, seed)
    readings: dict[str, dict] = {}
    total, done = len(methods) * len(samples), 0
    scores: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for sample in samples:
        _save_inputs(sample, out / "inputs")
        for method in methods:
            path = out / "samples" / method / f"{sample.id}.json"
            if path.is_file():
                scores[method][sample.id] = json.loads(path.read_text())
                if scores[method][sample.id].get("failed"):
                    scores[method][sample.id].setdefault("embedding_sface", None)
                elif second is not None and "embedding_sface" not in scores[method][sample.id]:
                    if sample.id not in readings:
                        readings[sample.id] = _input_readings(sample, second)
                    _add_second_judge(scores[method][sample.id], second, readings[sample.id],
                                      load_image(path.with_suffix(".png")))
                    atomic_write_text(path, json.dumps(scores[method][sample.id]) + "\n")
            else:
                if sample.id not in readings:
                    readings[sample.id] = _input_readings(sample, second)
                scores[method][sample.id] = _run_one(method, sample, runner, seed,
                                                      readings[sample.id], path, second)
            done += 1
            if progress:
                progress(f"{method} {sample.id}", done, total)
    _add_rank1(scores, samples, _dlib_embedding, "embedding", "rank1",
               lambda bank, e: np.linalg.norm(bank - e, axis=1))
    if second is not None:
        _add_rank1(scores, samples, second.embed, "embedding_sface", "rank1_sface",
                   lambda bank, e: 1 - bank @ e / np.linalg.norm(bank, axis=1))
    results = {
        "suite": suite, "model": None if model is None else str(model), "methods": methods,
        "steps": steps, "seed": seed, "samples": len(samples), "judges": list(judges),
        "command": " ".join(["icportrait", *sys.argv[1:]]),
        "versions": {"icportrait": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "summary": {m: summarize(s) for m, s in scores.items()},
        "meta": {s.id: s.meta for s in samples},
        "per_sample": {m: {k: {key: v for key, v in d.items() if not key.startswith("embedding")}
                           for k, d in s.items()} for m, s in scores.items()},
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _input_readings(sample: Sample, second=None) -> dict:
    profile = [scoring.read_face(p) for p in sample.profile]
    out = {"profile": scoring.mean_embedding(profile),
           "template": scoring.read_face(sample.template),
           "truth": None if sample.truth is None else scoring.read_face(sample.truth)}
    if second is not None:
        out["sface"] = {
            "profile": _mean_descriptor([second.embed(p) for p in sample.profile]),
            "template": second.embed(sample.template),
            "truth": None if sample.truth is None else second.embed(sample.truth)}
    return out


def _mean_descriptor(found: list[np.ndarray | None]) -> np.ndarray | None:
    found = [e for e in found if e is not None]
    return np.mean(found, axis=0) if found else None


def _add_second_judge(d: dict, second, readings: dict, image: np.ndarray) -> None:
    """The SFace judge's distances of an output, added to its scores ``d``."""
    from icportrait.evaluation import sface

    emb = second.embed(image)
    r = readings["sface"]
    d.update(id_to_profile_sface=sface.distance(emb, r["profile"]),
             id_to_template_sface=sface.distance(emb, r["template"]),
             id_to_truth_sface=sface.distance(emb, r["truth"]),
             embedding_sface=None if emb is None else [round(float(x), 5) for x in emb])


def _run_one(method: str, sample: Sample, runner: ModelRunner | None, seed: int,
             readings: dict, path: Path, second=None) -> dict:
    _reset_peak_memory()
    t0 = time.perf_counter()
    try:
        result = runner(method, sample) if method in ABLATIONS else \
            run_baseline(method, sample, seed)
    except (FaceError, ImageError) as exc:
        # The method refuses this input, as it would a user's (e.g. a render in which the
        # face mesh finds no face): recorded as a sample with no output, so the run goes on
        # and the summary counts it (no face found, not identified). Other errors (settings,
        # model files) still stop the run.
        d = {"failed": str(exc), "face_detected": 0.0, "embedding": None,
             **({"embedding_sface": None} if second is not None else {})}
        atomic_write_text(path, json.dumps(d) + "\n")
        return d
    seconds = time.perf_counter() - t0
    peak = _peak_memory_mb()
    face = scoring.read_face(result.image)
    d = {"seconds": round(seconds, 3), "peak_rss_mb": peak,
         **scoring.face_scores(face, readings["profile"], readings["template"],
                               readings["truth"]),
         **scoring.image_scores(result.image, sample),
         **scoring.flow_scores(result.flow, result.flow_ref, sample, result.confidence),
         **(scoring.landmark_flow_scores(result.flow, sample, runner.resolution)
            if runner is not None and result.flow is not None else {})}
    d["embedding"] = None if face is None else [round(float(x), 5) for x in face.embedding]
    save_image(result.image, path.with_suffix(".png"))
    if second is not None:
        _add_second_judge(d, second, readings, result.image)
    if result.flow is not None:
        from icportrait.generation.pictures import flow_picture

        save_image(np.asarray(flow_picture(result.flow, confidence=result.confidence)),
                   path.with_name(f"{sample.id}-flow.png"))
    atomic_write_text(path, json.dumps(d) + "\n")  # written last: marks the pair done
    return d


def _save_inputs(sample: Sample, folder: Path) -> None:
    images = {f"profile-{k}": p for k, p in enumerate(sample.profile)}
    images["template"] = sample.template
    if sample.truth is not None:
        images["truth"] = sample.truth
    for name, image in images.items():
        path = folder / f"{sample.id}-{name}.png"
        if not path.is_file():
            save_image(image, path)


def _dlib_embedding(image: np.ndarray) -> np.ndarray | None:
    face = scoring.read_face(image)
    return None if face is None else face.embedding


def _add_rank1(scores: dict, samples: list[Sample], embed, key: str, out: str,
               distances) -> None:
    """Rank-1 identification by one judge: is the output's nearest identity, among the mean
    profile descriptors (``embed`` of each profile photo) of every identity in the suite, its
    own profile identity? (An output with no detectable face counts as a miss.)"""
    gallery: dict[str, np.ndarray] = {}
    for s in samples:
        if s.identity not in gallery:
            mean = _mean_descriptor([embed(p) for p in s.profile])
            if mean is not None:
                gallery[s.identity] = mean
    if len(gallery) < 2:
        return
    names = list(gallery)
    bank = np.stack([gallery[n] for n in names])
    by_id = {s.id: s for s in samples}
    for per_sample in scores.values():
        for sid, d in per_sample.items():
            if d.get(key) is None:  # no face in the output: not identified
                d[out] = 0.0
                continue
            dist = distances(bank, np.asarray(d[key]))
            d[out] = float(names[int(np.argmin(dist))] == by_id[sid].identity)


def summarize(per_sample: dict[str, dict]) -> dict:
    out: dict = {"n": len(per_sample),
                 "failed": sum(1 for d in per_sample.values() if d.get("failed"))}
    for key in SUMMARY_KEYS:
        vals = [float(d[key]) for d in per_sample.values()
                if d.get(key) is not None and np.isfinite(float(d[key]))]
        out[key] = round(float(np.mean(vals)), 4) if vals else None
        if key != "face_detected" and vals and len(vals) < len(per_sample):
            out[f"{key}_n"] = len(vals)
    return out
