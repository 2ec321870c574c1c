"""Use cases of clovm (pcs ``lib/commands`` style): plain functions over a :class:`Home`.

``datacenter`` -- ``up``, ``down``, ``status``, ``fault`` of an emulated datacenter.
Every failure is a :class:`ClovmError` (stable ``code``, one-line ``message``).
"""

from .errors import ClovmError as ClovmError

__all__ = ["ClovmError"]
