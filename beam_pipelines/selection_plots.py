"""Pictures of a selection a person can check: confidence histograms and kept samples."""

from __future__ import annotations

import io
import math

import numpy as np
import tensorflow as tf

from noisystudent import records


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


def plot_samples(samples_path: str, class_names: list[str], path: str) -> None:
    """A grid: one row per class, the sampled kept images (label = the teacher's)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_class: dict[int, list] = {}
    for raw in tf.data.TFRecordDataset(samples_path).as_numpy_iterator():
        r = records.parse_image_record(raw)
        by_class.setdefault(r.label, []).append(tf.io.decode_image(r.encoded, channels=3).numpy())
    rows = sorted(by_class)
    if not rows:
        return
    cols = max(len(v) for v in by_class.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols, 1.1 * len(rows)), squeeze=False)
    for i, c in enumerate(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(by_class[c]):
                ax.imshow(by_class[c][j])
        axes[i][0].set_title(class_names[c] if c < len(class_names) else str(c), fontsize=7, loc="left")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
