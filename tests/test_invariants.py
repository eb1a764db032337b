"""Random operation sequences against the Lua engine, with the whole state checked after each
step (see invariants.py): counters, indexes, caps, tokens, hand-off, no leaked units."""
from __future__ import annotations

import pytest

from invariants import Violation, run


@pytest.mark.parametrize("seed", range(3))
def test_random_operations_keep_every_invariant(r, seed):
    try:
        run(seed, 150, r)
    except Violation as e:
        pytest.fail(str(e))
