"""`noisystudent report RUN_DIR`: one self-contained report.html for a loop run.

    noisystudent report runs/demo/seed0/loop      # -> runs/demo/seed0/loop/report.html

Read from what the run wrote (manifest.json, each model's eval.json, each selection's stats.json
and plots): per iteration the model's test accuracy (overall and per class), the selection's
thresholds and kept/written counts per class (and the pseudo-label precision when the data keeps
hidden true labels), the confidence histograms, kept samples and rejected-but-close samples (each
with its confidence), the time of every step, and the
lineage (which model labelled which data, which data trained which model). No server and no
external assets: the plots are embedded, the page opens from a file. The loop writes it at the end.
"""

from __future__ import annotations

import argparse
import base64
import html
import posixpath
from typing import Optional, Sequence

import tensorflow as tf

from noisystudent import dataset_dir, run_layout

REPORT_FILE = "report.html"
SECTIONS = ("models", "selection", "robustness", "timings", "lineage")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}h2{border-bottom:2px solid #4a7ab5;padding-bottom:.2em}"""


def _read_json(path: str) -> Optional[dict]:
    if not tf.io.gfile.exists(path):
        return None
    return dataset_dir.read_json(path)


def _image(path: str, alt: str) -> str:
    if not tf.io.gfile.exists(path):
        return f"<p>({html.escape(alt)}: not written)</p>"
    with tf.io.gfile.GFile(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _models_section(manifest: dict) -> str:
    rows, per_class = [], {}
    for name, step in manifest["steps"].items():
        if not name.endswith(("/" + run_layout.TEACHER, "/" + run_layout.STUDENT)) or "output" not in step:
            continue
        report = _read_json(posixpath.join(step["output"], run_layout.EVAL_FILE)) or {}
        rows.append([name, report.get("model", ""), report.get("mode", ""), _pct(report.get("top1_accuracy")),
                     report.get("num_examples", "")])
        per_class[name] = {c: v["accuracy"] for c, v in report.get("per_class", {}).items()}
    classes = sorted({c for v in per_class.values() for c in v}, key=lambda c: (len(c), c))
    by_class = [[name] + [_pct(v.get(c)) for c in classes] for name, v in per_class.items()]
    return (_table(["step", "model", "mode", "test top-1", "test images"], rows)
            + "<h3>Test accuracy per class</h3>" + _table(["step"] + classes, by_class))


def _selection_section(run_dir: str, manifest: dict) -> str:
    parts = []
    for name in sorted(n for n in manifest["steps"] if n.endswith("/" + run_layout.SELECT_STEP)):
        iteration = name.split("/")[0]
        pseudo = run_layout.iteration_step_dir(run_dir, iteration, run_layout.PSEUDO)
        stats = _read_json(posixpath.join(pseudo, dataset_dir.STATS_FILE))
        if stats is None:
            continue
        truth = "pseudo_label_precision" in stats
        header = ["class", "threshold", "above threshold", "kept", "written"] + (["kept right"] if truth else [])
        rows = [[r["name"], f"{r['threshold']:.2f}", r["total_above_threshold"], r["kept_unique"], r["written"]]
                + ([_pct(r.get("pseudo_label_precision"))] if truth else []) for r in stats["classes"]]
        summary = (f"<p>{stats['predictions']:,} predictions; --num_image {stats['num_image']}, --min_threshold "
                   f"{stats['min_threshold']}" + (f"; kept pseudo-labels right (hidden true classes): "
                                                   f"{_pct(stats['pseudo_label_precision'])}" if truth else "")
                   + "</p>")
        parts.append(f'<h3 id="selection-{iteration}">{iteration}</h3>{summary}{_table(header, rows)}'
                     + _image(posixpath.join(pseudo, "histograms.png"), f"{iteration} confidence histograms")
                     + "<h4>Kept samples</h4>" + _image(posixpath.join(pseudo, "samples.png"), f"{iteration} kept samples")
                     + "<h4>Rejected but close (within 0.1 below the class's threshold; their ids: stats.json "
                       "near_misses)</h4>" + _near_misses(pseudo, iteration))
    return "".join(parts) or "<p>(no selection step yet)</p>"


def _near_misses(pseudo: str, iteration: str) -> str:
    path = posixpath.join(pseudo, "near_misses.png")
    if not tf.io.gfile.exists(path):
        return "<p>(no rejected image within 0.1 below its class's threshold)</p>"
    return _image(path, f"{iteration} rejected but close")


def _timings_section(manifest: dict) -> str:
    rows = [[name, step.get("status", ""), step.get("started", ""), step.get("seconds", "")]
            for name, step in manifest["steps"].items()]
    return _table(["step", "status", "started", "seconds"], rows)


def _robustness_chart(models: dict) -> str:
    """Top-1 per corruption (mean over its severities), one bar per model: an embedded PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(models.values()))["corruptions"])
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) * len(models) / 2 + 2), 3.2))
    for k, (role, scores) in enumerate(models.items()):
        means = [100 * sum(v["top1"] for v in scores["corruptions"][n].values()) / len(scores["corruptions"][n])
                 for n in names]
        ax.bar([i + k * width for i in range(len(names))], means, width, label=role)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("top-1 (%), mean over severities")
    ax.legend(fontsize=7, ncol=len(models))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="top-1 per corruption" src="data:image/png;base64,{data}">'


def _robustness_section(run_dir: str) -> str:
    """robustness.json (written by `noisystudent benchmark --robustness`): a table and a per-corruption chart."""
    found = _read_json(posixpath.join(run_dir, run_layout.ROBUSTNESS_FILE))
    if found is None:
        return ("<p>(not measured: <code>noisystudent benchmark --robustness</code> evaluates every model on "
                "corrupted and FGSM images; <code>noisystudent evaluate</code> one model)</p>")
    models = found["models"]
    epsilons = list(next(iter(models.values()))["fgsm"])
    rows = [[role, _pct(m["clean"]["top1"]), _pct(m.get("mean_corrupted_top1")),
             "" if m.get("mce") is None else f"{m['mce']:.3f}"] + [_pct(m["fgsm"][e]["top1"]) for e in epsilons]
            for role, m in models.items()]
    settings = found["settings"]
    text = (f"<p>{found['num_images']:,} {html.escape(settings['split'])} images; corruptions "
            f"{html.escape(str(settings['corruptions']))} at severities {html.escape(str(settings['severities']))}; "
            f"mCE against {html.escape(found['reference'])}</p>")
    table = _table(["model", "clean top-1", "mean corrupted top-1", "mCE"] + [f"FGSM {e} px" for e in epsilons], rows)
    chart = _robustness_chart(models) if next(iter(models.values()))["corruptions"] else ""
    return text + table + chart


def _lineage_section(run_dir: str, manifest: dict) -> str:
    rows = []
    for name, step in manifest["steps"].items():
        iteration, _, step_kind = name.partition("/")
        if step_kind == run_layout.PREDICT_STEP:
            rows.append([name, step.get("teacher", ""),
                         run_layout.iteration_step_dir(run_dir, iteration, run_layout.PREDICTIONS)])
        elif step_kind == run_layout.SELECT_STEP:
            rows.append([name, step.get("predictions", ""), run_layout.iteration_step_dir(run_dir, iteration, run_layout.PSEUDO)])
        elif step_kind == run_layout.STUDENT:
            rows.append([name, run_layout.iteration_step_dir(run_dir, iteration, run_layout.PSEUDO), step.get("output", "")])
        elif step_kind == run_layout.TEACHER:
            rows.append([name, manifest["config"].get("data", ""), step.get("output", "")])
    return _table(["step", "from", "to"], rows)


def build_report(run_dir: str) -> str:
    """The report's HTML for a loop run directory (one with manifest.json)."""
    manifest = _read_json(posixpath.join(run_dir, run_layout.MANIFEST))
    if manifest is None:
        raise FileNotFoundError(f"{run_dir} has no {run_layout.MANIFEST}: not a `noisystudent loop` run directory")
    config = manifest["config"]
    title = f"Noisy Student run {run_dir}"
    body = {
        "models": _models_section(manifest),
        "selection": _selection_section(run_dir, manifest),
        "robustness": _robustness_section(run_dir),
        "timings": _timings_section(manifest),
        "lineage": _lineage_section(run_dir, manifest),
    }
    headings = {"models": "Teacher and students", "selection": "Selection per iteration",
                "robustness": "Robustness: corrupted and adversarial images",
                "timings": "Steps and timings", "lineage": "Lineage"}
    sections = "".join(f'<section id="{key}"><h2>{headings[key]}</h2>{body[key]}</section>' for key in SECTIONS)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>models {html.escape(', '.join(config.get('models', [])))}; data {html.escape(config.get('data', ''))}"
            f"; preset {html.escape(str(config.get('preset', '')))}</p>{sections}</body></html>")


def write_report(run_dir: str) -> str:
    path = posixpath.join(run_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(build_report(run_dir))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="A `noisystudent loop` run directory (the demo: runs/demo/seed0/loop).")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> str:
    path = write_report(build_parser().parse_args(argv).run_dir)
    print(f"report: {path}")
    return path
