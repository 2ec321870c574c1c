"""SNMPv3 adapter of the emulated XSCF: agent (service-processor side) and manager (fence side).

The XSCF of each SPARC M10 server answers the shutdown agents over SNMPv3 (authPriv, HMAC-SHA-256
+ AES-128) on each of its two LANs. One module per job:

* :mod:`.codec` — the emulated XSCF MIB (``docs/xscf-mib.md``): OIDs, codes, row index;
* :mod:`.model` — credentials, a request's result, and the errors;
* :mod:`.mibcache` — pysnmp's MIB modules from the bytecode cache (start-up cost);
* :mod:`.agent` — :class:`XscfSnmpAgent`, the XSCF's side;
* :mod:`.client` — :class:`XscfSnmpClient`, the shutdown agents' side.

Importing this package imports pysnmp (what the agent and the client need of it at once; the
client's command generators only with the first client).

pysnmp timers run on the wall clock: keep this package out of virtual-time code (use a fake at
the adapter boundary there).
"""

from __future__ import annotations

from .agent import ActionReply as ActionReply
from .agent import StatusReply as StatusReply
from .agent import XscfSnmpAgent as XscfSnmpAgent
from .agent import XscfSnmpBackend as XscfSnmpBackend
from .client import XscfSnmpClient as XscfSnmpClient
from .codec import ACTION_PANIC as ACTION_PANIC
from .codec import ACTION_RESET as ACTION_RESET
from .codec import ACTION_STATUS as ACTION_STATUS
from .codec import COL_ACTION as COL_ACTION
from .codec import COL_ACTION_RESULT as COL_ACTION_RESULT
from .codec import COL_ACTION_TEXT as COL_ACTION_TEXT
from .codec import COL_RESULT as COL_RESULT
from .codec import COL_STATUS as COL_STATUS
from .codec import COL_TEXT as COL_TEXT
from .codec import OID_AGENT_LAN as OID_AGENT_LAN
from .codec import OID_AGENT_NAME as OID_AGENT_NAME
from .codec import OID_DOMAIN_ENTRY as OID_DOMAIN_ENTRY
from .codec import RESULT_ERROR as RESULT_ERROR
from .codec import RESULT_NONE as RESULT_NONE
from .codec import RESULT_OK as RESULT_OK
from .codec import XSCF_EMU_MIB as XSCF_EMU_MIB
from .codec import domain_row_index as domain_row_index
from .model import SnmpAuthError as SnmpAuthError
from .model import SnmpCredentials as SnmpCredentials
from .model import SnmpError as SnmpError
from .model import SnmpResult as SnmpResult
from .model import SnmpUnreachable as SnmpUnreachable

__all__ = [
    "ACTION_PANIC",
    "ACTION_RESET",
    "ACTION_STATUS",
    "COL_ACTION",
    "COL_ACTION_RESULT",
    "COL_ACTION_TEXT",
    "COL_RESULT",
    "COL_STATUS",
    "COL_TEXT",
    "OID_AGENT_LAN",
    "OID_AGENT_NAME",
    "OID_DOMAIN_ENTRY",
    "XSCF_EMU_MIB",
    "SnmpAuthError",
    "SnmpCredentials",
    "SnmpError",
    "SnmpResult",
    "SnmpUnreachable",
    "XscfSnmpAgent",
    "XscfSnmpBackend",
    "XscfSnmpClient",
    "domain_row_index",
]
