"""`noisystudent report`: one self-contained page per loop run, rendered by a real headless browser."""

import os
import re
import shutil
import subprocess

import pytest

from noisystudent.app import loop, report
from tests.digits_data import make_digits_dataset

TINY = {"image_size": 16, "batch_size": 16, "unlabel_ratio": 2, "train_steps": 20, "steps_per_epoch": 10,
        "warmup_steps": 0, "randaugment_ops": 1, "verbose": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = make_digits_dataset(tmp_path_factory.mktemp("digits"), labels_per_class=5, test_size=200)
    out = tmp_path_factory.mktemp("run")
    loop.run_loop(loop.LoopConfig(data=data, run_dir=str(out), models=["cnn-small"] * 2, num_image=60,
                                  min_threshold=0.0, train_overrides=TINY))
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
