"""Use cases of clovm (pcs ``lib/commands`` style): plain functions over an injected environment.

``commands`` -- the product's admin commands on a host (cftool, cfset, sdtool, clsnmpsetup,
hvdisp, ldm, clovmmigrate, clovm migrate) over an :class:`~clovm.api.env.Env` (``env``: the
protocol and the real :class:`~clovm.api.env.HomeEnv`; ``dto``: what they return).
``datacenter`` -- ``up``, ``down``, ``status`` of an emulated datacenter home, built from
``processes``, ``ports``, ``provision``, ``launch`` and ``lookup``; ``faults`` -- ``clovm fault``.
``demo`` -- the seed's procedure end to end, over an injected command runner.

The CLI (``clovm.cli``) calls these; they never import it. Every failure is a
:class:`ClovmError` (a stable ``code`` from :mod:`clovm.core.codes`, a one-line ``message``).
"""

from .errors import ClovmError as ClovmError

__all__ = ["ClovmError"]
