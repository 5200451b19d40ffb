"""How many SFT arms train at once (``runtime.processes_for``): the cores stay full, and no
more processes than cores when the arms divide evenly into rounds."""
from __future__ import annotations

import pytest

from reasonlib.core import runtime


@pytest.mark.parametrize("n_jobs, share, want", [
    (6, 1, 1),    # paper, two sweep workers on two cores: one arm after another per kernel
    (6, 2, 2),    # paper, one worker: three full rounds of two
    (2, 2, 2),    # quick: both arms at once
    (3, 2, 3),    # uneven: all at once beats a half-idle second round
    (1, 4, 1),
    (12, 3, 3),
    (20, 3, runtime.MAX_PROCESSES),
    (16, 16, runtime.MAX_PROCESSES),
])
def test_processes_for(n_jobs, share, want):
    assert runtime.processes_for(n_jobs, share) == want


def test_processes_for_never_leaves_a_core_idle_while_runs_wait():
    for share in range(1, 9):
        for n in range(1, 30):
            p = runtime.processes_for(n, share)
            assert 1 <= p <= min(n, runtime.MAX_PROCESSES)
            assert p >= min(share, n, runtime.MAX_PROCESSES)


@pytest.mark.parametrize("n_jobs, share", [(0, 2), (3, 0), (-1, 1)])
def test_processes_for_rejects_nonpositive(n_jobs, share):
    with pytest.raises(ValueError, match=rf"processes_for\({n_jobs}, {share}\)"):
        runtime.processes_for(n_jobs, share)
