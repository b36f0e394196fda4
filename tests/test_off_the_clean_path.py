"""Off the clean path, through the CLI as a user runs it: in-place runs, damaged inputs, odd images, class
mismatches, runaway copies, bad flags, empty splits, Ctrl-C. Each refusal is one line, exit 1, and loses
nothing: the inputs stay byte for byte as they were, and no output reads as complete."""

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

from noisystudent import dataset_dir, records
from noisystudent.app import cli
from tests.tfrecord_files import write_tfrecord

UNLABELED = 1497  # the digits' unlabeled split (1,797 - 100 labeled - --test_size 200)


def _run(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def _ok(capsys, *argv) -> None:
    code, err = _run(capsys, *argv)
    assert code == 0, err


def _snapshot(directory) -> dict:
    """Every file under a directory -> its sha256 (what 'not a byte changed' is checked against)."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def _linear_teacher(data: str, path, num_classes: int = 10) -> None:
    """A small softmax classifier fitted on the labeled digits in seconds: confident on some images,
    not on others, every class predicted."""
    import tensorflow as tf

    images, labels = [], []
    for raw in dataset_dir.iter_split_records(data, "labeled"):
        r = records.parse_image_record(raw)
        images.append(tf.io.decode_png(r.encoded, channels=3).numpy())
        labels.append(r.label % num_classes)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(np.stack(images), np.array(labels), epochs=40, verbose=0)
    model.save(str(path))


def _shard(directory, split: str) -> str:
    (name,) = dataset_dir.load_summary(str(directory)).split(split).files
    return os.path.join(str(directory), name)


def _copy_with(source, target, split: str, change) -> str:
    shutil.copytree(source, target)
    path = _shard(target, split)
    with open(path, "rb") as f:
        changed = change(f.read(), path)
    with open(path, "wb") as f:
        f.write(changed)
    return str(target)


def _first_records(n: int):
    def cut(data: bytes, path: str) -> bytes:
        kept = list(dataset_dir.iter_split_records(os.path.dirname(path), "unlabeled"))[:n]
        write_tfrecord(path + ".new", kept)
        with open(path + ".new", "rb") as f:
            new = f.read()
        os.remove(path + ".new")
        return new
    return cut


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The digits, a teacher of 10 and one of 3 classes, 8 prediction shards, a pseudo-labeled set, and
    damaged copies of each."""
    root = tmp_path_factory.mktemp("world")
    w = {"root": root, "data": root / "data", "preds": root / "preds", "pseudo": root / "pseudo",
         "t10": root / "t10.keras", "t3": root / "t3.keras"}
    assert cli.main(["ingest-digits", "--output_dir", str(w["data"]), "--test_size", "200"]) == 0
    _linear_teacher(str(w["data"]), w["t10"])
    _linear_teacher(str(w["data"]), w["t3"], num_classes=3)
    assert cli.main(["predict", "--input", str(w["data"]), "--model", str(w["t10"]), "--output_dir",
                     str(w["preds"]), "--num_shards", "8"]) == 0
    assert cli.main(["select", "--predictions", str(w["preds"]), "--output_dir", str(w["pseudo"]),
                     "--num_image", "100", "--samples_per_class", "0"]) == 0
    w["half"] = _copy_with(w["data"], root / "half", "unlabeled", lambda d, _: d[: len(d) // 2])
    w["garbage"] = _copy_with(w["data"], root / "garbage", "unlabeled", lambda d, _: os.urandom(len(d)))
    w["boundary"] = _copy_with(w["data"], root / "boundary", "unlabeled", _first_records(600))
    w["labeled_garbage"] = _copy_with(w["data"], root / "labeled_garbage", "labeled",
                                      lambda d, _: b"not a tfrecord " * 100)
    # An interrupted predict: 5 of its 8 shards, no summary.json.
    shutil.copytree(w["preds"], root / "preds_incomplete")
    os.remove(root / "preds_incomplete" / "summary.json")
    for name in dataset_dir.load_summary(str(w["preds"])).split("predictions").files[:3]:
        os.remove(root / "preds_incomplete" / name)
    w["preds_incomplete"] = root / "preds_incomplete"
    # 3-class pseudo-labels as your own TFRecords (no summary.json): the width comes from the records.
    os.makedirs(root / "pseudo3")
    image = records.parse_image_record(next(iter(dataset_dir.iter_split_records(str(w["data"]), "unlabeled"))))
    write_tfrecord(root / "pseudo3" / "mine.tfrecord", [
        records.encode_pseudo_labeled(f"u{i}", image.encoded, np.array([0.8, 0.1, 0.1], np.float32), "t")
        for i in range(64)])
    w["pseudo3"] = root / "pseudo3"
    os.makedirs(root / "photos")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "photos" / "a.png")
    w["photos"] = root / "photos"
    return w


# (case, argv with {placeholders} from the world, the one line it must print, the dirs that must not change)
REFUSALS = [
    ("1: relabel in place", ["predict", "--relabel", "--input", "{pseudo}", "--model", "{t10}", "--output_dir",
                             "{pseudo}", "--overwrite"], r"--output_dir \S+pseudo is the input --input \S+pseudo",
     ["pseudo"]),
    ("1: select in place", ["select", "--predictions", "{preds}", "--output_dir", "{preds}", "--overwrite",
                            "--num_image", "100"], r"--output_dir \S+preds is the input --predictions", ["preds"]),
    ("1: output inside the input", ["predict", "--input", "{data}", "--model", "{t10}", "--output_dir",
                                    "{data}/predictions"], r"is inside the input --input", ["data"]),
    ("1: output containing the input", ["predict", "--input", "{data}", "--model", "{t10}", "--output_dir",
                                        "{root}", "--overwrite"], r"contains the input --input", ["data"]),
    ("1: output where an input glob reads", ["predict", "--input", "{data}/unlabeled-*", "--model", "{t10}",
                                             "--output_dir", "{data}", "--overwrite"],
     r"--output_dir \S+data is a folder that the input --input \S+unlabeled-\* reads from", ["data"]),
    ("1: ingest into its own folder", ["ingest-folder", "--unlabeled_dir", "{photos}", "--output_dir",
                                       "{photos}/out"], r"is inside the input --unlabeled_dir", ["photos"]),
    ("2: a shard cut to half", ["predict", "--input", "{half}", "--model", "{t10}", "--output_dir", "{root}/o2a"],
     rf"unlabeled-00000-of-00001.tfrecord: \d+ records readable of the {UNLABELED:,} its dataset's summary.json declares: "
     r"unreadable TFRecord data .*--allow_damaged_input", ["half"]),
    ("2: a garbage shard", ["predict", "--input", "{garbage}", "--model", "{t10}", "--output_dir", "{root}/o2b"],
     rf"unlabeled-00000-of-00001.tfrecord: 0 records readable of the {UNLABELED:,}", ["garbage"]),
    ("2: a shard cut at a record boundary", ["predict", "--input", "{boundary}", "--model", "{t10}",
                                             "--output_dir", "{root}/o2c"],
     rf"600 records readable of the {UNLABELED:,} its dataset's summary.json declares: the file ends early",
     ["boundary"]),
    ("2: a glob into an unfinished output", ["select", "--predictions", "{preds_incomplete}/predictions-*",
                                             "--output_dir", "{root}/o2d", "--num_image", "100"],
     r"which has no summary.json and holds 5 of the 8 shards of 'predictions'", ["preds_incomplete"]),
    ("4: a 3-class teacher on 10-class data", ["predict", "--input", "{data}", "--model", "{t3}", "--output_dir",
                                               "{root}/o4a"],
     r"--model \S+t3.keras predicts 3 classes, but --input \S+data has 10", ["data"]),
    ("4: relabel with a 3-class teacher", ["predict", "--relabel", "--input", "{pseudo}", "--model", "{t3}",
                                           "--output_dir", "{root}/o4b"], r"predicts 3 classes, but --input", []),
    ("4: --num_classes against the predictions", ["select", "--predictions", "{preds}", "--output_dir",
                                                  "{root}/o4c", "--num_image", "100", "--num_classes", "5"],
     r"--num_classes 5, but --predictions \S+preds holds 10-class predictions \(its summary.json\)", ["preds"]),
    ("4: pseudo-labels of other classes", ["train", "--preset", "digits", "--mode", "offline", "--labeled_data",
                                           "{data}", "--unlabeled_data", "{pseudo3}/*.tfrecord", "--output_dir",
                                           "{root}/o4d"],
     r"\S+pseudo3/\*.tfrecord holds 3-class pseudo-labels \(its first record, in \S+mine.tfrecord\), but "
     r"labeled_data \S+data has 10 classes", ["pseudo3"]),
    ("4: a garbage labeled shard", ["train", "--preset", "digits", "--labeled_data", "{labeled_garbage}",
                                    "--output_dir", "{root}/o4e", "--train_steps", "30"],
     r"a training input file in \S+labeled_garbage is damaged: corrupted record at 0", []),
    ("5: a trillion images per class", ["select", "--predictions", "{preds}", "--output_dir", "{root}/o5a",
                                        "--num_image", "1000000000000"],
     rf"--num_image 1,000,000,000,000 from {UNLABELED:,} predictions: every kept image would be written at least "
     rf"{1e12 / UNLABELED:,.1f} times", ["preds"]),
    ("5: 20,000 per class from 1,497", ["select", "--predictions", "{preds}", "--output_dir", "{root}/o5b",
                                        "--num_image", "20000", "--min_threshold", "0"],
     rf"select would write about [\d,]+ records from {UNLABELED:,} kept unique images \([\d.,]+x, over 100x\): "
     r"--num_image 20,000 per class, and class \d has", ["preds"]),
    ("6: --num_shards -1", ["predict", "--input", "{data}", "--model", "{t10}", "--output_dir", "{root}/o6a",
                            "--num_shards", "-1"], r"--num_shards must be >= 1 \(or 0: one per input file\), got -1",
     []),
    ("6: --records_per_shard 0", ["select", "--predictions", "{preds}", "--output_dir", "{root}/o6b",
                                  "--num_image", "5", "--records_per_shard", "0"],
     r"--records_per_shard must be >= 1, got 0", []),
]


@pytest.mark.parametrize("case, argv, message, untouched", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_bad_input_is_one_line_exit_1_and_loses_nothing(world, capsys, case, argv, message, untouched):
    import re

    argv = [a.format(**world) for a in argv]
    before = {name: _snapshot(world[name]) for name in untouched}
    code, err = _run(capsys, *argv)
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"noisystudent {argv[0]}: error: ") and re.search(message, err), err
    for name in untouched:
        assert _snapshot(world[name]) == before[name], f"{case}: {name} changed"
    output = argv[argv.index("--output_dir") + 1]
    assert not os.path.exists(os.path.join(output, "summary.json")) or output in [str(world[n]) for n in untouched]


def test_a_damaged_shard_with_allow_damaged_input_dead_letters_exactly_the_records_lost(world, capsys, tmp_path):
    out = tmp_path / "p"
    _ok(capsys, "predict", "--input", world["half"], "--model", world["t10"], "--output_dir", out,
        "--allow_damaged_input")
    summary = dataset_dir.read_summary(str(out))
    readable = summary["predicted"]
    assert 0 < readable < UNLABELED // 2 + 1
    assert summary["accounting"]["predictions"] == {"input": UNLABELED, "written": readable,
                                                    "dead_letter": UNLABELED - readable}
    (dead,) = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert dead["records"] == UNLABELED - readable and dead["source"].endswith("unlabeled-00000-of-00001.tfrecord")
    assert f"{UNLABELED - readable:,} record(s) lost" in dead["reason"]


def test_a_glob_over_part_of_a_complete_directory_counts_what_its_summary_declares(world, capsys, tmp_path):
    shards = dataset_dir.load_summary(str(world["preds"])).split("predictions")
    chosen = sorted(shards.files)[:3]
    out = tmp_path / "s"
    _ok(capsys, "select", "--predictions", f"{world['preds']}/predictions-0000[0-2]-of-00008.tfrecord",
        "--output_dir", out, "--num_image", "30", "--samples_per_class", "0")
    accounting = dataset_dir.read_summary(str(out))["accounting"]["predictions"]
    assert accounting["input"] == sum(shards.file_records[f] for f in chosen) < UNLABELED


def test_max_copies_caps_every_image_and_a_poor_class_is_warned_about(world, capsys, caplog, tmp_path):
    import collections

    out = tmp_path / "capped"
    with caplog.at_level("WARNING", logger="beam_pipelines.select"):
        _ok(capsys, "select", "--predictions", world["preds"], "--output_dir", out, "--num_image", "1500",
            "--min_threshold", "0", "--max_copies", "3", "--samples_per_class", "0")
    copies = collections.Counter(records.parse_pseudo_labeled(r).image_id
                                 for r in dataset_dir.iter_split_records(str(out), "train"))
    assert max(copies.values()) == 3 and len(copies) == UNLABELED
    stats = json.loads((out / "stats.json").read_text())
    assert all(row["expected_copies"] <= 3 for row in stats["classes"])
    assert not [r for r in caplog.records if "times on average" in r.getMessage()]  # capped: nothing over 10
    with caplog.at_level("WARNING", logger="beam_pipelines.select"):
        _ok(capsys, "select", "--predictions", world["preds"], "--output_dir", tmp_path / "warned", "--num_image",
            "1500", "--min_threshold", "0", "--samples_per_class", "0", "--no_decision_table")
    warned = [r.getMessage() for r in caplog.records if "times on average" in r.getMessage()]
    assert warned and all("--max_copies N caps it" in m for m in warned)


def test_an_empty_split_gives_a_valid_empty_output_through_predict_and_select(world, capsys, tmp_path):
    empty = tmp_path / "empty"
    os.makedirs(empty)
    dataset_dir.write_summary(str(empty), {"splits": {"unlabeled": {"records": 0, "files": [], "labels": {}}},
                                           "num_classes": 10})
    _ok(capsys, "predict", "--input", empty, "--model", world["t10"], "--output_dir", tmp_path / "p")
    predicted = dataset_dir.read_summary(str(tmp_path / "p"))
    assert predicted["accounting"] == {"predictions": {"input": 0, "written": 0, "dead_letter": 0}}
    _ok(capsys, "select", "--predictions", tmp_path / "p", "--output_dir", tmp_path / "s", "--num_image", "10")
    selected = dataset_dir.read_summary(str(tmp_path / "s"))
    assert selected["written"] == 0 and selected["accounting"]["predictions"]["input"] == 0


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_odd_images_are_ingested_right_or_dead_lettered_by_name_and_classify_reads_the_same(world, capsys,
                                                                                           tmp_path):
    raw = tmp_path / "raw"
    os.makedirs(raw)
    ramp = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp, "I;16").save(raw / "sixteen.png")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(raw / "photo.webp", lossless=True)
    Image.fromarray(np.full((32, 32, 4), 90, np.uint8), "CMYK").save(raw / "scan.tiff")
    (raw / "bomb.png").write_bytes(_png_claiming(14000, 14000))
    (raw / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    _ok(capsys, "ingest-folder", "--unlabeled_dir", raw, "--output_dir", out)
    summary = dataset_dir.read_summary(str(out))
    assert summary["accounting"]["unlabeled"] == {"input": 5, "written": 3, "dead_letter": 2}
    dead = {os.path.basename(d["path"]): d["reason"]
            for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}
    assert dead["bomb.png"].startswith(str(raw / "bomb.png") + ": 14000x14000 = 196,000,000 pixels, over")
    assert dead["empty.jpg"] == f"{raw / 'empty.jpg'}: empty file (0 bytes)"
    import tensorflow as tf

    stored = {r.image_id.rsplit("/", 1)[1]: tf.io.decode_image(r.encoded, channels=3).numpy()
              for r in map(records.parse_image_record, dataset_dir.iter_split_records(str(out), "unlabeled"))}
    assert 120 < stored["sixteen.png"].mean() < 136 and stored["sixteen.png"].max() == 255  # was white (255)
    assert (stored["photo.webp"] == 200).all()
    assert (stored["scan.tiff"] == round((255 - 90) * (255 - 90) / 255)).all()
    results = {os.path.basename(r["image"]): r for r in cli_classify(world, raw)}
    assert set(results) == {"sixteen.png", "photo.webp", "scan.tiff", "bomb.png", "empty.jpg"}
    assert {name for name, r in results.items() if "top" in r} == {"sixteen.png", "photo.webp", "scan.tiff"}
    assert results["bomb.png"]["error"] == dead["bomb.png"] and results["empty.jpg"]["error"] == dead["empty.jpg"]
    from noisystudent.app import features

    embedded = features.run(["--model", str(world["t10"]), "--layer", "flatten", "--output",
                                      str(tmp_path / "emb.npy"), str(raw)])
    assert embedded["images"] == 3 and sorted(os.path.basename(p) for p in embedded["failed"]) == ["bomb.png",
                                                                                                 "empty.jpg"]


def cli_classify(world, folder) -> list[dict]:
    from noisystudent.app import classify

    return classify.run(["--model", str(world["t10"]), "--json", str(folder)])


def test_a_damaged_manifest_is_named(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"config": {"models": ["cnn-small"')
    code, err = _run(capsys, "report", tmp_path)
    assert code == 1 and f"{tmp_path / 'manifest.json'}: not valid JSON" in err, err


def _many_copies(data, target, copies: int) -> str:
    """A dataset dir whose unlabeled split is `copies` copies of the digits' unlabeled shard (a long run)."""
    os.makedirs(target)
    shard = _shard(data, "unlabeled")
    files = {}
    for i in range(copies):
        name = f"unlabeled-{i:05d}-of-{copies:05d}.tfrecord"
        shutil.copy(shard, os.path.join(target, name))
        files[name] = UNLABELED
    dataset_dir.write_summary(str(target), {"num_classes": 10, "splits": {"unlabeled": {
        "records": UNLABELED * copies, "files": sorted(files), "labels": {"-1": UNLABELED * copies},
        "file_records": files}}})
    return str(target)


def test_a_ctrl_c_that_python_swallows_still_ends_the_job_interrupted(capsys):
    """SIGINT landing inside a __del__ or a gc callback (JAX registers one): Python only prints "Exception
    ignored" and runs on; the job must still end interrupted (no summary.json), without that traceback."""
    from beam_pipelines.job_runner import interrupts_as

    class DroppedAtOnce:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here, inside __del__

    ran_to_the_end, handler = False, signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError, match="interrupted: out is left incomplete"):
        with interrupts_as(RuntimeError("interrupted: out is left incomplete")):
            DroppedAtOnce()
            ran_to_the_end = True
    assert ran_to_the_end and signal.getsignal(signal.SIGINT) is handler  # the one it found, restored
    assert "Exception ignored" not in capsys.readouterr().err


def test_ctrl_c_ends_with_one_line_leaves_nothing_complete_and_the_next_run_starts_clean(world, tmp_path):
    """SIGINT mid-run, as a terminal sends it: exit 130, one line, no summary.json, no Beam temp dirs
    (in the output or the system's temp folder); the same command then runs clean."""
    data = _many_copies(world["data"], tmp_path / "many", 20)
    out, scratch = tmp_path / "p", tmp_path / "tmp"
    os.makedirs(scratch)
    argv = [sys.executable, "-m", "noisystudent.app.cli", "predict", "--input", data, "--model", str(world["t10"]),
            "--output_dir", str(out), "--batch_size", "16"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(scratch))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list(out.glob("beam-temp-*")):  # the pipeline is running: its sinks made their temp dirs
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    ours = [line for line in err.splitlines() if line.startswith("noisystudent")]
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert ours == [f"noisystudent predict: error: interrupted: {out} is left incomplete (no summary.json); "
                    "run the same command again to start it clean"]
    assert not (out / "summary.json").exists() and not list(out.glob("beam-temp-*"))
    assert not list(scratch.glob("beam-pipeline-temp*"))
    finished = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert dataset_dir.read_summary(str(out))["accounting"]["predictions"]["written"] == 20 * UNLABELED
