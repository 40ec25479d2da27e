"""ICPortraitPipeline cost: time per image against plain denoising, and peak memory.

    .venv/bin/python benchmarks/pipeline_speed.py [--steps 20] [--repeats 3] [--json OUT]

"Plain" is the same base UNet denoising the same canvas for the same steps with the control
nets skipped (``reference_scale=0``), measured in the same run, so the ratio is the cost of
IC-Portrait's matching and appearance branches. The tiny spec runs with random weights (speed
does not depend on training). Memory: peak RSS of a fresh process for one call, and the cost
volume's size (full vs chunked) at tiny and SD 1.5 scale, with a measured SD-scale argmax.
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
from icportrait.specs import build_pipeline
from report import emit

CONFIGS = {
    "plain": dict(reference_scale=0.0),
    "ic_cached": dict(flow_mode="cached"),
    "ic_cached_app2": dict(flow_mode="cached", appearance_every=2),
    "ic_per_step": dict(flow_mode="per_step"),
}


def time_configs(steps: int, repeats: int, refs: int) -> dict:
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    profiles = [torch.rand(3, 128, 128, generator=g) for _ in range(refs)]
    template = torch.rand(3, 128, 128, generator=g)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    pipe(profiles, template, num_inference_steps=2, output_type="pt")  # warm-up
    for _ in range(repeats):  # interleaved, so drifts in machine load hit all configs alike
        for name, kw in CONFIGS.items():
            t0 = time.perf_counter()
            pipe(profiles, template, num_inference_steps=steps, output_type="pt",
                 generator=torch.Generator().manual_seed(1), **kw)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "references": refs,
        "seconds_per_image": {k: round(v, 3) for k, v in med.items()},
        "ratio_to_plain": {k: round(v / med["plain"], 3) for k, v in med.items()},
    }


def _peak_rss_child(config: str, steps: int) -> None:
    """Peak resident memory during one call, sampled every millisecond by a thread (the
    process's ru_maxrss is dominated by model construction, so it cannot show the call)."""
    import gc
    import threading

    import psutil

    pipe = build_pipeline("tiny", seed=0)
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
    pipe(torch.rand(3, 128, 128), torch.rand(3, 128, 128), num_inference_steps=steps,
         output_type="pt", **CONFIGS[config])
    done.set()
    thread.join()
    print(json.dumps({"rss_before_call_mib": round(base / 2**20, 1),
                      "peak_during_call_mib": round(peak[0] / 2**20, 1),
                      "call_increase_mib": round((peak[0] - base) / 2**20, 1),
                      "process_max_rss_mib": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def peak_memory(steps: int) -> dict:
    out = {}
    for config in ("plain", "ic_cached"):
        proc = subprocess.run([sys.executable, __file__, "--child", config, "--steps", str(steps)],
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
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _peak_rss_child(args.child, args.steps)
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
                   f"{torch.__version__}",
        "steps": args.steps,
        "timing_1_reference": time_configs(args.steps, args.repeats, 1),
        "timing_2_references": time_configs(args.steps, args.repeats, 2),
        "peak_memory": peak_memory(args.steps),
        "cost_volume": cost_volume_sizes(),
        "sd15_argmax": [sd15_argmax(b) for b in (4 * 2**20, DEFAULT_MAX_CHUNK_BYTES)],
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
