"""The ways a training job ends early, each with a one-line reason and the exit code Batch sees."""
from __future__ import annotations


class JobFailed(Exception):
    """The job cannot finish; ``str(error)`` is the one-line reason written to stderr."""

    exit_code = 1


class InvalidInput(JobFailed):
    """The manifest, template or params are unusable: retrying the job cannot help."""

    exit_code = 2


class Interrupted(JobFailed):
    """SIGTERM (Spot reclaim, Batch termination): the last epoch's checkpoint is saved, a retry resumes."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


def one_line(error: BaseException) -> str:
    """``error`` as one line of text (Batch and the workflow show a single line)."""
    return " ".join(str(error).split()) or type(error).__name__
