"""Defensive archive reading (zip, tar, tar.gz): members are checked by name and header before a byte is
decompressed.

Nothing is ever extracted to disk; member names are only used as labels and lookup paths, but unsafe names are
still rejected so that a crafted archive cannot smuggle paths into the dataset. Whole-archive limits (entry
count, total expanded size, overlapping entries, compression ratio) reject the archive; per-member problems
(traversal, absolute paths, links, devices, bombs) reject the member. ``entries`` is the one way to read either
kind: zips by their central directory, tars as the stream they are.
"""
from __future__ import annotations

import io
import lzma
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

# Ordinary files rarely compress beyond 100:1 (images hardly compress at all); bombs reach 1000:1 and more.
MAX_COMPRESSION_RATIO = 100
# Small members cannot hurt whatever their ratio (a 1 KiB all-white BMP compresses 200:1).
RATIO_CHECK_MIN_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
# The fixed part of a local file header; the data of an entry starts at least this far after its header.
_LOCAL_HEADER_BYTES = 30
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class ArchiveRejected(ValueError):
    """The archive as a whole cannot be used; the message is the issue's reason."""


class MemberRejected(ValueError):
    """One member cannot be used; the message is the issue's reason."""


@dataclass(frozen=True)
class ArchiveMember:
    path: str  # normalised: forward slashes, no empty or "." segments
    info: zipfile.ZipInfo
    index: int = 0  # position in the central directory


@dataclass
class ArchiveListing:
    members: list[ArchiveMember] = field(default_factory=list)
    rejected: list[tuple[str, str, int]] = field(default_factory=list)  # (name as stored, reason, index)


def open_zip(fileobj: IO[bytes], *, max_members: int | None = None) -> zipfile.ZipFile:
    if max_members is not None:
        check_central_directory(fileobj, max_members=max_members)
    try:
        return zipfile.ZipFile(fileobj)
    except (ClientError, BotoCoreError):
        raise  # reading S3 failed: that is not the archive's fault
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as error:
        raise ArchiveRejected(f"not a readable zip archive: {error}") from None


def safe_member_path(name: str) -> str:
    """The normalised path of a member, or ``MemberRejected`` for names that escape the archive root."""
    if "\x00" in name:
        raise MemberRejected("member name contains a NUL character")
    # Old Windows tools write backslashes; treat them as separators so "..\\x" is seen for what it is.
    name = name.replace("\\", "/")
    if name.startswith("/") or _DRIVE_LETTER.match(name):
        raise MemberRejected("absolute paths are not allowed in archives")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise MemberRejected("path traversal ('..') is not allowed in archives")
    if not parts:
        raise MemberRejected("member has an empty name")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix tools store st_mode in the high 16 bits of the external attributes.
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_layout(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Entries whose data overlap (several headers pointing into one compressed stream) are a bomb technique."""
    ordered = sorted(infos, key=lambda info: info.header_offset)
    end_of_data = getattr(archive, "start_dir", None)
    for current, following in zip(ordered, ordered[1:] + [None]):
        data_end = current.header_offset + _LOCAL_HEADER_BYTES + current.compress_size
        limit = following.header_offset if following is not None else end_of_data
        if limit is not None and data_end > limit:
            raise ArchiveRejected("archive entries overlap (a zip bomb technique)")


def list_members(archive: zipfile.ZipFile, *, max_members: int, max_total_bytes: int) -> ArchiveListing:
    """The members that are safe to read, and the reason for each one that is not.

    Raises ``ArchiveRejected`` when the archive exceeds the entry or expanded-size limits or is malformed.
    """
    infos = archive.infolist()
    if len(infos) > max_members:
        raise ArchiveRejected(f"archive has {len(infos)} entries, more than the limit of {max_members}")
    files = [info for info in infos if not info.is_dir()]
    total = sum(info.file_size for info in files)
    if total > max_total_bytes:
        raise ArchiveRejected(f"archive expands to {total} bytes, more than the limit of {max_total_bytes}")
    _check_layout(archive, infos)

    listing = ArchiveListing()
    seen: set[str] = set()
    for index, info in enumerate(infos):
        if info.is_dir():
            continue
        try:
            path = safe_member_path(info.filename)
            if _is_symlink(info):
                raise MemberRejected("symbolic links are not allowed in archives")
            if info.flag_bits & 0x1:
                raise MemberRejected("encrypted members are not supported")
            if info.compress_type not in _SUPPORTED_METHODS:
                raise MemberRejected(f"unsupported compression method {info.compress_type}")
            if info.file_size > RATIO_CHECK_MIN_BYTES:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > MAX_COMPRESSION_RATIO:
                    raise MemberRejected(
                        f"compression ratio {ratio:.0f}:1 ({info.file_size} bytes from {info.compress_size}) "
                        "looks like a zip bomb"
                    )
            if path in seen:
                raise MemberRejected("duplicate member name")
        except MemberRejected as rejection:
            listing.rejected.append((info.filename, str(rejection), index))
            continue
        seen.add(path)
        listing.members.append(ArchiveMember(path=path, info=info, index=index))
    return listing


def read_member(archive: zipfile.ZipFile, member: ArchiveMember, *, max_bytes: int) -> bytes:
    """The member's bytes, streamed and cut off at ``max_bytes`` whatever its header claims."""
    if member.info.file_size > max_bytes:
        raise MemberRejected(f"member is {member.info.file_size} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(member.info) as stream:
            while chunk := stream.read(_READ_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise MemberRejected(f"member expands beyond the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except MemberRejected:
        raise
    except (ClientError, BotoCoreError):
        raise  # the S3 read failed (throttling, object replaced): retry or give up, never blame the member
    except (
        zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError, ValueError
    ) as error:
        # Bad CRC, truncated stream, corrupt deflate/bzip2/lzma data: the member is broken, the rest may be fine.
        raise MemberRejected(f"member cannot be decompressed: {error}") from None
    return b"".join(chunks)


# ---------------------------------------------------------------- before the central directory is parsed

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_EOCD_SEARCH_BYTES = 22 + 65535  # the fixed record plus the longest comment
# A central directory entry is 46 bytes plus its name and extra fields: a generous bound per allowed member.
_MAX_DIRECTORY_BYTES_PER_MEMBER = 46 + 2 * 1024


def check_central_directory(fileobj: IO[bytes], *, max_members: int) -> None:
    """Refuse a zip whose central directory holds more entries (or bytes) than ``max_members`` allows before
    ``zipfile`` builds every entry in memory: first from what its end records declare, then by counting the
    entries themselves (end records can lie), a header at a time, never holding more than a block of it.
    """
    try:
        size = fileobj.seek(0, io.SEEK_END)
        start = max(0, size - _EOCD_SEARCH_BYTES)
        fileobj.seek(start)
        tail = fileobj.read(size - start)
    except (OSError, ValueError):
        return  # unreadable: zipfile says so in its own words
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) < at + 22:
        return  # not a zip (or a damaged one): zipfile's error is the clearer one
    entries, directory_bytes = struct.unpack("<HL", tail[at + 10: at + 16])
    directory_end = start + at  # the central directory ends where the end records start
    locator = tail.rfind(_ZIP64_LOCATOR, 0, at)
    if locator >= 0 and len(tail) >= locator + 20:
        (record_offset,) = struct.unpack("<Q", tail[locator + 8: locator + 16])
        try:
            fileobj.seek(record_offset)
            record = fileobj.read(56)
        except (OSError, ValueError):
            record = b""
        if record[:4] == _ZIP64_EOCD and len(record) >= 56:
            entries, directory_bytes = struct.unpack("<QQ", record[32:48])
            directory_end = record_offset  # the zip64 end record follows the directory
    if entries > max_members:
        raise ArchiveRejected(f"archive has {entries} entries, more than the limit of {max_members}")
    if directory_bytes > max_members * _MAX_DIRECTORY_BYTES_PER_MEMBER:
        raise ArchiveRejected(f"archive's central directory is {directory_bytes} bytes, too large to read")
    if 0 <= directory_end - directory_bytes:
        _count_directory_entries(fileobj, directory_end - directory_bytes, directory_bytes, max_members=max_members)
    fileobj.seek(0)


_DIRECTORY_ENTRY = b"PK\x01\x02"
_DIRECTORY_HEADER_BYTES = 46
_DIRECTORY_BLOCK_BYTES = 1024 * 1024


def _count_directory_entries(fileobj: IO[bytes], offset: int, length: int, *, max_members: int) -> None:
    """Walk the central directory's entry headers (46 bytes plus name, extra and comment each), counting them;
    refuse the archive as soon as there are more than ``max_members``. Stops quietly where the entries stop
    making sense: ``zipfile`` then reports the damage in its own words."""
    try:
        fileobj.seek(offset)
    except (OSError, ValueError):
        return
    count = 0
    buffer = b""
    position = 0  # in buffer
    remaining = length
    while True:
        if len(buffer) - position < _DIRECTORY_HEADER_BYTES and remaining > 0:
            block = fileobj.read(min(_DIRECTORY_BLOCK_BYTES, remaining))
            if not block:
                return
            remaining -= len(block)
            buffer, position = buffer[position:] + block, 0
            continue
        if len(buffer) - position < _DIRECTORY_HEADER_BYTES or buffer[position:position + 4] != _DIRECTORY_ENTRY:
            return
        name_bytes, extra_bytes, comment_bytes = struct.unpack_from("<HHH", buffer, position + 28)
        count += 1
        if count > max_members:
            raise ArchiveRejected(f"archive's central directory holds more than {max_members} entries, the limit")
        position += _DIRECTORY_HEADER_BYTES + name_bytes + extra_bytes + comment_bytes
        if position > len(buffer):  # the entry's variable part runs past the block: skip what is not read yet
            skip = position - len(buffer)
            if skip > remaining:
                return
            try:
                fileobj.seek(skip, io.SEEK_CUR)
            except (OSError, ValueError):
                return
            remaining -= skip
            buffer, position = b"", 0


# ---------------------------------------------------------------- one way through zips and tars

TAR_ENDINGS = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Entry:
    """A member that passed the checks; ``read(max_bytes)`` gives its bytes (``MemberRejected`` past the cap)."""

    path: str
    size: int
    read: Callable[[int], bytes]


@dataclass(frozen=True)
class RefusedMember:
    name: str  # as stored in the archive
    reason: str


def is_tar(key: str) -> bool:
    return key.lower().endswith(TAR_ENDINGS)


def entries(
    fileobj: IO[bytes], key: str, *, max_members: int, max_total_bytes: int, max_member_bytes: int,
    member_range: tuple[int, int] | None = None,
) -> Iterator[Entry | RefusedMember]:
    """The members of the archive at ``key`` in order, each checked; ``ArchiveRejected`` ends the iteration
    when the archive as a whole cannot be used (what was yielded before stays valid). ``member_range``
    (``start, end``: central directory positions, zips only) reads one chunk of a big zip; the whole-archive
    checks still cover every entry."""
    if is_tar(key):
        if member_range is not None:
            raise ValueError("tar archives are read as one stream, not in member ranges")
        yield from _tar_entries(fileobj, max_members=max_members, max_total_bytes=max_total_bytes,
                                max_member_bytes=max_member_bytes)
        return
    start, end = member_range if member_range is not None else (0, max_members + 1)
    with open_zip(fileobj, max_members=max_members) as archive:
        listing = list_members(archive, max_members=max_members, max_total_bytes=max_total_bytes)
        found: list[tuple[int, Entry | RefusedMember]] = [
            (index, RefusedMember(name, reason)) for name, reason, index in listing.rejected if start <= index < end]
        found += [(member.index, Entry(member.path, member.info.file_size,
                                       lambda limit, member=member: read_member(archive, member, max_bytes=limit)))
                  for member in listing.members if start <= member.index < end]
        for _, entry in sorted(found, key=lambda pair: pair[0]):  # in directory order, refused ones included
            yield entry


class _CountingReader(io.RawIOBase):
    """Counts the (compressed) bytes a tar stream has consumed, for the compression-ratio check."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)


def _tar_entries(
    fileobj: IO[bytes], *, max_members: int, max_total_bytes: int, max_member_bytes: int
) -> Iterator[Entry | RefusedMember]:
    head = fileobj.read(2)
    fileobj.seek(0)
    compressed = head == b"\x1f\x8b"  # gzip's magic
    counting = _CountingReader(fileobj)
    try:
        # Stream mode: members are read in order and never seeked to, so nothing needs the whole archive.
        archive = tarfile.open(fileobj=io.BufferedReader(counting), mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveRejected(f"not a readable tar archive: {error}") from None
    seen: set[str] = set()
    count = expanded = 0
    with archive:
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise ArchiveRejected(f"tar archive is damaged after {count} members: {error}") from None
            if info is None:
                return
            count += 1
            if count > max_members:
                raise ArchiveRejected(f"archive has more than {max_members} entries, the limit")
            if expanded > RATIO_CHECK_MIN_BYTES and expanded / max(counting.consumed, 1) > MAX_COMPRESSION_RATIO:
                raise ArchiveRejected(
                    f"compression ratio {expanded / max(counting.consumed, 1):.0f}:1 looks like a tar bomb")
            if info.isdir():
                continue
            try:
                path = safe_member_path(info.name)
                if info.issym() or info.islnk():
                    raise MemberRejected("links are not allowed in archives")
                if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
                    raise MemberRejected("device files are not allowed in archives")
                if not info.isreg():
                    raise MemberRejected(f"not a regular file (tar entry type {info.type!r})")
                if path in seen:
                    raise MemberRejected("duplicate member name")
            except MemberRejected as rejection:
                yield RefusedMember(info.name, str(rejection))
                continue
            if info.size > max_member_bytes and compressed:
                # Skipping it means decompressing it: past the per-file limit that is the bomb itself.
                raise ArchiveRejected(
                    f"member {path} is {info.size} bytes, more than the limit of {max_member_bytes}; the members "
                    "after it in a compressed tar cannot be reached without decompressing it, so they were not read")
            expanded += info.size
            if expanded > max_total_bytes:
                raise ArchiveRejected(f"archive expands to more than {max_total_bytes} bytes, the limit")
            seen.add(path)
            yield Entry(path, info.size, lambda limit, info=info: _read_tar_member(archive, info, limit))


def _read_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, max_bytes: int) -> bytes:
    if info.size > max_bytes:
        raise MemberRejected(f"member is {info.size} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    try:
        stream = archive.extractfile(info)
        while stream is not None and (chunk := stream.read(_READ_CHUNK)):
            chunks.append(chunk)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise MemberRejected(f"member cannot be read: {error}") from None
    data = b"".join(chunks)
    if len(data) != info.size:
        raise MemberRejected(f"member is truncated: {len(data)} of {info.size} bytes")
    return data
