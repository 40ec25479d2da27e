"""Training throughput (optimiser steps per second) of every stage on the tiny spec.

    .venv/bin/python benchmarks/training_speed.py --data DATA/synth-train [--steps 10]

Random initial weights (speed does not depend on them); batch size 8 at 128 px; the first
step is excluded as warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from icportrait.specs import build_pipeline
from icportrait.training.config import TrainConfig
from icportrait.training.stages import Stage
from icportrait.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
               "batch_size": args.batch_size, "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init"
        build_pipeline("tiny").save_pretrained(init)
        runs = [("vae", {}), ("base", {}), ("matching", {}),
                ("matching", {"correspondence_loss": 0.5}), ("appearance", {})]
        for stage, extra in runs:
            name = stage + ("+correspondence" if extra else "")
            cfg = TrainConfig(stage=stage, output_dir=f"{tmp}/{name}", data=[args.data],
                              init=str(init), steps=args.steps + 1,
                              batch_size=args.batch_size, checkpoint_every=10**9, **extra)
            Trainer(cfg, Stage(cfg, "cpu")).run(stop_after=1)  # warm-up step, checkpointed
            trainer = Trainer(cfg, Stage(cfg, "cpu"))  # a run is one Trainer (one Accelerator)
            t0 = time.perf_counter()
            r = trainer.run(resume=True)
            dt = time.perf_counter() - t0
            results["stages"][name] = {"steps_per_second": round(args.steps / dt, 3),
                                       "seconds_per_step": round(dt / args.steps, 3)}
            print(name, results["stages"][name], flush=True)
            assert r["finished"]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
