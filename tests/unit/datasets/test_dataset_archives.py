from __future__ import annotations

import io
import stat
import struct
import tracemalloc
import zipfile

from sightline.datasets import store
from sightline_local import synthetic
from dataset_helpers import reasons_for, solid_image
from support import make_zip, png

ARCHIVE = "datasets/x/a.zip"


def _member(name: str) -> str:
    return f"{ARCHIVE}!{name}"


def _zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _artifact_keys(resources) -> list[str]:
    listing = resources.s3.list_objects_v2(Bucket=resources.artifact_bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_unsafe_member_names_and_symlinks_are_rejected_per_member(datasets):
    link = zipfile.ZipInfo("cat/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip_with(
        [
            ("cat/good.png", png(1)),
            ("cat/also-good.png", png(2)),
            ("../evil.png", png(3)),
            ("cat/../../escape.png", png(4)),
            ("/etc/absolute.png", png(5)),
            ("C:/windows/drive.png", png(6)),
            ("..\\backslash.png", png(7)),
            (link, b"../../../etc/passwd"),
        ]
    )

    outcome = datasets.register(ARCHIVE, archive)

    assert outcome["status"] == "registered"
    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"cat": 2}
    assert "path traversal" in reasons_for(dataset, _member("../evil.png"))[0]
    assert "path traversal" in reasons_for(dataset, _member("cat/../../escape.png"))[0]
    assert "path traversal" in reasons_for(dataset, _member("..\\backslash.png"))[0]
    assert "absolute paths" in reasons_for(dataset, _member("/etc/absolute.png"))[0]
    assert "absolute paths" in reasons_for(dataset, _member("C:/windows/drive.png"))[0]
    assert "symbolic links" in reasons_for(dataset, _member("cat/link.png"))[0]
    assert dataset["issue_count"] == 6
    # Only content-addressed images and the parse result were written; no name from the archive became a key.
    assert all(key.startswith(("images/", "registry/datasets/x/sources/")) for key in _artifact_keys(datasets.resources))
    assert len([key for key in _artifact_keys(datasets.resources) if key.startswith("images/")]) == 2


def test_zip_bomb_member_is_rejected_without_decompressing_it(datasets):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("cat/good.png", png(1))
        with archive.open("cat/bomb.png", "w") as bomb:
            zeros = bytes(1024 * 1024)
            for _ in range(48):
                bomb.write(zeros)
    data = buffer.getvalue()
    assert len(data) < 200_000  # 48 MiB squeezed into a few dozen KiB

    tracemalloc.start()
    try:
        datasets.register(ARCHIVE, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 24 * 1024 * 1024  # the 48 MiB member never sat in memory
    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"cat": 1}
    assert "zip bomb" in reasons_for(dataset, _member("cat/bomb.png"))[0]


def test_archive_expanding_beyond_the_limit_is_rejected(datasets, settings_env):
    settings_env(MAX_ARCHIVE_BYTES="100000")
    archive = make_zip({f"cat/{n}.bmp": solid_image("BMP", (200, 200)) for n in range(3)})
    assert len(archive) < 100_000

    outcome = datasets.register(ARCHIVE, archive)

    assert outcome["status"] == "invalid"
    dataset = store.get_dataset("x")
    assert dataset["images"] == 0
    assert "expands to" in reasons_for(dataset, ARCHIVE)[0]


def test_archive_with_too_many_members_is_rejected_and_keeps_other_data(datasets, settings_env):
    datasets.register("datasets/x/cat/loose.png", png(99))
    settings_env(MAX_ARCHIVE_MEMBERS="5")

    outcome = datasets.register(ARCHIVE, synthetic.classification_zip(per_class=4))

    assert outcome["status"] == "invalid"
    dataset = store.get_dataset("x")
    assert dataset["images"] == 1 and dataset["classes"] == {"cat": 1}
    assert reasons_for(dataset, ARCHIVE) == ["archive has 8 entries, more than the limit of 5"]


def test_overlapping_entries_are_rejected(datasets):
    archive = bytearray(make_zip({"cat/a.png": png(1), "cat/b.png": png(2)}))
    # Point the second central directory entry at the first entry's data, the way overlap bombs do.
    second = archive.index(b"PK\x01\x02", archive.index(b"PK\x01\x02") + 4)
    archive[second + 42 : second + 46] = struct.pack("<I", 0)

    datasets.register(ARCHIVE, bytes(archive))

    dataset = store.get_dataset("x")
    assert dataset["images"] == 0
    assert "overlap" in reasons_for(dataset, ARCHIVE)[0]


def test_nested_archives_and_unsupported_members_are_issues(datasets):
    archive = make_zip({"cat/a.png": png(1), "inner.zip": make_zip({"cat/b.png": png(2)}), "notes.doc": b"x"})

    datasets.register(ARCHIVE, archive)

    dataset = store.get_dataset("x")
    assert dataset["images"] == 1
    assert reasons_for(dataset, _member("inner.zip")) == ["archives inside archives are not supported"]
    assert reasons_for(dataset, _member("notes.doc")) == ["unsupported file type .doc"]


def test_stored_and_bzip2_members_are_read(datasets):
    datasets.register("datasets/x/stored.zip", make_zip({"cat/a.png": png(1)}, compression=zipfile.ZIP_STORED))
    datasets.register("datasets/x/bzip.zip", make_zip({"dog/a.png": png(2)}, compression=zipfile.ZIP_BZIP2))

    assert store.get_dataset("x")["classes"] == {"cat": 1, "dog": 1}


def test_member_with_a_bad_checksum_is_an_issue(datasets):
    good = png(2)
    archive = bytearray(make_zip({"cat/a.png": png(1), "cat/b.png": good}, compression=zipfile.ZIP_STORED))
    position = archive.index(good) + len(good) // 2
    archive[position] ^= 0xFF  # corrupt the stored bytes: the CRC no longer matches

    datasets.register(ARCHIVE, bytes(archive))

    dataset = store.get_dataset("x")
    assert dataset["images"] == 1
    assert reasons_for(dataset, _member("cat/b.png"))[0].startswith("member cannot be decompressed")


def test_empty_archive_is_an_issue(datasets):
    outcome = datasets.register(ARCHIVE, make_zip({}))

    assert outcome["status"] == "invalid"
    assert reasons_for(store.get_dataset("x"), ARCHIVE) == ["archive holds no images or annotation files"]
