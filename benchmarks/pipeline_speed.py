"""ICPortraitPipeline cost: time per image against plain denoising, and peak memory.

    .venv/bin/python benchmarks/pipeline_speed.py [--model DIR] [--steps 20] [--repeats 3]
        [--json OUT]

"Plain" is the same base UNet denoising the same canvas for the same steps with F_ref
skipped (``reference_scale=0``; with warp-initialised sampling the matching flow still makes
its start), measured in the same run, so the ratio is the cost of IC-Portrait's reference
branch. ``default`` is the model as shipped (``--model``, default the embedded model: its
``default_strength``, and F_ref once per image when its appearance net was trained so),
``appearance_per_step`` the appearance net at every step (the paper's), both for 1, 2 and 4
profile photos, at the model's default strength and at strength 1 (from noise). Memory: peak
RSS of a fresh process for one call, and the cost volume's size (full vs chunked) at tiny and
SD 1.5 scale, with a measured SD-scale argmax.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from icportrait.models.matching import DEFAULT_MAX_CHUNK_BYTES, argmax_flow
from icportrait.store import load_pipeline
from report import emit

CONFIGS = {
    "plain": dict(reference_scale=0.0),
    "default": {},
    "appearance_per_step": dict(reference_once=False),
}


def time_configs(pipe, steps: int, repeats: int, refs: int, strength: float | None) -> dict:
    g = torch.Generator().manual_seed(0)
    size = pipe.resolution
    profiles = [torch.rand(3, size, size, generator=g) for _ in range(refs)]
    template = torch.rand(3, size, size, generator=g)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    pipe(profiles, template, num_inference_steps=2, output_type="pt")  # warm-up
    for _ in range(repeats):  # interleaved, so drifts in machine load hit all configs alike
        for name, kw in CONFIGS.items():
            t0 = time.perf_counter()
            pipe(profiles, template, num_inference_steps=steps, output_type="pt",
                 strength=strength, generator=torch.Generator().manual_seed(1), **kw)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "references": refs,
        "seconds_per_image": {k: round(v, 3) for k, v in med.items()},
        "ratio_to_plain": {k: round(v / med["plain"], 3) for k, v in med.items()},
    }


def _peak_rss_child(config: str, steps: int, model: str | None) -> None:
    """Peak resident memory during one call, sampled every millisecond by a thread (the
    process's ru_maxrss is dominated by model construction, so it cannot show the call)."""
    import gc
    import threading

    import psutil

    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    size = pipe.resolution
    pipe(torch.rand(3, size, size), torch.rand(3, size, size), num_inference_steps=steps,
         output_type="pt", **CONFIGS[config])
    done.set()
    thread.join()
    print(json.dumps({"rss_before_call_mib": round(base / 2**20, 1),
                      "peak_during_call_mib": round(peak[0] / 2**20, 1),
                      "call_increase_mib": round((peak[0] - base) / 2**20, 1),
                      "process_max_rss_mib": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def peak_memory(steps: int, model: str | None) -> dict:
    out = {}
    for config in ("plain", "default", "appearance_per_step"):
        cmd = [sys.executable, __file__, "--child", config, "--steps", str(steps)]
        proc = subprocess.run(cmd + (["--model", model] if model else []),
                              capture_output=True, text=True, check=True)
        out[config] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def cost_volume_sizes() -> dict:
    def full(h: int, refs: int = 1) -> int:
        return (h * h) * (refs * h * h) * 4

    tiny = {f"{h}x{h}": full(h) for h in (32, 16, 8)}
    sd15 = {f"{h}x{h}": full(h) for h in (64, 32, 16, 8)}
    mib = 2**20
    return {
        "chunk_bound_mib": DEFAULT_MAX_CHUNK_BYTES / mib,
        "tiny_full_mib_per_level": {k: round(v / mib, 3) for k, v in tiny.items()},
        "sd15_full_mib_per_level": {k: round(v / mib, 3) for k, v in sd15.items()},
        "sd15_full_mib_4_references_64x64": round(full(64, 4) / mib, 1),
    }


def sd15_argmax(max_chunk_bytes: int) -> dict:
    """One argmax at SD 1.5's finest level (64x64 per half, 320 channels) on this CPU."""
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(1, 320, 64, 64, generator=g), torch.randn(1, 320, 64, 64, generator=g)
    t0 = time.perf_counter()
    argmax_flow(src, tgt, max_chunk_bytes=max_chunk_bytes)
    return {"chunk_mib": max_chunk_bytes / 2**20, "seconds": round(time.perf_counter() - t0, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the embedded model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _peak_rss_child(args.child, args.steps, args.model)
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    app = pipe.appearance_net.config
    results = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
                   f"{torch.__version__}",
        "model": str(args.model or "embedded"),
        "steps": args.steps,
        "default_strength": pipe.config.default_strength,
        "reference_once_by_default": app.reference_timestep is not None,
        "timing_default_strength": [time_configs(pipe, args.steps, args.repeats, k, None)
                                    for k in (1, 2, 4)],
        "timing_strength_1": [time_configs(pipe, args.steps, args.repeats, k, 1.0)
                              for k in (1, 2, 4)],
        "peak_memory": peak_memory(args.steps, args.model),
        "cost_volume": cost_volume_sizes(),
        "sd15_argmax": [sd15_argmax(b) for b in (4 * 2**20, DEFAULT_MAX_CHUNK_BYTES)],
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
