"""Problems found in uploaded data, reported as ``{"key": "<s3 key>[!<member>]", "reason": "..."}``.

Bad data never raises: each step records an issue and goes on with the rest.
"""
from __future__ import annotations

from typing import TypedDict

# Keeps DynamoDB items and API answers small; the count says how many there were in all.
MAX_REASON_CHARS = 300
MAX_KEY_CHARS = 1100  # an S3 key is at most 1024 bytes; archive member names are unbounded


class Issue(TypedDict):
    key: str
    reason: str


def make_issue(key: str, reason: str) -> Issue:
    reason = " ".join(str(reason).split())
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    if len(key) > MAX_KEY_CHARS:
        key = key[: MAX_KEY_CHARS - 1] + "…"
    return {"key": key, "reason": reason}


class IssueLog:
    """Issues in the order found: the first ``limit`` kept, all of them counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Issue] = []
        self.count = 0

    def add(self, key: str, reason: str) -> None:
        self.count += 1
        if len(self.items) < self.limit:
            self.items.append(make_issue(key, reason))

    def extend(self, issues: list[Issue], count: int | None = None) -> None:
        """Add issues kept elsewhere; ``count`` is their full number when only some were kept."""
        for issue in issues[: max(0, self.limit - len(self.items))]:
            self.items.append(make_issue(issue["key"], issue["reason"]))
        self.count += len(issues) if count is None else max(count, len(issues))


def fit_issues(issues: list[Issue], max_bytes: int) -> list[Issue]:
    """The leading issues that fit in ``max_bytes`` (DynamoDB items hold 400 KB; keys can be long)."""
    kept: list[Issue] = []
    used = 0
    for issue in issues:
        used += len(issue["key"].encode()) + len(issue["reason"].encode()) + 16  # + attribute names
        if used > max_bytes:
            break
        kept.append(issue)
    return kept
