"""The input route's checks, in the one order both the hit path and the full stack use."""

from __future__ import annotations

from ..cache.policy import is_valid_run_id
from ..errors import InvalidRunIdError
from ..keys.keyring import KeyRing
from .catalog import refuse_bad_path


def check_input(keyring: KeyRing, app: str, raw_path: str, run_id: str) -> None:
    """After the key (KeyRing.authenticate, 401): the allowlist (403), the path (400) and the
    run id (422), in that order. Memory is read only after these, and no token is taken: the
    caller takes the app's turn (KeyRing.take_turn) once it will answer."""
    keyring.authorize(app, "GET", raw_path)
    if not is_valid_run_id(run_id):
        # The path is /v1/tasks/runs/{run_id}/input: with a valid id it can hold nothing the
        # path check refuses, so only an invalid one (a hit never has one) costs that check.
        refuse_bad_path(raw_path)
        raise InvalidRunIdError(
            "Request validation error: run_id must be 1 to 128 characters from "
            "A-Z, a-z, 0-9, '_' and '-'."
        )
