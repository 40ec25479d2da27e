"""The shared training loop of every stage, on accelerate: resumable and reproducible.

Reproducibility does not rest on saved RNG streams: the batch of optimiser step ``s`` (micro
batch ``m``, process ``r``) is drawn from generators seeded with ``(seed, s, m, r)``, so a run
resumed from a checkpoint sees exactly the data and noise an uninterrupted run would.

Output folder::

    config.json               the TrainConfig
    log.csv                   step, loss, extra losses, lr, seconds
    checkpoints/step-000100/  accelerate state (trainable weights, optimiser, scheduler, EMA)
                              + state.json; written to a temporary folder, then renamed
    validation/step-000100.png / .json
    pipeline/                 the trained pipeline (save_pretrained), written at the end
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from icportrait.errors import ICPortraitError
from icportrait.faces.io import atomic_write_text
from icportrait.training.config import TrainConfig

CHECKPOINT_PREFIX = "step-"


def batch_indices(cfg: TrainConfig, n_items: int, step: int, micro: int, rank: int) -> np.ndarray:
    rng = np.random.default_rng([cfg.seed, step, micro, rank])
    return rng.integers(0, n_items, size=cfg.batch_size)


def batch_generator(cfg: TrainConfig, step: int, micro: int, rank: int, device) -> torch.Generator:
    seed = int(np.random.default_rng([cfg.seed, step, micro, rank, 1]).integers(2**62))
    return torch.Generator(device=device).manual_seed(seed)


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir()
            if p.name.startswith(CHECKPOINT_PREFIX) and (p / "state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


class Trainer:
    """Runs a :class:`~icportrait.training.stages.Stage` for ``cfg.steps`` optimiser steps."""

    def __init__(self, cfg: TrainConfig, stage, accelerator: Accelerator | None = None):
        cfg.validate()
        self.cfg, self.stage = cfg, stage
        self.out = Path(cfg.output_dir)
        self.acc = accelerator or Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
        )

    def run(self, resume: bool = False, progress: Callable[[int, int, dict], None] | None = None,
            stop_after: int | None = None) -> dict:
        """Train; ``stop_after`` ends the run early after that many steps (for tests and
        time-boxed sessions), leaving a checkpoint to resume from."""
        cfg, acc = self.cfg, self.acc
        existing = list_checkpoints(self.out)
        if existing and not resume:
            raise ICPortraitError(
                f"{self.out} already has checkpoints; pass --resume to continue, or choose a "
                "new --output-dir"
            )
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.json", cfg.to_json() + "\n")
        module = self.stage.module
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ICPortraitError(f"stage {cfg.stage} has nothing to train")
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(1, cfg.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        module, opt, sched = acc.prepare(module, opt, sched)
        ema = None
        if cfg.ema_decay:
            from diffusers.training_utils import EMAModel

            ema = EMAModel(acc.unwrap_model(module).parameters(), decay=cfg.ema_decay)
            ema.to(acc.device)
            acc.register_for_checkpointing(ema)

        start = 0
        if resume and existing:
            ckpt = existing[-1]
            state = json.loads((ckpt / "state.json").read_text())
            if state["config"]["stage"] != cfg.stage:
                raise ICPortraitError(f"{ckpt} is a {state['config']['stage']} checkpoint, "
                                      f"not {cfg.stage}")
            acc.load_state(str(ckpt))
            start = int(state["step"])
        self._trim_log(start)

        n_items = len(self.stage.dataset)
        last = min(cfg.steps, start + stop_after) if stop_after else cfg.steps
        logs: dict = {}
        t0 = time.perf_counter()
        for step in range(start, last):
            module.train()
            sums: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                with acc.accumulate(module):
                    idx = batch_indices(cfg, n_items, step, micro, acc.process_index)
                    gen = batch_generator(cfg, step, micro, acc.process_index, acc.device)
                    batch = self.stage.collate([self.stage.dataset[int(i)] for i in idx])
                    with acc.autocast():
                        loss, extra = module(batch, gen)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in {"loss": loss.detach().float().item(), **extra}.items():
                    sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
            if ema is not None:
                ema.step(acc.unwrap_model(module).parameters())
            done = step + 1
            logs = {**sums, "lr": sched.get_last_lr()[0]}
            if done % cfg.log_every == 0 or done == last:
                self._log(done, logs, time.perf_counter() - t0)
            if done % cfg.checkpoint_every == 0 or done == last:
                self._checkpoint(done)
            if cfg.validate_every and done % cfg.validate_every == 0 and acc.is_main_process:
                self._validate(done, module, ema)
            if progress:
                progress(done, cfg.steps, logs)
        acc.wait_for_everyone()
        finished = last >= cfg.steps
        if finished and acc.is_main_process:
            self.export(module, ema)
        return {"start_step": start, "end_step": last, "finished": finished,
                "world_size": acc.num_processes, "seconds": round(time.perf_counter() - t0, 2),
                "steps_per_second": round((last - start) / max(time.perf_counter() - t0, 1e-9),
                                          3), **logs}

    # ---------------------------------------------------------------- bookkeeping
    def _log(self, step: int, logs: dict, seconds: float) -> None:
        if not self.acc.is_main_process:
            return
        path = self.out / "log.csv"
        row = {"step": step, **{k: round(float(v), 6) for k, v in logs.items()},
               "seconds": round(seconds, 2)}
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _trim_log(self, step: int) -> None:
        """On resume, drop log rows after the checkpoint (they will be redone)."""
        path = self.out / "log.csv"
        if not self.acc.is_main_process or not path.exists():
            return
        with path.open() as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["step"]) <= step]
        if len(keep) != len(rows):
            with path.open("w", newline="") as f:
                if keep:
                    writer = csv.DictWriter(f, fieldnames=list(keep[0]))
                    writer.writeheader()
                    writer.writerows(keep)

    def _checkpoint(self, step: int) -> None:
        acc = self.acc
        root = self.out / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{step:06d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:06d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": step, "world_size": acc.num_processes,
                     "config": json.loads(self.cfg.to_json())}
            (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in list_checkpoints(self.out)[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _validate(self, step: int, module, ema) -> None:
        model = self.acc.unwrap_model(module)
        if ema is not None:
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
        try:
            model.eval()
            with torch.no_grad():
                metrics = self.stage.validate(model, self.out / "validation", step)
        finally:
            if ema is not None:
                ema.restore(model.parameters())
        atomic_write_text(self.out / "validation" / f"step-{step:06d}.json",
                          json.dumps(metrics, indent=2) + "\n")

    def export(self, module, ema) -> Path:
        model = self.acc.unwrap_model(module)
        if ema is not None:
            ema.copy_to(model.parameters())
        return self.stage.export(model, self.out / "pipeline")
