"""SSH adapter of the emulated XSCF: CLI server (service-processor side) and hermetic client.

One module per job:

* :mod:`.server` — ``XscfSshServer``: the XSCF CLI over SSH on every LAN of one XSCF, with a
  persistent ed25519 host key (``load_or_create_host_key``) and password / public-key users;
* :mod:`.client` — ``xscf_exec`` / ``XscfSshClient`` / ``XscfSshPool``: never read ``~/.ssh``,
  an ssh-agent or ``ssh_config``; the server's host key must be in the given OpenSSH-format
  known_hosts file, as PRIMECLUSTER requires ("the first SSH connection to the XSCF must have
  been made"). Failures map onto distinct exceptions: ``XscfHostKeyUnknown``,
  ``XscfHostKeyChanged``, ``XscfAuthFailed``, ``XscfUnreachable``;
* :mod:`.known_hosts` — ``host_key_line``, ``add_known_host``, ``remove_known_hosts``,
  ``has_entry``: the known_hosts file, edited atomically (temporary file, fsync,
  ``os.replace``; mode 0600) under an advisory lock;
* :mod:`.common` — the ciphers both ends offer and the shape of a command's result.

Importing this package imports asyncssh.
"""

from __future__ import annotations

import warnings

# asyncssh 2.24 still names the DSA classes, which cryptography 48+ marks deprecated when they are
# touched (at import): a warning about the library, not about anything the operator did, printed
# by every command that speaks SSH. clovm never offers or accepts DSA keys.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")

from .client import XscfAuthFailed as XscfAuthFailed
from .client import XscfHostKeyChanged as XscfHostKeyChanged
from .client import XscfHostKeyError as XscfHostKeyError
from .client import XscfHostKeyUnknown as XscfHostKeyUnknown
from .client import XscfSshClient as XscfSshClient
from .client import XscfSshError as XscfSshError
from .client import XscfSshPool as XscfSshPool
from .client import XscfUnreachable as XscfUnreachable
from .client import xscf_exec as xscf_exec
from .common import CIPHERS as CIPHERS
from .common import CliResult as CliResult
from .known_hosts import add_known_host as add_known_host
from .known_hosts import add_known_hosts as add_known_hosts
from .known_hosts import has_entry as has_entry
from .known_hosts import host_key_line as host_key_line
from .known_hosts import remove_known_hosts as remove_known_hosts
from .server import PROMPT as PROMPT
from .server import CliCallback as CliCallback
from .server import XscfSshServer as XscfSshServer
from .server import load_or_create_host_key as load_or_create_host_key

__all__ = [
    "CliCallback",
    "XscfAuthFailed",
    "XscfHostKeyChanged",
    "XscfHostKeyError",
    "XscfHostKeyUnknown",
    "XscfSshClient",
    "XscfSshError",
    "XscfSshPool",
    "XscfSshServer",
    "XscfUnreachable",
    "add_known_host",
    "host_key_line",
    "load_or_create_host_key",
    "remove_known_hosts",
    "xscf_exec",
]
