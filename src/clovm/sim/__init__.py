"""Deterministic driver of the core machines: virtual time, seeded randomness, fake network.

``world.World`` builds the datacenter of a topology from the same core machines the runtime uses;
``scenarios`` holds the built-in scenarios of ``clovm sim``. Same seed → byte-identical trace.
"""
