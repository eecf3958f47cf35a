"""A zip's central directory is sized from its end records before ``zipfile`` parses it into memory."""
from __future__ import annotations

import io
import struct
import zipfile

import pytest

from sightline.datasets import archive
from sightline.datasets import store
from support import make_zip, png


def _claiming(entries: int, directory_bytes: int, *, zip64: bool = False) -> bytes:
    """A file whose end of central directory record claims ``entries`` entries (nothing else is valid)."""
    if not zip64:
        return b"junk" * 10 + b"PK\x05\x06" + struct.pack("<HHHHLLH", 0, 0, min(entries, 0xFFFF),
                                                         min(entries, 0xFFFF), directory_bytes, 40, 0)
    body = b"junk" * 10
    record_offset = len(body)
    record = b"PK\x06\x06" + struct.pack("<QHHLLQQQQ", 44, 45, 45, 0, 0, entries, entries, directory_bytes, 40)
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, record_offset, 1)
    eocd = b"PK\x05\x06" + struct.pack("<HHHHLLH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + eocd


@pytest.mark.parametrize("zip64", [False, True])
def test_a_directory_of_millions_of_entries_is_refused_from_its_end_records(zip64):
    data = _claiming(4_000_000 if zip64 else 60_000, 200 * 1024 * 1024 if zip64 else 3_000_000, zip64=zip64)
    with pytest.raises(archive.ArchiveRejected, match="entries, more than the limit of 50000"):
        archive.check_central_directory(io.BytesIO(data), max_members=50_000)


def test_an_ordinary_zip_passes_and_is_left_at_its_start():
    stream = io.BytesIO(make_zip({"cat/1.png": png(1)}))
    archive.check_central_directory(stream, max_members=10)
    assert stream.tell() == 0 and zipfile.ZipFile(stream).namelist() == ["cat/1.png"]


def test_a_zip_over_the_member_limit_is_an_issue_on_the_dataset(datasets, settings_env):
    settings_env(MAX_ARCHIVE_MEMBERS="3")
    datasets.register("datasets/many/a.zip", make_zip({f"cat/{n}.png": png(n) for n in range(5)}))
    dataset = store.get_dataset("many")
    assert dataset["status"] == "invalid"
    assert dataset["issues"] == [{"key": "datasets/many/a.zip", "reason": "archive has 5 entries, more than the limit of 3"}]
