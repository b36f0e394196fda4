"""`noisystudent select`: thresholds, cap and duplication as docs/design.md specifies, deterministic."""

import collections
import filecmp
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import select, selection_rules
from noisystudent import dataset_dir, records
from tests.tfrecord_files import write_tfrecord

# class -> [(confidence, how many)]; num_image = 300 per class.
DESIGN = {
    0: [(0.955, 200), (0.655, 200), (0.355, 200)],  # rich: threshold 0.65, total 400, 0.75 copies each
    1: [(0.905, 100), (0.205, 50)],                 # poor: threshold 0.30 (the minimum), 3 copies each
    2: [(0.505, 50), (0.805, 25)],                   # poor: 75 images, 4 copies each
}
NUM_IMAGE = 300


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Image shards + prediction records whose sources point at them."""
    root = tmp_path_factory.mktemp("select")
    rng = np.random.default_rng(0)
    images, preds, pixels = [[], [], []], [], {}
    n = 0
    for label, groups in DESIGN.items():
        for conf, count in groups:
            for _ in range(count):
                image_id = f"u/{n:05d}"
                p = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                pixels[image_id] = p
                shard = n % 3
                images[shard].append(records.encode_image_record(image_id, tf.io.encode_png(p).numpy()))
                probs = np.full(3, (1 - conf) / 2, np.float32)
                probs[label] = conf
                preds.append(records.encode_prediction(image_id, str(root / f"img-{shard}.tfrecord"), probs, "t"))
                n += 1
    for shard, items in enumerate(images):
        write_tfrecord(root / f"img-{shard}.tfrecord", items)
    write_tfrecord(root / "pred-0.tfrecord", preds[::2])
    write_tfrecord(root / "pred-1.tfrecord", preds[1::2])
    return root, pixels


def _run(root, out, *extra):
    return select.run(["--predictions", str(root / "pred-*.tfrecord"), "--output_dir", str(out),
                       "--num_image", str(NUM_IMAGE), *extra])


def _written(out):
    return [records.parse_pseudo_labeled(r) for r in dataset_dir.iter_split_records(str(out), "train")]


def test_thresholds_totals_and_copies_match_a_hand_computation(synthetic, tmp_path):
    root, pixels = synthetic
    result = _run(root, tmp_path / "a")
    rows = {r["class"]: r for r in result["stats"]["classes"]}
    assert (rows[0]["threshold"], rows[0]["total_above_threshold"], rows[0]["expected_copies"]) == (0.65, 400, 0.75)
    assert (rows[1]["threshold"], rows[1]["total_above_threshold"], rows[1]["expected_copies"]) == (0.3, 100, 3.0)
    assert (rows[2]["threshold"], rows[2]["total_above_threshold"], rows[2]["expected_copies"]) == (0.3, 75, 4.0)
    assert rows[0]["histogram"][95] == 200 and rows[0]["histogram"][65] == 200
    # Rich class: a Bernoulli(0.75) draw per image -> 300 +- 3 sigma (sigma = 8.7).
    assert abs(rows[0]["written"] - NUM_IMAGE) < 27 and rows[0]["kept_unique"] == rows[0]["written"]
    # Poor classes are upsampled exactly: every image above the threshold, 3 or 4 times.
    assert (rows[1]["kept_unique"], rows[1]["written"]) == (100, 300)
    assert (rows[2]["kept_unique"], rows[2]["written"]) == (75, 300)
    written = _written(tmp_path / "a")
    assert collections.Counter(r.label for r in written) == {c: rows[c]["written"] for c in rows}
    # The records carry the right image for each id, and only images above the threshold.
    for r in written[:200]:
        np.testing.assert_array_equal(tf.io.decode_png(r.encoded).numpy(), pixels[r.image_id])
        assert r.confidence >= rows[r.label]["threshold"] - 1e-6
    assert (tmp_path / "a" / "histograms.png").stat().st_size > 1000
    assert (tmp_path / "a" / "samples.png").stat().st_size > 1000
    # The decision table says why the rich class's other images above its threshold were not kept.
    import pyarrow.parquet as pq
    table = pq.ParquetDataset(sorted(str(p) for p in (tmp_path / "a").glob("decisions-*.parquet"))).read()
    reasons = collections.Counter(zip(table["predicted_class"].to_pylist(), table["reason"].to_pylist()))
    assert reasons[(0, "not drawn: the balance draw gave it 0 copies")] == 400 - rows[0]["kept_unique"]


def test_without_upsampling_poor_classes_are_not_duplicated(synthetic, tmp_path):
    root, _ = synthetic
    rows = {r["class"]: r for r in _run(root, tmp_path / "b", "--no_upsample")["stats"]["classes"]}
    assert (rows[1]["written"], rows[2]["written"]) == (100, 75)
    assert abs(rows[0]["written"] - NUM_IMAGE) < 27


def test_same_seed_same_files_other_seed_other_sample(synthetic, tmp_path):
    root, _ = synthetic
    _run(root, tmp_path / "s1", "--seed", "7")
    _run(root, tmp_path / "s2", "--seed", "7")
    _run(root, tmp_path / "s3", "--seed", "8")
    name = dataset_dir.read_summary(str(tmp_path / "s1"))["splits"]["train"]["files"][0]
    assert filecmp.cmp(tmp_path / "s1" / name, tmp_path / "s2" / name, shallow=False)
    ids = lambda d: collections.Counter(r.image_id for r in _written(d) if r.label == 0)
    a, c = ids(tmp_path / "s1"), ids(tmp_path / "s3")
    assert a != c and abs(sum(a.values()) - sum(c.values())) < 40
    # Copies of an image are not next to each other.
    order = [r.image_id for r in _written(tmp_path / "s1")]
    adjacent = sum(1 for x, y in zip(order, order[1:]) if x == y)
    assert adjacent < 0.05 * len(order)


def test_trainer_reads_the_output(synthetic, tmp_path):
    """One epoch of the trainer's input is every record select wrote, with its image and probabilities."""
    from trainer import data
    root, _ = synthetic
    _run(root, tmp_path / "t")
    files = dataset_dir.resolve_files(str(tmp_path / "t"), "train")
    written = _written(tmp_path / "t")
    batches = data.pseudo_labeled_images(files, 3, 4, len(written), None, shuffle_buffer=1)
    images, probs = (t.numpy() for t in next(iter(batches)))
    expected = sorted((r.probabilities.tobytes(), tf.io.decode_png(r.encoded).numpy().astype(np.float32).tobytes())
                      for r in written)
    got = sorted((p.tobytes(), i.tobytes()) for p, i in zip(probs, images))
    assert got == expected  # the same multiset of (probabilities, pixels): nothing dropped, nothing altered
    assert collections.Counter(probs.argmax(axis=1).tolist()) == collections.Counter(r.label for r in written)


def test_bad_predictions_and_missing_images_go_to_the_dead_letter_file(synthetic, tmp_path):
    root, _ = synthetic
    src = str(root / "img-0.tfrecord")
    write_tfrecord(tmp_path / "bad-0.tfrecord", [
        records.encode_prediction("u/00000", src, np.array([0.9, 0.05, 0.05]), "t"),
        records.encode_prediction("ghost/1", src, np.array([0.9, 0.05, 0.05]), "t"),
        records.encode_prediction("nan/1", src, np.array([np.nan, 0.5, 0.5]), "t"),
        records.encode_prediction("short/1", src, np.array([0.5, 0.5]), "t"),
    ])
    out = tmp_path / "out"
    result = select.run(["--predictions", str(tmp_path / "bad-*.tfrecord"), "--output_dir", str(out),
                         "--num_image", "1", "--num_classes", "3", "--min_threshold", "0.5"])
    dead = {d["id"]: d["reason"] for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}
    assert set(dead) == {"ghost/1", "nan/1", "short/1"}
    assert "no image with this id" in dead["ghost/1"] and "NaN" in dead["nan/1"]
    assert "2 probabilities, expected 3" in dead["short/1"]
    assert [r.image_id for r in _written(out)] == ["u/00000"] and result["dead_letter"] == 3


def test_stats_only_writes_thresholds_and_no_images(synthetic, tmp_path):
    root, _ = synthetic
    result = _run(root, tmp_path / "st", "--stats_only")
    assert result["splits"] == {} and not list((tmp_path / "st").glob("train-*"))
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["classes"][0]["threshold"] == 0.65 and stats["predictions"] == 825


def test_selection_functions_by_hand():
    hist = np.zeros((1, 11), np.int64)
    hist[0, [3, 6, 9]] = [5, 5, 5]
    (s,) = selection_rules.compute_selection(hist, num_image=8, min_threshold=0.2, upsample=True)
    assert (s.threshold_bucket, s.total, s.expected_copies) == (6, 10, 0.8)
    (s,) = selection_rules.compute_selection(hist, num_image=30, min_threshold=0.2, upsample=False)
    assert (s.threshold_bucket, s.total, s.expected_copies) == (2, 15, 1.0)
    draws = [selection_rules.copies_for(0, f"id{i}", 2.25) for i in range(4000)]
    assert set(draws) == {2, 3} and abs(np.mean(draws) - 2.25) < 0.03
    assert selection_rules.bucket_of(np.float32(0.65), 101) == 64  # 0.6499999762 < 0.65: the original's side


def test_a_damaged_probability_vector_is_found_when_its_prediction_is_selected(synthetic, tmp_path):
    """The passes read scalars only; a vector that does not decode (here a NaN beside a finite stored
    confidence) is a dead letter with its copies when selected, and the counts still balance."""
    root, _ = synthetic
    src = str(root / "img-0.tfrecord")
    good = records.encode_prediction("u/00000", src, np.array([0.9, 0.05, 0.05]), "t")
    damaged = _with_a_nan(records.encode_prediction("u/00003", src, np.array([0.9, 0.05, 0.05]), "t"))
    assert records.read_prediction_scalars(damaged, 3).confidence == pytest.approx(0.9)
    write_tfrecord(tmp_path / "p-0.tfrecord", [good, damaged])
    out = tmp_path / "out"
    select.run(["--predictions", str(tmp_path / "p-*.tfrecord"), "--output_dir", str(out), "--num_image", "4",
                "--num_classes", "3"])
    dead = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["id"], d["split"]) for d in dead] == [("u/00003", "train")] and "NaN" in dead[0]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting"]["train"]["dead_letter"] == dead[0]["copies"] == 2
    assert {r.image_id for r in _written(out)} == {"u/00000"}


def _with_a_nan(serialized):
    """The same prediction with a NaN in its probability vector (its stored confidence untouched)."""
    example = tf.train.Example.FromString(serialized)
    example.features.feature[records.PROBABILITIES].float_list.value[1] = float("nan")
    return example.SerializeToString()


def test_plots_for_a_thousand_classes_are_one_figure_each(tmp_path):
    """ImageNet-sized selections: a heatmap and a sample mosaic, not 1,000 panels (which took minutes)."""
    from beam_pipelines import selection_plots

    rng = np.random.default_rng(0)
    rows = [{"name": str(c), "histogram": rng.integers(0, 50, 101).tolist(), "threshold": 0.3 + c / 2000,
             "kept_unique": int(rng.integers(0, 100)), "written": 100} for c in range(1000)]
    png = tf.io.encode_png(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).numpy()
    selection_plots.plot_histograms(rows, 0.3, str(tmp_path / "histograms.png"))
    selection_plots.plot_samples({c: [(png, None), (png, 0.25)] for c in range(1000)}, [str(c) for c in range(1000)],
                                 str(tmp_path / "samples.png"))
    for name in ("histograms.png", "samples.png"):  # one readable figure (1,000 panels: 38,400 px tall)
        height, width, _ = tf.io.decode_png((tmp_path / name).read_bytes()).shape
        assert 300 < height < 2000 and 200 < width < 2000, (name, height, width)
    samples = tf.io.decode_png((tmp_path / "samples.png").read_bytes()).numpy()
    assert len(np.unique(samples.reshape(-1, 3), axis=0)) > 1000  # the thumbnails are drawn, not a blank canvas
    # The thresholds are drawn where they are: red dots move right with the thresholds.
    red_x = {}
    for t in (0.35, 0.85):
        flat = [dict(row, threshold=t) for row in rows]
        selection_plots.plot_histograms(flat, 0.3, str(tmp_path / f"t{t}.png"))
        image = tf.io.decode_png((tmp_path / f"t{t}.png").read_bytes()).numpy().astype(int)
        heatmap = image[:, : image.shape[1] * 3 // 4]  # the left panel; the counts panel is to its right
        red = (heatmap[..., 0] > 150) & (heatmap[..., 1] < 110) & (heatmap[..., 2] < 110)
        assert red.sum() > 200, t
        red_x[t] = np.nonzero(red)[1].mean() / heatmap.shape[1]
        assert len(np.unique(heatmap.reshape(-1, 3), axis=0)) > 20  # the log-count heatmap is not blank
    assert red_x[0.85] - red_x[0.35] > 0.3


def test_the_decision_table_has_one_row_per_prediction_matching_stats_json(synthetic, tmp_path):
    import pyarrow.parquet as pq

    root, _ = synthetic
    # Class 0: 200 at 0.955 (above --max_prob), 200 at 0.655, and 250 below 0.5 (its 0.355s and the other
    # classes' 0.205s, whose argmax is class 0 at 0.3975); every other prediction is kept.
    result = _run(root, tmp_path / "d", "--max_prob", "0.95", "--min_threshold", "0.5")
    table = pq.ParquetDataset(sorted(str(p) for p in (tmp_path / "d").glob("decisions-*.parquet"))).read().to_pandas()
    assert len(table) == 825 == table.image_id.nunique()  # 600 + 150 + 75 predictions, one row each
    assert list(table.columns) == ["image_id", "source", "teacher", "predicted_class", "confidence", "threshold",
                                   "kept", "copies", "reason", "true_label"]
    assert table.true_label.isna().all()  # these images carry no hidden label
    rows = {r["class"]: r for r in result["stats"]["classes"]}
    kept = table[table.kept]
    assert kept.groupby("predicted_class").size().to_dict() == {c: rows[c]["kept_unique"] for c in rows}
    assert kept.groupby("predicted_class").copies.sum().to_dict() == {c: rows[c]["written"] for c in rows}
    assert set(kept.reason) == {""} and (table.copies[~table.kept] == 0).all()
    reasons = table[~table.kept].groupby(["predicted_class", "reason"]).size().to_dict()
    assert reasons == {(0, "above --max_prob"): 200, (0, "below its class's threshold"): 250}
    assert table[table.reason == "above --max_prob"].threshold.isna().all()
    assert (table.teacher == "t").all() and table.source.str.endswith(".tfrecord").all()
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["accounting"]["decision_table"] == {"input": 825, "rows": 825}
    # A rerun with --overwrite replaces the table's files, and --no_decision_table writes none.
    _run(root, tmp_path / "d", "--overwrite", "--no_decision_table")
    assert not list((tmp_path / "d").glob("decisions-*"))


def test_hidden_true_labels_give_the_precision_of_kept_pseudo_labels(tmp_path):
    """Digits keep the unlabeled images' true classes as hidden_label; predict carries them, select
    reports per-class precision of what it kept, and the decision table shows them."""
    import keras
    import pyarrow.parquet as pq
    from sklearn.datasets import load_digits

    from beam_pipelines import ingest_digits, predict
    from model import build_model

    ingest_digits.run_config(ingest_digits.IngestDigitsConfig(str(tmp_path / "data"), labels_per_class=5))
    keras.utils.set_random_seed(0)
    build_model("cnn-small", 10, input_shape=(32, 32, 3)).save(str(tmp_path / "t.keras"))
    predict.run_config(predict.PredictConfig(str(tmp_path / "data"), str(tmp_path / "t.keras"), str(tmp_path / "p")))
    result = select.run_config(select.SelectConfig(str(tmp_path / "p"), str(tmp_path / "s"), num_image=50,
                                                   min_threshold=0.0))
    table = pq.ParquetDataset(sorted(str(p) for p in (tmp_path / "s").glob("decisions-*.parquet"))).read().to_pandas()
    truth = load_digits().target
    assert (table.true_label == [truth[int(i.split("/")[1])] for i in table.image_id]).all()
    kept = table[table.kept]
    stats = result["stats"]
    assert stats["pseudo_label_precision"] == pytest.approx((kept.predicted_class == kept.true_label).mean())
    for row in stats["classes"]:
        mine = kept[kept.predicted_class == row["class"]]
        assert row["kept_with_truth"] == len(mine)
        if len(mine):
            assert row["pseudo_label_precision"] == pytest.approx((mine.true_label == row["class"]).mean())
    assert sum(stats["kept_vs_truth"].values()) == len(kept)
    # The trainer never sees them: its input spec has no hidden_label.
    assert records.HIDDEN_LABEL not in records.image_feature_spec()


def test_near_misses_are_sampled_from_the_band_just_below_each_threshold_at_a_bounded_rate():
    histograms = np.zeros((3, 101), np.int64)
    histograms[0, 25], histograms[0, 95] = 1000, 10  # 1,000 images 0.05 below a threshold of 0.30
    histograms[1, 15], histograms[1, 90] = 1000, 500  # threshold 0.90; its 0.15s are far below: not close
    histograms[2, 28] = 4  # fewer than wanted: every one is offered
    plan = selection_rules.compute_selection(histograms, num_image=300, min_threshold=0.3, upsample=True)
    near = selection_rules.near_miss_sampling(histograms, plan, wanted=8)
    assert [n.lowest_bucket for n in near] == [20, 80, 20]
    assert near[0].rate == pytest.approx(32 / 1000) and near[1].rate == 0 and near[2].rate == 1


def test_near_misses_are_the_most_confident_rejected_images_just_below_the_threshold(tmp_path):
    """Class 0 (threshold 0.95): 30 images at 0.91 and 20 at 0.87 are close, 50 at 0.60 are not; the 8
    shown (--samples_per_class) are the closest, each named in stats.json and rejected in the table."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    groups = {0: [(0.955, 100), (0.91, 30), (0.87, 20), (0.60, 50)], 1: [(0.9, 100)]}
    images, preds, n = [], [], 0
    for label, items in groups.items():
        for conf, count in items:
            for _ in range(count):
                image_id = f"u/{n:05d}"
                images.append(records.encode_image_record(image_id, tf.io.encode_png(
                    rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).numpy()))
                probs = np.array([conf, 1 - conf] if label == 0 else [1 - conf, conf], np.float32)
                preds.append(records.encode_prediction(image_id, str(tmp_path / "img.tfrecord"), probs, "t"))
                n += 1
    write_tfrecord(tmp_path / "img.tfrecord", images)
    write_tfrecord(tmp_path / "pred-0.tfrecord", preds)
    result = select.run(["--predictions", str(tmp_path / "pred-*.tfrecord"), "--output_dir", str(tmp_path / "out"),
                         "--num_image", "100"])
    rows = result["stats"]["classes"]
    assert rows[0]["threshold"] == 0.95 and rows[1]["near_misses"] == []
    near = rows[0]["near_misses"]
    assert len(near) == 8 and all(m["confidence"] == pytest.approx(0.91) for m in near)
    table = pq.ParquetDataset(sorted(str(p) for p in (tmp_path / "out").glob("decisions-*.parquet"))).read()
    why = dict(zip(table["image_id"].to_pylist(), zip(table["kept"].to_pylist(), table["reason"].to_pylist())))
    assert all(why[m["image_id"]] == (False, select.REASON_BELOW) for m in near)
    assert (tmp_path / "out" / "near_misses.png").stat().st_size > 1000
    assert not list((tmp_path / "out").glob("_*.tfrecord"))  # the pipeline's sample files are gone


def test_copies_cross_the_shuffle_once_per_shard_and_write_the_bytes_one_record_per_copy_wrote(tmp_path):
    """An image with 20,000 copies (at the paper's ImageNet cap of 130,000, one confident image in a poor class
    gets 130,000) is grouped into at most one shuffle element per shard, and the shards hold exactly what
    writing each copy as its own record (the previous writer) put there."""
    import apache_beam as beam

    from beam_pipelines import dataset_output as out
    from beam_pipelines.pipeline_options import make_pipeline_options

    big = b"x" * 1000
    copied = [out.CopiedRecord("train", "img/a", 20_000, big, 1), out.CopiedRecord("train", "img/b", 3, b"b", 0),
              out.CopiedRecord("train", "img/c", 1, b"c", 2)]
    num_shards = {"train": 7}
    groups = out.group_by_shard(copied, seed=5, num_shards=num_shards)
    carried = [entry for entries in groups.values() for entry in entries]
    assert sum(1 for entry in carried if entry[0] is big) <= 7  # not 20,000
    assert len(out.expand_shard_entries(carried)) == 20_004
    one_per_copy = [out.ShardedRecord("train", out.copy_key(r.key, i), r.serialized, r.label)
                    for r in copied for i in range(r.copies)]
    for name, elements in (("copied", [copied]), ("per_copy", [one_per_copy])):
        os.makedirs(tmp_path / name)
        with beam.Pipeline(options=make_pipeline_options([])) as p:
            _ = (p | beam.Create(elements)
                 | out.WriteShardedTFRecords(str(tmp_path / name), num_shards, seed=5, batched=True))
    names = sorted(os.listdir(tmp_path / "per_copy"))
    assert names == sorted(os.listdir(tmp_path / "copied")) and len(names) == 7
    for name in names:
        assert filecmp.cmp(tmp_path / "copied" / name, tmp_path / "per_copy" / name, shallow=False)


def original_thresholds(probs_by_class, num_image, min_threshold, max_prob=2.0):
    """filter_unlabel.py @aac52bf, transcribed: thresholds i / 100. (607-608), per-bucket counts of the
    descending-sorted confidences (411-420), the threshold walk from the top (452-476) and the keep rule
    (195-196). Confidences are the records' float32 values as Python floats."""
    prob_threshold = [i / 100. for i in range(0, 101)]
    result = []
    for probs in probs_by_class:
        probs = sorted((float(p) for p in probs), key=lambda x: -x)
        counts, cur = [0] * len(prob_threshold), 0
        for j in reversed(range(len(prob_threshold))):
            start = cur
            while cur < len(probs) and probs[cur] >= prob_threshold[j]:
                cur += 1
            counts[j] = cur - start
        threshold_idx, total_image = -1, 0
        for i in range(len(prob_threshold) - 1, -1, -1):
            if prob_threshold[i] < max_prob and prob_threshold[i] >= min_threshold:
                total_image += counts[i]
                if total_image >= num_image:
                    threshold_idx = i
                    break
                if prob_threshold[i] == min_threshold:
                    threshold_idx = i
                    break
        threshold = prob_threshold[threshold_idx]
        kept = [p for p in probs if p >= threshold and p <= max_prob]
        result.append((threshold, total_image, sorted(kept)))
    return result


def test_thresholds_and_kept_sets_are_the_originals_at_float32_bucket_edges():
    """float32 confidences just below decimal edges (0.29999998, 0.65 = 0.6499999762, 0.71, 0.99999994)
    fall where the original puts them; a confident teacher gives many 0.99999994 and 1.0."""
    rng = np.random.default_rng(0)
    edges = np.array([0.29999998, 0.3, 0.65, 0.71, 0.99999994, 1.0, 0.99, 0.5], np.float32)
    classes = [
        np.concatenate([np.full(100, 0.99999994, np.float32), np.full(55, 1.0, np.float32)]),  # 55 at the top
        np.concatenate([np.full(40, 0.29999998, np.float32), rng.uniform(0.3, 0.31, 10).astype(np.float32)]),
        np.concatenate([np.repeat(edges, 7), rng.uniform(0, 1, 300).astype(np.float32)]),
        np.full(20, 0.65, np.float32),
    ]
    for num_image, min_threshold in ((55, 0.3), (60, 0.3), (10, 0.3), (1000, 0.3), (30, 0.65), (5, 0.0)):
        hist = np.zeros((len(classes), 101), np.int64)
        for c, probs in enumerate(classes):
            for p in probs:
                hist[c, selection_rules.bucket_of(p, 101)] += 1
        ours = selection_rules.compute_selection(hist, num_image, min_threshold, upsample=True)
        for c, (threshold, total, kept) in enumerate(original_thresholds(classes, num_image, min_threshold)):
            mine = sorted(float(p) for p in classes[c] if selection_rules.bucket_of(p, 101) >= ours[c].threshold_bucket)
            assert (ours[c].threshold, ours[c].total, mine) == (threshold, total, kept), (num_image, min_threshold, c)
    assert selection_rules.bucket_of(np.float32(0.29999998), 101) == 29  # rejected at min_threshold 0.3
    assert selection_rules.bucket_of(np.float32(0.99999994), 101) == 99
    assert selection_rules.bucket_of(np.float32(0.71), 101) == 70
