"""The open-file limit: raised at start, so that open calls are bounded by it alone."""

from __future__ import annotations

import contextlib
import resource

# Linux's default fs.nr_open: the most a soft limit may be when the hard limit is unlimited.
UNLIMITED_TARGET = 1_048_576


def raise_open_files_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, where allowed; (before, now, hard).

    Every open long poll or event stream holds two descriptors, the app's connection and its
    upstream one; a default soft limit of 1,024 would refuse connections long before memory runs
    short.
    """
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if before != resource.RLIM_INFINITY and before < target:
        # Where refused, the soft limit stays as it was; the caller logs what it got.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return before, now, hard
