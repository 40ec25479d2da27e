"""The fast-learner curve: matching-flow accuracy after N matching-net training steps.

    .venv/bin/python benchmarks/fast_learner.py --base RUN/unet/pipeline \\
        --data DATA/synth-train --val-data DATA/synth-val --out runs/fast-learner

PCK at 5% and 10% of the face width (ground-truth flow, visible pixels only) on held-out
identities, after 0 (the pretrained base's own encoder features, zero-shot), 25, 50, 100,
200, 400 and 1000 training steps, for the descriptor net (the default design: a hypercolumn
head, dual-softmax loss, locality prior) and for the paper's variant (raw features, denoising
loss only, and with the optional correspondence loss); the "no motion" flow is the baseline
line. The nets start from the ``--base`` pipeline's UNet encoder (its own control nets, if
any, are replaced). With ``--cross-identity P`` the descriptor run trains as v2 does (a share
P of pairs across two identities) and is also scored on pairs of two held-out identities.
Writes ``results.json``, ``curve.csv`` and ``curve.png``. Resumable: finished runs are
reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from icportrait.data.pairs import PairDataset
from icportrait.pipelines import ICPortraitPipeline
from icportrait.training.config import TrainConfig
from icportrait.training.stages import Stage
from icportrait.training.trainer import Trainer, list_checkpoints
from icportrait.training.validation import matching_pck

STEPS = (0, 25, 50, 100, 200, 400, 1000)


def evaluate(pipe: ICPortraitPipeline, net, items: list[dict]) -> dict:
    """PCK with the cached-flow input (the pipeline's default) and with the first-step
    input (what ``flow_mode="per_step"`` sees first), which differ in what the noisy
    channels hold; the headline ``pck`` is the cached one."""
    cached = matching_pck(pipe, net, items)
    first = matching_pck(pipe, net, items, source="first_step")
    return {**cached, "pck_first_step": first["pck"]}


def fresh_base(base: str, out: Path) -> str:
    """``base`` with both control nets made anew from its UNet's encoder, saved under ``out``:
    the curve starts from the pretrained base, whatever control nets ``base`` carries."""
    folder = out / "base"
    if not (folder / "model_index.json").is_file():
        from icportrait.specs import assemble_pipeline

        p = ICPortraitPipeline.from_pretrained(base)
        assemble_pipeline(p.vae, p.unet, p.scheduler, p.null_embedding, p.text_encoder,
                          p.tokenizer, default_strength=p.config.default_strength
                          ).save_pretrained(folder)
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val-data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=max(STEPS))
    ap.add_argument("--corr-weight", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--runs", default="descriptor,denoising,denoising+correspondence",
                    help="comma-separated subset of the runs")
    ap.add_argument("--cross-identity", type=float, default=0.0,
                    help="descriptor runs: share of pairs matched across two identities "
                         "(v2's design; --data rendered with --shared-views); the curve then "
                         "also scores pairs of two held-out identities (cross_pck)")
    args = ap.parse_args()
    out = Path(args.out)
    val = PairDataset(args.val_data, yaw_gap=(10.0, 90.0), seed=123)
    items = [val[i] for i in range(min(args.pairs, len(val)))]
    cross_items = None
    if args.cross_identity:
        from cross_identity_flow import pairs as cross_pairs
        from icportrait.synth.dataset import SynthDataset

        cross_items = cross_pairs(SynthDataset(args.val_data), args.pairs, 45.0, 0)
    steps = [s for s in STEPS if s <= args.max_steps]
    results: dict = {"steps": steps, "pairs": len(items), "runs": {}}
    runs = {"descriptor": {"cross_identity": args.cross_identity},
            "denoising": {"descriptor_dim": 0},
            "denoising+correspondence": {"descriptor_dim": 0,
                                         "correspondence_loss": args.corr_weight}}
    for name in args.runs.split(","):
        run_dir = out / name
        cfg = TrainConfig(stage="matching", output_dir=str(run_dir), data=[args.data],
                          init=fresh_base(args.base, out), steps=steps[-1],
                          batch_size=args.batch_size, lr=args.lr,
                          checkpoint_every=min(s for s in steps if s > 0),
                          keep_checkpoints=len(steps), **runs[name])
        curve = []
        for target in steps:
            stage = Stage(cfg, "cpu")
            if target > 0:
                done = [int(p.name.split("-")[1]) for p in list_checkpoints(run_dir)]
                if target not in done:
                    Trainer(cfg, stage).run(resume=bool(done),
                                            stop_after=target - (max(done) if done else 0))
                # Load the checkpoint's weights into the stage's net for evaluation.
                from safetensors.torch import load_file

                ckpt = run_dir / "checkpoints" / f"step-{target:06d}" / "model.safetensors"
                stage.module.load_state_dict(load_file(str(ckpt)))
            with torch.no_grad():
                metrics = evaluate(stage.module.pipe, stage.module.net, items)
                if cross_items is not None and name == "descriptor":
                    cross = matching_pck(stage.module.pipe, stage.module.net, cross_items)
                    metrics.update(cross_pck=cross["pck"], cross_pck10=cross["pck10"],
                                   cross_no_motion_pck=cross["no_motion_pck"])
            curve.append({"step": target, **metrics})
            print(name, target, metrics, flush=True)
        results["runs"][name] = curve
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    keys = ("pck", "pck10", "pck_first_step", "median_error_px", "no_motion_pck",
            "no_motion_pck10", "cross_pck", "cross_pck10", "cross_no_motion_pck")
    lines = [",".join(("run", "step", *keys))] + [
        ",".join([n, str(c["step"]), *(str(c.get(k, "")) for k in keys)])
        for n, curve in results["runs"].items() for c in curve]
    (out / "curve.csv").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for n, curve in results["runs"].items():
        ax.plot([max(c["step"], 1) for c in curve], [c["pck"] for c in curve], "o-", label=n)
    first = next(iter(results["runs"].values()))[0]
    ax.axhline(first["no_motion_pck"], color="grey", ls="--", label="no motion")
    ax.set_xscale("log")
    ax.set_xlabel("matching-net training steps (0 plotted at 1)")
    ax.set_ylabel("PCK @ 5% face width")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)


if __name__ == "__main__":
    main()
