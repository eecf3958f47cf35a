"""A zip whose central directory alone would fill the function's memory is refused before ``zipfile`` parses it:
by what its end records declare, and by counting its entries a header at a time when they lie."""
from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile

import pytest

from sightline.datasets import archive, store

LIMIT = 200_000  # MAX_ARCHIVE_MEMBERS' default


def directory_of(entries: int, *, declared: int | None = None, zip64: bool = False) -> bytes:
    """A zip of ``entries`` central-directory entries (all named ``a.png``, no data) whose end records declare
    ``declared`` entries (the truth by default)."""
    name = b"a.png"
    entry = b"PK\x01\x02" + struct.pack("<HHHHHHLLLHHHHHLL", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0) + name
    directory = entry * entries
    count = entries if declared is None else declared
    if not zip64:
        return directory + b"PK\x05\x06" + struct.pack("<HHHHLLH", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                                                       len(directory), 0, 0)
    record = b"PK\x06\x06" + struct.pack("<QHHLLQQQQ", 44, 45, 45, 0, 0, count, count, len(directory), 0)
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, len(directory), 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHLLH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return directory + record + locator + end


def refused_with_peak(data: bytes) -> tuple[str, int]:
    """The refusal's reason and the memory allocated while reaching it (the archive's own bytes not counted)."""
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        with pytest.raises(archive.ArchiveRejected) as refusal:
            list(archive.entries(stream, "a.zip", max_members=LIMIT, max_total_bytes=1 << 40, max_member_bytes=1 << 26))
        return str(refusal.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_four_million_declared_entries_are_refused_from_the_zip64_end_record_alone():
    reason, peak = refused_with_peak(directory_of(0, declared=4_000_000, zip64=True))
    assert reason == f"archive has 4000000 entries, more than the limit of {LIMIT}"
    assert peak < 1 << 20


def test_a_real_directory_of_300000_entries_is_refused_by_its_declared_count():
    reason, peak = refused_with_peak(directory_of(300_000, zip64=True))
    assert reason == f"archive has 300000 entries, more than the limit of {LIMIT}"
    assert peak < 1 << 20


def test_a_directory_that_lies_about_its_300000_entries_is_counted_without_parsing_it():
    data = directory_of(300_000, declared=10)
    reason, peak = refused_with_peak(data)
    assert reason == f"archive's central directory holds more than {LIMIT} entries, the limit"
    # A block of the directory at a time: zipfile would have built 300,000 ZipInfo objects (hundreds of MB).
    assert peak < 8 << 20


def test_the_count_walks_a_real_zip_and_leaves_it_readable():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as written:
        for number in range(50):
            written.writestr(f"cat/{number}.png", b"x" * number, compress_type=zipfile.ZIP_STORED)
    lying = bytearray(buffer.getvalue())
    struct.pack_into("<HH", lying, lying.rfind(b"PK\x05\x06") + 8, 1, 1)  # its end record now declares one entry
    stream = io.BytesIO(bytes(lying))
    archive.check_central_directory(stream, max_members=50)
    assert stream.tell() == 0
    with pytest.raises(archive.ArchiveRejected, match="holds more than 49 entries"):
        archive.check_central_directory(io.BytesIO(bytes(lying)), max_members=49)
    archive.check_central_directory(buffer, max_members=50)
    assert buffer.tell() == 0 and len(zipfile.ZipFile(buffer).namelist()) == 50


def test_the_refusal_is_an_issue_on_the_dataset(datasets):
    datasets.register("datasets/huge/lying.zip", directory_of(300_000, declared=10))
    dataset = store.get_dataset("huge")
    assert dataset["status"] == "invalid"
    assert dataset["issues"] == [{"key": "datasets/huge/lying.zip",
                                  "reason": f"archive's central directory holds more than {LIMIT} entries, the limit"}]
