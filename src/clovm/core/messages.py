"""The product's message texts, written once (both drivers and every command use these).

Each function or constant is one message as the node writes it to ``/var/adm/messages``, a
switchlog, an agent log or an answer; the product message number, where one exists, is the
``msgid`` the caller logs it with. Lines that only one machine writes about its own state
(``rcsd started on ...``) stay beside the transition that writes them; what two places say, or
what names a product message number, lives here.
"""

from __future__ import annotations

# ---- RMS time synchronisation (seed: "Time synchronisation") ------------------------------------
WRP_34 = (
    "(WRP, 34) Cluster host {host} is no longer in time sync with local node. "
    "Sane operation of RMS can no longer be guaranteed."
)
WRP_35 = (
    "(WRP, 35) Cluster host {host} is no longer in time sync with local node. "
    "Sane operation of RMS can no longer be guaranteed."
)
WRP_FURTHER = "Further out-of-sync messages will appear in the syslog."

# ---- SF: the first SSH connection to an XSCF (message 7245) -------------------------------------
MSG_7245 = "7245"


def first_ssh_connection(addr: str, user: str, host: str) -> str:
    """Message 7245: the host key of the XSCF at ``addr`` is not known on ``host``."""
    return (
        f"7245 The first SSH connection to XSCF {addr} has not been made: connect once with "
        f"ssh {user}@{addr} from {host} and accept the host key, then run sdtool -r"
    )


def is_7245(detail: str) -> bool:
    """Whether an agent's failure detail is message 7245."""
    return detail.startswith(MSG_7245 + " ")


# ---- SF: what an XSCF answered a shutdown agent ------------------------------------------------
def xscf_status_unknown(domain: str) -> str:
    return f"XSCF reports {domain} as Unknown: save the configuration with ldm add-spconfig"


def xscf_reports(domain: str, status: str) -> str:
    return f"XSCF reports {domain} as {status}"


def xscf_does_not_know(addr: str, domain: str) -> str:
    return f"XSCF {addr} does not know {domain}"


def xscf_command_failed(addr: str, command: str, rc: int, output: str) -> str:
    return f"{command} on XSCF {addr} failed (rc {rc}): {' '.join(output.split())}"


def unknown_agent(agent: str) -> str:
    return f"{agent} is not a shutdown agent of this node (SA_xscfsnmpg0p, g1p, g0r, g1r): correct rcsd.cfg"


# ---- CF: services of a node whose join was refused ----------------------------------------------
SERVICES = (("SF", "SMAWsf"), ("CRM", "CF"), ("RMS", "RMS"))  # (service, syslog tag)


def failed_to_start(service: str, reason: str) -> str:
    return f"{service} failed to start: {reason}"


def sf_cannot_start(node: str, reason: str) -> str:
    return f"SF cannot start on {node}: {reason}"


def no_sf_here(host: str) -> str:
    return f"{host} is not a node of a guest-domain cluster: no SF / RMS"


def not_a_cluster_domain(domain: str) -> str:
    return f"{domain} is not a node of a guest-domain cluster"
