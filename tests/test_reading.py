"""Reading input files: Beam's TFRecord codec with damage reported, and the read-ahead thread."""

import threading
import time

import pytest

from beam_pipelines.read_ahead import read_ahead
from beam_pipelines.tfrecord_reader import DamagedTFRecordFile, read_tfrecords
from noisystudent.errors import DamagedInputError
from tests.tfrecord_files import write_tfrecord


def test_records_come_back_in_order_and_damage_names_the_file_and_the_record(tmp_path):
    records = [f"record {i}".encode() * (i + 1) for i in range(50)]
    write_tfrecord(tmp_path / "a.tfrecord", records)
    assert list(read_tfrecords(str(tmp_path / "a.tfrecord"))) == records
    data = (tmp_path / "a.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[:-30])  # the last record loses its end
    flipped = bytearray(data)
    flipped[40] ^= 0xFF  # a byte inside the second record's data: its CRC no longer matches
    (tmp_path / "flipped.tfrecord").write_bytes(bytes(flipped))
    for name, good in (("cut", 49), ("flipped", 1)):
        read = []
        with pytest.raises(DamagedTFRecordFile, match=rf"{name}.tfrecord: {good} records readable: unreadable "
                                                      rf"TFRecord data after record {good}: Not a valid TFRecord") as e:
            for record in read_tfrecords(str(tmp_path / f"{name}.tfrecord")):
                read.append(record)
        assert read == records[:good] and e.value.records_read == good
    with pytest.raises(FileNotFoundError):
        list(read_tfrecords(str(tmp_path / "missing.tfrecord")))


def test_a_declared_count_catches_a_file_cut_at_a_record_boundary_or_grown_since(tmp_path):
    records = [f"record {i}".encode() for i in range(20)]
    write_tfrecord(tmp_path / "short.tfrecord", records[:12])  # reads cleanly: only the count tells
    assert len(list(read_tfrecords(str(tmp_path / "short.tfrecord")))) == 12
    with pytest.raises(DamagedTFRecordFile, match=r"short.tfrecord: 12 records readable of the 20 its dataset's "
                                                  r"summary.json declares: the file ends early") as e:
        list(read_tfrecords(str(tmp_path / "short.tfrecord"), expected=20))
    assert e.value.records_lost == 8
    read = []
    with pytest.raises(DamagedInputError, match="holds more records than the 10"):
        for record in read_tfrecords(str(tmp_path / "short.tfrecord"), expected=10):
            read.append(record)
    assert read == records[:10]  # nothing past the declared count
    assert list(read_tfrecords(str(tmp_path / "short.tfrecord"), expected=12)) == records[:12]


def test_read_ahead_yields_everything_in_order_and_runs_ahead_of_its_consumer():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    consumed = []
    for item in read_ahead(items, depth=3):
        time.sleep(0.01)
        consumed.append(item)
        if item == 0:
            time.sleep(0.2)
            assert len(produced) >= 3  # filled its queue while this thread was busy
    assert consumed == list(range(10))


def test_read_ahead_raises_the_producers_error_in_the_consumer():
    def items():
        yield 1
        raise ValueError("bad record 2")

    got = []
    with pytest.raises(ValueError, match="bad record 2"):
        for item in read_ahead(items):
            got.append(item)
    assert got == [1]


def test_a_consumer_that_stops_early_stops_the_producer():
    stopped = threading.Event()

    def items():
        try:
            for i in range(10_000):
                yield i
        finally:
            stopped.set()

    generator = read_ahead(items, depth=2)
    assert next(generator) == 0
    generator.close()
    assert stopped.wait(5)
