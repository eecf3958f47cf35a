"""Defensive zip reading: members are checked by name and header before a byte is decompressed.

Nothing is ever extracted to disk; member names are only used as labels and lookup paths, but unsafe names are
still rejected so that a crafted archive cannot smuggle paths into the dataset. Whole-archive limits (entry
count, total expanded size, overlapping entries) reject the archive; per-member problems reject the member.
"""
from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
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


@dataclass
class ArchiveListing:
    members: list[ArchiveMember] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name as stored, reason)


def open_zip(fileobj: IO[bytes]) -> zipfile.ZipFile:
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
    for info in files:
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
            listing.rejected.append((info.filename, str(rejection)))
            continue
        seen.add(path)
        listing.members.append(ArchiveMember(path=path, info=info))
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
