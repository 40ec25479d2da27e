"""The shared training loop of every stage, on accelerate: resumable and reproducible.

Reproducibility does not rest on saved RNG streams: the batch of optimiser step ``s`` (micro
batch ``m``, process ``r``) is drawn from generators seeded with ``(seed, s, m, r)``, so a run
resumed from a checkpoint sees exactly the data and noise an uninterrupted run would.

Output folder::

    config.json               the TrainConfig
    log.csv                   step, loss, extra losses, lr, seconds
    checkpoints/step-000100/  model.safetensors (trainable weights), ema.safetensors,
                              optimizer.pt and scheduler.pt (tensors and numbers only: read
                              back with torch.load(weights_only=True)), state.json; written
                              to a temporary folder, then renamed
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
from safetensors.torch import load_file, save_file

from icportrait.errors import ICPortraitError
from icportrait.io import atomic_write_text
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


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    # step_scheduler_with_optimizer=False: accelerate would otherwise step the LR schedule
    # once per process per optimiser step, shortening warm-up on multi-process runs.
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ICPortraitError("--device cuda: no CUDA device is available")
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision,
                       gradient_accumulation_steps=cfg.grad_accum,
                       step_scheduler_with_optimizer=False)


class Trainer:
    """Runs a :class:`~icportrait.training.stages.Stage` for ``cfg.steps`` optimiser steps."""

    def __init__(self, cfg: TrainConfig, stage, accelerator: Accelerator | None = None):
        cfg.validate()
        self.cfg, self.stage = cfg, stage
        self.out = Path(cfg.output_dir)
        self.acc = accelerator or make_accelerator(cfg)

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

        start = 0
        if resume and existing:
            start = self._load(existing[-1], module, opt, sched, ema)
        self._trim_log(start)

        n_items = len(self.stage.dataset)
        last = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
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
                    if acc.sync_gradients:
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
                self._checkpoint(done, module, opt, sched, ema)
            if cfg.validate_every and done % cfg.validate_every == 0 and acc.is_main_process:
                self._validate(done, module, ema)
            if progress:
                progress(done, cfg.steps, logs)
        acc.wait_for_everyone()
        finished = last >= cfg.steps
        if finished and acc.is_main_process:
            self.export(module, ema)
        acc.wait_for_everyone()  # other ranks may read the exported pipeline next
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

    def _checkpoint(self, step: int, module, opt, sched, ema) -> None:
        acc = self.acc
        acc.wait_for_everyone()
        if acc.is_main_process:
            root = self.out / "checkpoints"
            final = root / f"{CHECKPOINT_PREFIX}{step:06d}"
            tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:06d}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            state = {k: v.detach().cpu().contiguous()
                     for k, v in acc.unwrap_model(module).state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            torch.save(sched.state_dict(), tmp / "scheduler.pt")
            meta = {"step": step, "world_size": acc.num_processes,
                    "config": json.loads(self.cfg.to_json())}
            if ema is not None:
                save_file({str(i): p.detach().cpu().contiguous()
                           for i, p in enumerate(ema.shadow_params)}, str(tmp / "ema.safetensors"))
                meta["ema_optimization_step"] = int(ema.optimization_step)
            (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in list_checkpoints(self.out)[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _load(self, ckpt: Path, module, opt, sched, ema) -> int:
        """Restore a checkpoint (no pickles: safetensors, and weights-only torch files)."""
        state = json.loads((ckpt / "state.json").read_text())
        if state["config"]["stage"] != self.cfg.stage:
            raise ICPortraitError(f"{ckpt} is a {state['config']['stage']} checkpoint, not "
                                  f"{self.cfg.stage}")
        device = self.acc.device
        try:
            self.acc.unwrap_model(module).load_state_dict(
                load_file(str(ckpt / "model.safetensors"), device=str(device)))
        except RuntimeError as exc:
            raise ICPortraitError(f"{ckpt} does not fit this model: {str(exc)[:200]}") from exc
        opt_state = torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True)
        opt.load_state_dict(opt_state)
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        if ema is not None and (ckpt / "ema.safetensors").is_file():
            shadow = load_file(str(ckpt / "ema.safetensors"), device=str(device))
            ema.shadow_params = [shadow[str(i)] for i in range(len(shadow))]
            ema.optimization_step = state.get("ema_optimization_step", 0)
        return int(state["step"])

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
