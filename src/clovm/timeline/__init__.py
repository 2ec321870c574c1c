"""Pictures and summaries of a ``clovm migrate`` journal (pure functions; see docs/safe-migration.md).

* :func:`render_svg` turns the journal dict (the "Journal" section of ``docs/safe-migration.md``)
  into one self-contained SVG document, the picture an operator looks at instead of the logs
  (:mod:`.svg`, lane by lane, on the building blocks of :mod:`.draw`); :func:`write_svg` writes
  it (the only function with I/O: one atomic write);
* :func:`render_text_summary` is the one-screen text of ``clovm migrate --status``
  (:mod:`.summary`);
* :mod:`.journal` reads the journal tolerantly and derives what both need:
  :func:`merge_samples` (each CF node's merged view per sampling round, :class:`NodePoint`),
  :func:`suspend_intervals`, the steps and the ldmd phases.

Output is deterministic: the same journal gives the same bytes. Malformed entries (non-dict
items, missing or non-numeric ``t``) are skipped, never raised on.
"""

from __future__ import annotations

from .draw import AXIS_H as AXIS_H
from .draw import FONT as FONT
from .draw import HEADER_H as HEADER_H
from .draw import NODE_H as NODE_H
from .draw import PLOT_X0 as PLOT_X0
from .draw import PLOT_X1 as PLOT_X1
from .draw import PROC_H as PROC_H
from .draw import WIDTH as WIDTH
from .draw import GapScale as GapScale
from .draw import tick_step as tick_step
from .journal import ROUND_TOLERANCE_S as ROUND_TOLERANCE_S
from .journal import NodePoint as NodePoint
from .journal import merge_samples as merge_samples
from .journal import suspend_intervals as suspend_intervals
from .summary import render_text_summary as render_text_summary
from .svg import GAP_COLOUR as GAP_COLOUR
from .svg import OTHER_PHASE_COLOUR as OTHER_PHASE_COLOUR
from .svg import OTHER_SF_COLOUR as OTHER_SF_COLOUR
from .svg import OTHER_STATE_COLOUR as OTHER_STATE_COLOUR
from .svg import OTHER_STEP_COLOUR as OTHER_STEP_COLOUR
from .svg import PHASE_COLOURS as PHASE_COLOURS
from .svg import RESULT_COLOURS as RESULT_COLOURS
from .svg import SF_COLOURS as SF_COLOURS
from .svg import STATE_COLOURS as STATE_COLOURS
from .svg import STEP_COLOURS as STEP_COLOURS
from .svg import SUSPEND_FILL as SUSPEND_FILL
from .svg import TIMEOUT_COLOUR as TIMEOUT_COLOUR
from .svg import render_svg as render_svg
from .svg import write_svg as write_svg

__all__ = [
    "GapScale",
    "NodePoint",
    "merge_samples",
    "render_svg",
    "render_text_summary",
    "suspend_intervals",
    "tick_step",
    "write_svg",
]
