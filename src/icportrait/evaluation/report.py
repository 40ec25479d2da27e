"""``report.html`` from ``results.json``: a methods x metrics table, image grids, flow
pictures and plots. Images are files next to the page (relative links): it opens offline."""

from __future__ import annotations

import html
import json
from pathlib import Path

from icportrait.defaults import MASK_RATIO
from icportrait.io import atomic_write_text

# (key, column title, better: "low" | "high" | None)
COLUMNS = (
    ("id_to_profile", "ID dist → profile", "low"),
    ("id_to_truth", "ID dist → truth", "low"),
    ("id_to_template", "ID dist → template", "high"),
    ("rank1", "rank-1", "high"),
    ("id_to_profile_sface", "SFace dist → profile", "low"),
    ("id_to_truth_sface", "SFace dist → truth", "low"),
    ("id_to_template_sface", "SFace dist → template", "high"),
    ("rank1_sface", "SFace rank-1", "high"),
    ("face_detected", "face found", "high"),
    ("failed", "refused", "low"),
    ("yaw_error", "yaw err °", "low"),
    ("pitch_error", "pitch err °", "low"),
    ("roll_error", "roll err °", "low"),
    ("psnr", "PSNR", "high"),
    ("face_psnr", "face PSNR", "high"),
    ("ssim", "SSIM", "high"),
    ("ms_ssim", "MS-SSIM", "high"),
    ("light_direction_error", "light dir err °", "low"),
    ("shading_error", "shading err", "low"),
    ("brisque", "BRISQUE", "low"),
    ("flow_pck", "flow PCK", "high"),
    ("flow_pck10", "flow PCK@10%", "high"),
    ("flow_epe", "flow EPE px", "low"),
    ("flow_pck_no_motion", "no-motion PCK", "high"),
    ("landmark_pck5", "landmark PCK@5%", "high"),
    ("landmark_pck10", "landmark PCK@10%", "high"),
    ("landmark_pck5_no_motion", "no-motion lm PCK@5%", "high"),
    ("landmark_pck5_mesh", "mesh lm PCK@5%", "high"),
    ("seconds", "s / image", "low"),
    ("peak_rss_mb", "peak MB", "low"),
)
MASK_ABLATION = (("icportrait:mask-0.5", 0.5), ("icportrait", MASK_RATIO),
                 ("icportrait:mask-0.95", 0.95))


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _columns(summary: dict, keys: tuple[str, ...] | None = None) -> list[tuple]:
    """The columns that some method has a value in ("refused": only when one refused)."""
    return [c for c in COLUMNS if (keys is None or c[0] in keys)
            and any(s.get(c[0]) if c[0] == "failed" else s.get(c[0]) is not None
                    for s in summary.values())]


def summary_table(results: dict) -> str:
    summary = results["summary"]
    cols = _columns(summary)
    head = "".join(f"<th>{html.escape(t)}{' ↓' if b == 'low' else ' ↑' if b else ''}</th>"
                   for _, t, b in cols)
    rows = []
    for method, s in summary.items():
        cells = []
        for key, _, better in cols:
            vals = [x.get(key) for x in summary.values() if x.get(key) is not None]
            best = (min(vals) if better == "low" else max(vals)) if vals and better else None
            v = s.get(key)
            mark = ' class="best"' if v is not None and v == best and len(vals) > 1 else ""
            cells.append(f"<td{mark}>{_fmt(v)}</td>")
        rows.append(f"<tr><th>{html.escape(method)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>method (n)</th>{head}</tr>{''.join(rows)}</table>"


def markdown_table(results: dict, keys: tuple[str, ...] | None = None) -> str:
    """The summary as a Markdown table (for notes and the README)."""
    summary = results["summary"]
    cols = _columns(summary, keys)
    lines = ["| method | " + " | ".join(t for _, t, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for method, s in summary.items():
        lines.append(f"| {method} | " + " | ".join(_fmt(s.get(k)) for k, _, _ in cols) + " |")
    return "\n".join(lines)


def _plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    per = results["per_sample"]
    meta = results["meta"]
    if any("yaw_gap" in m for m in meta.values()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, key in zip(axes, ("psnr", "id_to_truth"), strict=True):
            for method, samples in per.items():
                pts = sorted((meta[sid]["yaw_gap"], d[key]) for sid, d in samples.items()
                             if d.get(key) is not None)
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", ms=3, label=method, alpha=0.8)
            ax.set_xlabel("yaw gap profile → template (°)")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "plots" / "vs-yaw-gap.png", dpi=110)
        plt.close(fig)
        made.append("plots/vs-yaw-gap.png")
    summary = results["summary"]
    ratios = [(r, summary[m]) for m, r in MASK_ABLATION if m in summary]
    if len(ratios) >= 2:
        keys = [k for k in ("psnr", "id_to_profile", "id_to_truth")
                if all(s.get(k) is not None for _, s in ratios)]
        fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.4),
                                 squeeze=False)
        for ax, key in zip(axes[0], keys, strict=False):
            ax.plot([r for r, _ in ratios], [s[key] for _, s in ratios], "o-")
            ax.set_xlabel("mask ratio")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "plots" / "vs-mask-ratio.png", dpi=110)
        plt.close(fig)
        made.append("plots/vs-mask-ratio.png")
    return made


def _grid(results: dict, out: Path, max_rows: int = 24) -> str:
    methods = results["methods"]
    ids = list(results["meta"])[:max_rows]
    head = "<th>profile</th><th>template</th>" + (
        "<th>truth</th>" if (out / "inputs" / f"{ids[0]}-truth.png").is_file() else "") + \
        "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for sid in ids:
        profiles = sorted((out / "inputs").glob(f"{sid}-profile-*.png"))
        cells = ["<td>" + "".join(f'<img src="{p.relative_to(out).as_posix()}">'
                                  for p in profiles) + "</td>"]
        for name in ("template", "truth"):
            p = out / "inputs" / f"{sid}-{name}.png"
            if p.is_file():
                cells.append(f'<td><img src="inputs/{p.name}"></td>')
        for m in methods:
            img = out / "samples" / m / f"{sid}.png"
            flow = out / "samples" / m / f"{sid}-flow.png"
            failed = results["per_sample"].get(m, {}).get(sid, {}).get("failed")
            cell = f'<img src="samples/{m}/{img.name}">' if img.is_file() else \
                html.escape(f"refused: {failed}") if failed else "–"
            if flow.is_file():
                cell += f'<br><img class="flow" src="samples/{m}/{flow.name}" title="flow">'
            cells.append(f"<td>{cell}</td>")
        rows.append(f"<tr><th>{html.escape(sid)}</th>{''.join(cells)}</tr>")
    return f"<table class='grid'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def write_report(out: Path) -> Path:
    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    (out / "plots").mkdir(exist_ok=True)
    plots = "".join(f'<img class="plot" src="{p}">' for p in _plots(results, out))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>icportrait eval: {html.escape(results['suite'])}</title><style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; font-size: 13px; }}
td.best {{ background: #d8f0d8; font-weight: bold; }}
.grid img {{ width: 128px; }} .grid img.flow {{ width: 64px; }} img.plot {{ max-width: 48%; }}
</style></head><body>
<h1>icportrait evaluation: {html.escape(results['suite'])}</h1>
<p>{results['samples']} samples; model <code>{html.escape(str(results['model']))}</code>;
{results['steps']} steps; seed {results['seed']}; device {results['device']};
icportrait {results['versions']['icportrait']}, torch {results['versions']['torch']}.<br>
Command: <code>{html.escape(results['command'])}</code>.
Metric definitions: docs/evaluation.md. ↓ lower is better, ↑ higher is better.</p>
<h2>Methods × metrics (mean over samples)</h2>{summary_table(results)}
<h2>Plots</h2>{plots or '<p>none for this suite</p>'}
<h2>Samples</h2>{_grid(results, out)}
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
