"""`noisystudent report`: one self-contained page per loop run, rendered by a real headless browser."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from noisystudent.app import loop, report
from noisystudent.app.experiment import Experiment
from tests.digits_data import make_digits_dataset

TINY = {"image_size": 16, "batch_size": 16, "unlabel_ratio": 2, "train_steps": 20, "steps_per_epoch": 10,
        "warmup_steps": 0, "randaugment_ops": 1, "verbose": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = make_digits_dataset(tmp_path_factory.mktemp("digits"), labels_per_class=5, test_size=200)
    out = tmp_path_factory.mktemp("run")
    loop.run_loop(loop.LoopConfig(Experiment(data=data, models=["cnn-small"] * 2, train=TINY,
                                             select={"num_image": 60, "min_threshold": 0.0}), str(out)))
    return out


def test_the_loop_writes_a_self_contained_report_with_every_section(run_dir):
    page = (run_dir / report.REPORT_FILE).read_text()  # written by the loop at its end
    for section in report.SECTIONS:
        assert f'<section id="{section}">' in page
    assert 'id="selection-iter1"' in page and "iter1/student" in page
    # Histograms, kept samples and the rejected-but-close samples, embedded (60 per class of ~150 unlabeled
    # images each: every class's threshold rises above 0, so some rejected images sit just below it).
    assert (run_dir / "iter1" / "pseudo" / "near_misses.png").exists()
    assert page.count("data:image/png;base64,") == 3 and "Rejected but close" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external asset
    assert report.build_report(str(run_dir)) == page


class _Tables(HTMLParser):
    """The page's tables as lists of rows of cell texts, in order."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None


def test_the_reports_numbers_are_the_manifests_eval_and_stats_files(run_dir):
    parser = _Tables()
    parser.feed((run_dir / report.REPORT_FILE).read_text())
    models, per_class, *selections, timings, lineage = parser.tables
    manifest = json.loads((run_dir / "manifest.json").read_text())
    trained = [name for name in manifest["steps"] if name.endswith(("/teacher", "/student"))]
    assert [row[0] for row in models[1:]] == trained == ["iter0/teacher", "iter1/student"]
    for row in models[1:]:
        evaluation = json.loads((Path(manifest["steps"][row[0]]["output"]) / "eval.json").read_text())
        assert row[1:] == [evaluation["model"], evaluation["mode"], f"{100 * evaluation['top1_accuracy']:.1f}%",
                           str(evaluation["num_examples"])]
        by_class = dict(zip(per_class[0][1:], next(r for r in per_class if r[0] == row[0])[1:]))
        assert by_class == {c: f"{100 * v['accuracy']:.1f}%" for c, v in evaluation["per_class"].items()}
    (selection,) = selections
    stats = json.loads((run_dir / "iter1" / "pseudo" / "stats.json").read_text())
    assert selection[1:] == [[r["name"], f"{r['threshold']:.2f}", str(r["total_above_threshold"]),
                              str(r["kept_unique"]), str(r["written"]), f"{100 * r['pseudo_label_precision']:.1f}%"
                              if r.get("pseudo_label_precision") is not None else ""] for r in stats["classes"]]
    assert [row[0] for row in timings[1:]] == list(manifest["steps"])
    assert [float(row[3]) for row in timings[1:]] == [step["seconds"] for step in manifest["steps"].values()]
    assert [row[0] for row in lineage[1:]] == list(manifest["steps"])


def test_the_report_renders_in_headless_chromium(run_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        # .ci/run sets NOISYSTUDENT_BROWSER_TEST=required once it has installed Debian's chromium.
        assert not os.environ.get("NOISYSTUDENT_BROWSER_TEST"), "chromium was installed but is not on PATH"
        pytest.skip("Debian's chromium is not installed (the README's test command installs it)")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                             (run_dir / report.REPORT_FILE).as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for section in report.SECTIONS:
        assert f'<section id="{section}">' in dom, section
    assert dom.count("<img") == 3 and "Selection per iteration" in dom


def test_a_directory_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        report.build_report(str(tmp_path))
