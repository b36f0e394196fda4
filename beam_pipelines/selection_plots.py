"""Pictures of a selection a person can check: confidence histograms, kept samples and near misses.

Up to MAX_PANELS classes get one histogram panel each and one row of samples each. More
classes (ImageNet's 1,000) get one heatmap of every class's histogram and a mosaic of the
first MAX_SAMPLE_ROWS classes' samples drawn as a single image: 1,000 panels of 101 bars took
218 s of a 222 s select job (bench/select_scaling.py --num_classes 1000) and were unreadable.
"""

from __future__ import annotations

import io
import math
from typing import Optional

import numpy as np
import tensorflow as tf

MAX_PANELS = 40
MAX_SAMPLE_ROWS = 40
THUMBNAIL = 48


def _save(fig, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def plot_histograms(rows: list[dict], min_threshold: float, path: str) -> None:
    """One panel per class: confidence histogram, chosen threshold, counts."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(rows) > MAX_PANELS:
        _plot_histogram_heatmap(plt, rows, min_threshold, path)
        return
    n = len(rows)
    cols = min(5, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(3.2 * cols, 2.4 * math.ceil(n / cols)),
                             squeeze=False)
    for ax, row in zip(axes.flat, rows):
        hist = np.asarray(row["histogram"])
        edges = np.linspace(0, 1, len(hist))
        ax.bar(edges, hist, width=1.0 / max(1, len(hist) - 1), color="#4a7ab5")
        ax.axvline(row["threshold"], color="#c0392b", lw=1.5)
        ax.axvline(min_threshold, color="#999999", lw=0.8, ls="--")
        ax.set_title(f"{row['name']}: t={row['threshold']:.2f} kept {row['kept_unique']} "
                     f"wrote {row['written']}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("teacher confidence per predicted class (red: threshold)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _plot_histogram_heatmap(plt, rows: list[dict], min_threshold: float, path: str) -> None:
    """Every class's confidence histogram as one row of a heatmap (log counts), its threshold in red."""
    hist = np.asarray([r["histogram"] for r in rows], np.float64)
    fig, (ax, counts) = plt.subplots(1, 2, figsize=(14, 8), gridspec_kw={"width_ratios": [3, 1]})
    ax.imshow(np.log1p(hist), aspect="auto", interpolation="nearest", cmap="Blues", extent=(0, 1, len(rows), 0))
    ax.plot([r["threshold"] for r in rows], np.arange(len(rows)) + 0.5, ".", color="#c0392b", ms=2)
    ax.axvline(min_threshold, color="#999999", lw=0.8, ls="--")
    ax.set_xlabel("teacher confidence")
    ax.set_ylabel(f"predicted class (0..{len(rows) - 1})")
    ax.set_title("confidence per predicted class, log counts (red: threshold)", fontsize=10)
    counts.plot([r["kept_unique"] for r in rows], np.arange(len(rows)), lw=0.8, label="kept")
    counts.plot([r["written"] for r in rows], np.arange(len(rows)), lw=0.8, label="written (copies)")
    counts.invert_yaxis()
    counts.legend(fontsize=8)
    counts.set_title("images per class", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    return tf.cast(tf.image.resize(image, [THUMBNAIL, THUMBNAIL], antialias=True), tf.uint8).numpy()


def plot_samples(by_class: dict[int, list[tuple[bytes, Optional[float]]]], class_names: list[str], path: str,
                 title: str = "kept samples", thresholds: Optional[dict[int, float]] = None) -> None:
    """A grid: one row per class (the teacher's), its images (encoded bytes), each captioned with its
    confidence when known, the row with the class's threshold when given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decoded = {c: [(tf.io.decode_image(e, channels=3, expand_animations=False).numpy(), conf) for e, conf in items]
               for c, items in by_class.items() if items}
    rows = sorted(decoded)
    if not rows:
        return
    names = [class_names[c] if c < len(class_names) else str(c) for c in rows]
    if thresholds:
        names = [f"{name} (t={thresholds[c]:.2f})" if c in thresholds else name for name, c in zip(names, rows)]
    if len(rows) > MAX_SAMPLE_ROWS:
        _plot_sample_mosaic(plt, decoded, rows, names, title, path)
        return
    cols = max(len(v) for v in decoded.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols, 1.25 * len(rows)), squeeze=False)
    for i, c in enumerate(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(decoded[c]):
                image, confidence = decoded[c][j]
                ax.imshow(image)
                if confidence is not None:
                    # Truncated, not rounded: a near miss at 0.89996 below t = 0.90 must not read "0.900".
                    ax.text(0.5, -0.02, f"{math.floor(confidence * 1000) / 1000:.3f}", transform=ax.transAxes,
                            ha="center", va="top", fontsize=6)
        axes[i][0].set_title(names[i], fontsize=7, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _plot_sample_mosaic(plt, decoded: dict, rows: list[int], names: list[str], title: str, path: str) -> None:
    """The first MAX_SAMPLE_ROWS classes' samples as one image (one row per class), drawn once."""
    shown = rows[:MAX_SAMPLE_ROWS]
    cols = max(len(decoded[c]) for c in shown)
    mosaic = np.full((len(shown) * THUMBNAIL, cols * THUMBNAIL, 3), 255, np.uint8)
    for i, c in enumerate(shown):
        for j, (image, _) in enumerate(decoded[c]):
            mosaic[i * THUMBNAIL:(i + 1) * THUMBNAIL, j * THUMBNAIL:(j + 1) * THUMBNAIL] = _thumbnail(image)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * cols, 0.5 * len(shown)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks((np.arange(len(shown)) + 0.5) * THUMBNAIL)
    ax.set_yticklabels(names[:len(shown)], fontsize=6)
    ax.set_xticks([])
    ax.set_title(f"{title}: the first {len(shown)} of {len(rows)} classes", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
