"""`noisystudent demo`, reduced: one seed, one iteration (the full demo: three seeds, two iterations)."""

import json

from noisystudent.app import demo


def test_reduced_demo_prints_the_table_and_keeps_its_results(tmp_path, capsys):
    result = demo.run(["--run_dir", str(tmp_path), "--seeds", "2", "--iterations", "1"])
    out = capsys.readouterr().out
    assert "teacher (labeled only)" in out and "student of iter0" in out and "gain of the last student" in out
    assert "ceiling (all labels)" in out
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert [r["iteration"] for r in saved["rows"]] == [0, 1]
    assert saved["rows"][1]["pseudo_labeled"] > 500
    assert all((tmp_path / "seed2" / "loop" / "iter1" / "pseudo" / p).exists()
               for p in ("histograms.png", "samples.png", "stats.json"))
    assert result["rows"][0]["labeled"] == 100
    # The loop's selection floor (experiment.LOOP_SELECT_DEFAULTS), not select's own 0.3.
    stats = json.loads((tmp_path / "seed2" / "loop" / "iter1" / "pseudo" / "stats.json").read_text())
    assert stats["min_threshold"] == 0.7 and min(c["threshold"] for c in stats["classes"]) >= 0.7
    # The ceiling: the same model on every label outside the same 500 test images (1,797 - 500).
    assert saved["ceiling"]["labeled"] == 1297 and 0 < saved["ceiling"]["mean_top1"] <= 1
    # The method's gain, on this seed, at the preset's steps: the noised student beats the equally
    # noised teacher (95.4 -> 99.0 when measured; the margin leaves room for run-to-run noise).
    teacher, student = (r["mean_top1"] for r in saved["rows"])
    # The digits keep their true classes hidden: the table reports how many kept pseudo-labels are right.
    assert 0.5 < saved["rows"][1]["mean_precision"] <= 1 and len(saved["rows"][1]["mean_class_precision"]) == 10
    assert "kept pseudo-labels that match the image's hidden true class" in out
    assert student >= teacher + 0.01, (teacher, student)
