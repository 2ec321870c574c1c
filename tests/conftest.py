"""Suite-wide: the suite runs on three pytest-xdist workers, one test file at a time each
(pyproject's ``addopts``: ``-n 3 --dist loadfile``; the end-to-end tests wait more than they
compute: a third worker on 2 cores, with the lighter CLI start-up, took pytest from 9.4 to about
8 min, 2026-12-07; handing out the longest files first was tried and gained nothing).

Tests that start daemons bind loopback addresses, so two of them must never hold the same one:

* every module under tests/runtime/ and tests/cli/test_admin.py uses its own fixed range
  (127.66-69, 127.77); ``loadfile`` runs a module's tests one after another on one worker;
* end-to-end datacenters use the figure-17-1 addresses moved to the worker's own block
  (``xdist_net.net``: worker 0 127.20/30/40.x as in the topology, worker 1 127.21/31/41.x, ...).

The long end-to-end branches are spread over several files so that the workers get similar
shares.
"""
