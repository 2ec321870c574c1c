"""Deterministic driver of the core machines: virtual time, seeded randomness, fake network.

``world.World`` builds the datacenter of a topology from the same core machines the runtime uses;
``scenarios`` holds the built-in scenarios of ``clovm sim``; ``chaos`` is ``clovm sim chaos``, the
randomised campaign over every operation and fault (its invariants: ``invariants``). Same seed →
byte-identical trace.
"""

# The names of ``scenarios.SCENARIOS``, importable without the simulator (the CLI's parser needs
# them on every ``clovm`` start; tests/sim/test_scenarios.py checks that both agree).
SCENARIO_NAMES = (
    "live-migration",
    "no-prepare",
    "abort-recovery",
    "early-start",
    "split-brain",
    "time-sync",
    "scoped-migration",
)
