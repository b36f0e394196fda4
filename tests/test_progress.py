"""Progress lines for long local work: rate, and an ETA when the total is known and one worker runs."""

import logging

from beam_pipelines.progress import Progress, is_local


def test_progress_logs_rate_and_eta_at_intervals(caplog):
    now = [100.0]
    progress = Progress("predict: labelled", "images", total=10_000, every_s=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="beam_pipelines.progress"):
        progress.add(256)  # starts the clock
        now[0] += 10
        progress.add(1000)  # within 30 s: no line
        now[0] += 30
        progress.add(1744)  # 3,000 in 40 s: 75/s, 7,000 left -> 93 s
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["predict: labelled: 3,000 of 10,000 images (30.0%), 75 images/s, ETA 0:01:33"]
    unknown = Progress("select: read predictions", "predictions", clock=lambda: now[0])
    unknown.add(5)
    now[0] += 1
    assert unknown.line(now[0]) == "select: read predictions: 5 predictions, 5 predictions/s"


def test_an_eta_only_where_one_local_worker_does_everything():
    assert is_local([]) and is_local(["--runner=FnApiRunner", "--direct_num_workers=1"])
    assert not is_local(["--runner=DataflowRunner"])
    assert not is_local(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
