"""Read a TFRecord file record by record, local or gs://, and say where it is damaged.

Beam's own TFRecord codec (what ReadFromTFRecord runs; CRC-checked, google-crc32c
in C) over Beam's FileSystems. Opening a file costs nothing, unlike a
tf.data pipeline per file, which took 20 ms idle and ~100 ms beside a running
model on 2 cores (docs/design.md, "Predict throughput").

A file is damaged when the codec cannot read on (truncated mid-record, bad CRC, not a
TFRecord file) or, where its dataset's summary.json declares the shard's record count, when it
ends before (or runs past) that count: a shard cut exactly at a record boundary reads cleanly
and is caught only by the count.
"""

from __future__ import annotations

from typing import Iterator, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil  # the codec ReadFromTFRecord uses (beam pinned <2.78)

from noisystudent.errors import DamagedInputError

ALLOW_FLAG = "--allow_damaged_input"
ALLOW_DAMAGED_HELP = ("Dead-letter the unreadable part of a damaged input shard (with the records lost) and go on; "
                      "default: stop, naming the shard.")


class DamagedTFRecordFile(ValueError):
    """A TFRecord file is unreadable after `records_read` good records (of `expected`, if declared)."""

    def __init__(self, path: str, records_read: int, reason: str, expected: Optional[int] = None):
        self.path, self.records_read, self.expected = path, records_read, expected
        declared = "" if expected is None else f" of the {expected:,} its dataset's summary.json declares"
        super().__init__(f"{path}: {records_read:,} records readable{declared}: {reason[:200]}")

    @property
    def records_lost(self) -> int:
        """Records of the file that cannot be read: from the declared count, else "at least one"."""
        return max(1, self.expected - self.records_read) if self.expected is not None else 1


def read_tfrecords(path: str, expected: Optional[int] = None) -> Iterator[bytes]:
    """Yield the records of one TFRecord file; DamagedTFRecordFile at the first bad one, or where the
    file holds other than `expected` records (when given)."""
    records_read = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while True:
            try:
                record = _TFRecordUtil.read_record(handle)
            except ValueError as e:
                reason = str(e).split(": b'")[0][:120]  # the codec appends the bytes it found, in hex
                raise DamagedTFRecordFile(path, records_read, f"unreadable TFRecord data after record "
                                                              f"{records_read}: {reason}", expected) from None
            if record is None:
                if expected is not None and records_read < expected:
                    raise DamagedTFRecordFile(path, records_read, "the file ends early (truncated at a record "
                                                                  "boundary?)", expected)
                return
            if expected is not None and records_read == expected:
                raise DamagedInputError(f"{path}: holds more records than the {expected:,} its dataset's "
                                        "summary.json declares: the file changed after its job finished")
            records_read += 1
            yield record


def damaged_file_dead_letter(error: DamagedTFRecordFile, allow_damaged: bool, **fields) -> dict:
    """The dead letter for a damaged file's unreadable tail (counting as the records lost), or, unless
    `allow_damaged`, DamagedInputError: one damaged shard stops the job, naming it and both counts."""
    if not allow_damaged:
        raise DamagedInputError(f"{error}; pass {ALLOW_FLAG} to dead-letter the unreadable part and go on") from None
    return {"id": "", "source": error.path, "records": error.records_lost,
            "reason": f"damaged input file, {error.records_lost:,} record(s) lost: {error}", **fields}
