"""What the other replicas did, as this one counts it against its apps' limits and caps."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimitedError
from gateway.keys.keyring import KeyRing
from gateway.keys.ratelimit import Limit
from gateway.keys.shared_limits import Peers, PeerTotals
from gateway.storage.types import Usage

LIMITED = {"billing", "search"}  # the apps the replica absorbing the rows rate-limits


def test_a_replica_older_than_this_one_is_charged_nothing_of_its_past() -> None:
    peers = Peers(started=100.0)
    old = Usage("b", "billing", 1000, 2, started=50.0)
    assert peers.absorb([old], LIMITED) == PeerTotals({}, {"billing": 2})


def test_a_replica_younger_than_this_one_is_charged_all_it_admitted() -> None:
    peers = Peers(started=100.0)
    young = Usage("b", "billing", 3, 0, started=100.5)
    assert peers.absorb([young], LIMITED) == PeerTotals({"billing": 3}, {})


def test_only_what_is_new_since_the_last_look_is_charged() -> None:
    peers = Peers(started=100.0)
    peers.absorb([Usage("b", "billing", 10, 0), Usage("c", "billing", 4, 0)], LIMITED)
    totals = peers.absorb(
        [Usage("b", "billing", 15, 1), Usage("c", "billing", 7, 2), Usage("c", "search", 3, 0)],
        LIMITED,
    )
    assert totals == PeerTotals({"billing": 8}, {"billing": 3})
    assert peers.absorb([Usage("b", "billing", 15, 0)], LIMITED) == PeerTotals({}, {})


def test_a_replica_that_disappears_and_returns_counts_from_its_return() -> None:
    peers = Peers(started=100.0)
    peers.absorb([Usage("b", "billing", 10, 0)], LIMITED)
    peers.absorb([], LIMITED)
    assert peers.absorb([Usage("b", "billing", 30, 0)], LIMITED) == PeerTotals({}, {})
    assert peers.absorb([Usage("b", "billing", 31, 0)], LIMITED) == PeerTotals({"billing": 1}, {})


def test_calls_a_peer_admitted_under_a_limit_it_loaded_after_this_one_started_are_charged() -> None:
    """Replica `a` started first; both load the key's limit later. `c` first sees `a`'s row
    only once `a` has admitted its burst (`c` read the store before `a` wrote the row): those
    calls all happened in `c`'s time, so `c` counts them and refuses the next call."""
    wall = [100.0]
    rings = {name: KeyRing(wall_clock=lambda: wall[0], clock=lambda: 0.0) for name in "ac"}
    peers_of_c = Peers(started=101.0)  # a started at 100.0
    wall[0] = 105.0  # the key is created; both load it
    for ring in rings.values():
        ring.set_limits({"billing": Limit(rate=0.01, burst=3)})
    assert peers_of_c.absorb([], LIMITED) == PeerTotals({}, {})
    for _ in range(3):
        rings["a"].throttle("billing")
    seen = peers_of_c.absorb(rings["a"].usage("a", 100.0), rings["c"].rate_limited())
    rings["c"].absorb_peers(seen)
    with pytest.raises(RateLimitedError):
        rings["c"].throttle("billing")


def test_a_row_back_after_a_gap_is_charged_only_from_its_return() -> None:
    """A peer stalled past the stale time (a busy machine, a slow database) and came back: its
    calls were charged when they were seen, and must not be charged again."""
    peers = Peers(started=100.0)
    assert peers.absorb([Usage("a", "billing", 500, 0, 105.0)], LIMITED) == PeerTotals(
        {"billing": 500}, {}
    )
    peers.absorb([], LIMITED)  # stale: out of view
    back = peers.absorb([Usage("a", "billing", 501, 0, 105.0)], LIMITED)
    assert back == PeerTotals({}, {})
    assert peers.absorb([Usage("a", "billing", 503, 0, 105.0)], LIMITED) == PeerTotals(
        {"billing": 2}, {}
    )


def test_a_row_of_an_app_not_limited_here_yet_is_charged_once_it_is() -> None:
    """This replica has not loaded the new key's limit yet: the peer's calls under it would be
    charged to no bucket, so the row is left unseen until there is one. Open calls count."""
    peers = Peers(started=100.0)
    row = Usage("a", "billing", 3, 1, 105.0)
    assert peers.absorb([row], set()) == PeerTotals({}, {"billing": 1})
    assert peers.absorb([row], LIMITED) == PeerTotals({"billing": 3}, {"billing": 1})
