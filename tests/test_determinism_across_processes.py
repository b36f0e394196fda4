"""Two separate processes, different hash seeds: ingest, predict and select write the same bytes.

In-process re-runs share Python's string-hash seed, dict orders and cached state; a user's re-run
does not. Every shard, dead-letter file, stats.json and summary.json (but its timestamp) must match.
"""

import json
import os
import subprocess
import sys

import keras

from model import build_model


def _run_chain(work, model_path, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), TF_CPP_MIN_LOG_LEVEL="2")
    out = work / "run"  # the same paths both times: records name their source files
    steps = [
        ["ingest-digits", "--output_dir", str(out / "data"), "--labels_per_class", "5", "--overwrite"],
        ["predict", "--input", str(out / "data"), "--model", str(model_path), "--output_dir", str(out / "preds"),
         "--teacher_name", "t", "--num_shards", "3", "--batch_size", "64", "--overwrite"],
        ["select", "--predictions", str(out / "preds"), "--num_image", "150", "--min_threshold", "0.05",
         "--output_dir", str(out / "pseudo"), "--records_per_shard", "400", "--samples_per_class", "0",
         "--overwrite"],
    ]
    for step in steps:
        result = subprocess.run([sys.executable, "-m", "noisystudent.cli", *step], env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    return out


def _contents(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if name.endswith(".png"):
                continue  # plots: matplotlib's own bytes, not data
            data = open(path, "rb").read()
            if name == "summary.json":
                summary = json.loads(data)
                summary.pop("written_at")
                data = json.dumps(summary, sort_keys=True).encode()
            files[rel] = data
    return files


def test_ingest_predict_select_write_the_same_bytes_in_two_processes(tmp_path):
    keras.utils.set_random_seed(0)
    model_path = tmp_path / "teacher.keras"
    build_model("cnn-small", 10, input_shape=(32, 32, 3)).save(str(model_path))
    first = _contents(_run_chain(tmp_path, model_path, 1))  # read before the second run overwrites it
    second = _contents(_run_chain(tmp_path, model_path, 2))
    assert sorted(first) == sorted(second)
    assert sum(1 for name in first if name.startswith("pseudo/train-")) >= 2  # several shards
    assert sum(1 for name in first if name.startswith("preds/predictions-")) == 3
    different = [name for name in first if first[name] != second[name]]
    assert not different, different
