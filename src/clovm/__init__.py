"""clovm: cluster-safe live migration of PRIMECLUSTER guest-domain nodes.

General layout:
  core/      sans-IO state machines (membership, fencing, rms, ldm, sp, migration)
  sim/       deterministic discrete-event driver of the core (virtual time)
  runtime/   asyncio daemons driving the same core over real protocols
  api/       use cases over an injected environment; errors carry stable codes
  cli/       thin argparse front ends
"""

__version__ = "0.1.0"
