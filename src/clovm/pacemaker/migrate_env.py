"""Runs ``clovm migrate`` on the Pacemaker topology: the runtime adapter of
:class:`clovm.core.stacks.pacemaker.PacemakerStack`.

:func:`safe_migration` drives one :class:`clovm.core.safemigrate.SafeMigrationRun` for a VM of
the home's cluster, with the source hypervisor host as ``local_host``. The run is the same one as
on the SPARC stack, and so is the driver: :mod:`clovm.runtime.migrate_env`'s effect loop (one
call, or a batch of calls answered concurrently), and :mod:`clovm.runtime.migrate_journal`'s
per-domain lock and journal writer (atomic, mode 0600, ``DOMAIN.migrate.json`` while in progress,
``DOMAIN.migrate-last.json`` once done, the ``CLOVM_MIGRATE_KILL_AT`` hook). This module only
answers the calls (:class:`PcmkEnv`, the table in ``docs/pacemaker.md``), says where a host's
journals are (``HOME/hosts/HOST/clovm/``) and names this stack's kill points.

Host calls go to the hypervisor daemon's socket (``where``, ``host_info``, ``activity``) or run
``virsh`` inside the host; node calls run the real command inside the VM (``crm_mon``,
``corosync-cmapctl``, ``corosync-cfgtool``, ``crm_attribute``, ``cibadmin``, ``pcs``,
``stonith_admin``, ``fence_virsh``), each with its own timeout (a frozen VM's commands freeze
with it: the migration's samples use short ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from ..api.errors import ClovmError
from ..core import codes
from ..core import migration as mig
from ..core import safemigrate as sm
from ..core.stacks import pacemaker as ps
from ..runtime import migrate_env as rme
from ..runtime import migrate_journal as mj
from ..runtime import rpc
from . import api, configs, files, readiness
from . import layout as L

TOKEN_RECORD = "/var/lib/clovm/token.saved"  # inside a VM (its /var is its disk)
COROSYNC_CONF = "/etc/corosync/corosync.conf"
FENCE_KEY_PARAMS = ("ip", "plug", "username", "identity_file")
QUICK_TIMEOUT = 2.0  # real seconds for a sample (the suspended VM's commands wait for the thaw)
CALL_TIMEOUT = 30.0
FENCE_TIMEOUT = 40.0
PCS_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 3600.0
HVD_TIMEOUT = 5.0
PROG = "clovm migrate"
POINTS = ("prepare", "prepared", "protected", "migrate", "migrating", "recover", "complete", "updating", "prove")


class _CallFailed(Exception):
    """A Call cannot be answered; ``str()`` is one line."""


def _line(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


class Dirs:
    """Where the hosts' clovm migrate journals live (as ``Home.migrate_dir`` on the SPARC stack)."""

    def __init__(self, lay: L.Layout) -> None:
        self.lay = lay
        self.root = lay.home

    def migrate_dir(self, host: str) -> Path:
        return self.lay.host_dir(host) / "clovm"


# ---------------------------------------------------------------------------------------- commands
async def run_in(
    lay: L.Layout, host: str, argv: Sequence[str], timeout: float, input: str | None = None
) -> tuple[int, str, str]:
    """``argv`` inside ``host`` (as :func:`api.exec_in`), asynchronously; killed (with every
    process it started) after ``timeout`` real seconds."""
    try:
        full = api.exec_argv(lay.home, host, list(argv))
    except ClovmError as e:
        raise _CallFailed(e.message) from None
    proc = await asyncio.create_subprocess_exec(
        *full,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=files.subprocess_env(),
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise _CallFailed(f"{argv[0]} on {host} did not answer within {timeout:g} s") from None
    except asyncio.CancelledError:  # the run ended (or was interrupted) while this command ran
        _kill_group(proc.pid)
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _kill_group(pid: int) -> None:
    """SIGKILL a command started by :func:`run_in` and everything it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _first(out: str, err: str, rc: int) -> str:
    lines = [ln for ln in (err.strip() or out.strip()).splitlines() if ln.strip()]
    return _line(lines[-1] if lines else f"exit status {rc}")


def parse_cmap(text: str) -> dict[str, Any]:
    """``KEY (type) = VALUE`` lines of corosync-cmapctl: integers as int, the rest as str."""
    out: dict[str, Any] = {}
    for ln in text.splitlines():
        key, sep, value = ln.partition(" = ")
        if not sep:
            continue
        key = key.split(" (")[0].strip()
        value = value.strip()
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def fence_stdin(params: Mapping[str, str], action: str) -> str:
    """A fence agent's stdin, as Pacemaker's fenced gives it (``key=value`` lines)."""
    body = {"action": action, **{k: v for k, v in params.items() if k != "action"}}
    return "".join(f"{k}={v}\n" for k, v in body.items() if "\n" not in str(v) and "=" not in k)


def fence_status(rc: int, out: str) -> str | None:
    """ON / OFF from a fence agent's ``status`` output (rc 0 on, 2 off), else None."""
    for ln in out.splitlines():
        if ln.strip().startswith("Status:"):
            return ln.split(":", 1)[1].strip().upper()
    return None


# ---------------------------------------------------------------------------------------- the env
class PcmkEnv:
    """Answers the Calls of one run whose source is hypervisor host ``host``."""

    def __init__(self, lay: L.Layout, host: str, time_scale: float, started: float) -> None:
        self.lay, self.host, self.scale, self.started = lay, host, max(float(time_scale), 1e-9), started
        self._migrations: dict[str, asyncio.Task[tuple[int, str, str]]] = {}

    def close(self) -> None:
        """Nothing is kept open between calls (a migration started here runs on in the hypervisor)."""

    async def answer(self, c: mig.Call) -> mig.CallReturned:
        try:
            value = await self._dispatch(c)
        except _CallFailed as e:
            return mig.CallReturned(c.call_id, False, None, _line(str(e)))
        except rpc.RpcError as e:
            return mig.CallReturned(c.call_id, False, None, _line(e.message))
        except (OSError, ValueError, readiness.BadXml) as e:
            return mig.CallReturned(c.call_id, False, None, _line(f"{c.op} on {c.target}: {e}"))
        return mig.CallReturned(c.call_id, True, value)

    # -- helpers ---------------------------------------------------------------------------------------
    async def _hvd(self, host: str) -> dict[str, Any]:
        if not L.is_host(host):
            raise _CallFailed(f"{host} is not a hypervisor host ({' '.join(L.HOSTS)})")
        try:
            return cast("dict[str, Any]", await rpc.call_unix(self.lay.socket(host), "status", timeout=HVD_TIMEOUT))
        except rpc.RpcError as e:
            raise _CallFailed(f"the hypervisor of {host} does not answer: {_line(e.message)}") from None

    async def _run(
        self,
        host: str,
        argv: Sequence[str],
        timeout: float = CALL_TIMEOUT,
        input: str | None = None,
        check: bool = True,
    ) -> tuple[int, str, str]:
        rc, out, err = await run_in(self.lay, host, argv, timeout, input)
        if check and rc != 0:
            raise _CallFailed(f"{host}: {' '.join(argv[:3])}: {_first(out, err, rc)}")
        return rc, out, err

    def _events(self, host: str, domain: str, since: float) -> list[dict[str, Any]]:
        """The hypervisor's own log of ``domain`` (``WALLTIME EVENT DOMAIN [DETAIL]``) from ``since``
        on, on the run's clock."""
        if not L.is_host(host):
            raise _CallFailed(f"{host} is not a hypervisor host")
        try:
            lines = self.lay.host_events(host).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            parts = ln.split(maxsplit=3)
            if len(parts) < 3 or parts[2] != domain:
                continue
            t = (float(parts[0]) - self.started) * self.scale
            if t >= since:
                out.append({"t": round(t, 4), "what": parts[1], "detail": parts[3] if len(parts) > 3 else ""})
        return out

    def _node(self, target: str) -> str:
        if not L.is_vm(target):
            raise _CallFailed(f"{target} is not a node of the cluster {L.CLUSTER_NAME} ({' '.join(L.VMS)})")
        return target

    # -- the calls -------------------------------------------------------------------------------------
    async def _dispatch(self, c: mig.Call) -> Any:  # one branch per call of the table
        op, target, a = c.op, c.target, dict(c.args)
        # ---- the datacenter and its hosts
        if op == "sleep":
            await asyncio.sleep(max(float(a["seconds"]) / self.scale, 0.02))
            return None
        if op == "cluster_nodes":
            d = str(a["domain"])
            if not L.is_vm(d):
                raise _CallFailed(f"{d} is not a node of the cluster {L.CLUSTER_NAME} (its nodes: {' '.join(L.VMS)})")
            return {"node": d, "nodes": list(L.VMS), "cluster": L.CLUSTER_NAME, "time_scale": self.scale}
        if op == "control_domains":
            return [{"host": h, "address": L.ADDRESSES[h]} for h in L.HOSTS]
        if op == "where":
            return where_of(await self._hvd(target), str(a["domain"]))
        if op == "host_info":
            st = await self._hvd(target)
            return dict(st.get("info") or {})
        if op == "activity":
            st = await self._hvd(target)
            return {
                "journals": mj.recorded(Dirs(self.lay).migrate_dir(target)),
                "migrating": sorted(set(st.get("migrating") or {}) | set(st.get("incoming") or [])),
            }
        if op == "hypervisor_events":
            return self._events(target, str(a["domain"]), float(a.get("since") or 0.0))
        if op == "virsh":
            if not L.is_host(target):
                raise _CallFailed(f"{target} is not a hypervisor host")
            rc, out, err = await self._run(target, ["virsh", *[str(x) for x in a["argv"]]], check=False)
            return {"rc": rc, "stdout": out, "stderr": err}
        if op == "migrate_start":
            d, to = str(a["domain"]), str(a["target"])
            argv = ["virsh", "migrate", "--live", "--verbose", d, f"qemu+ssh://{to}/system"]
            self._migrations[d] = asyncio.ensure_future(run_in(self.lay, target, argv, MIGRATE_TIMEOUT))
            return None
        if op == "migrate_result":
            task = self._migrations.get(str(a["domain"]))
            if task is None or not task.done():
                return None
            try:
                rc, out, err = task.result()
            except _CallFailed as e:
                return {"rc": 1, "stdout": "", "stderr": str(e)}
            return {"rc": rc, "stdout": out, "stderr": err}
        # ---- the cluster nodes
        n = self._node(target)
        quick = bool(a.get("quick"))
        if op == "crm_mon":
            rc, out, err = await self._run(
                n, ["crm_mon", "-1", "--output-as=xml"], QUICK_TIMEOUT if quick else CALL_TIMEOUT, check=False
            )
            try:
                return readiness.parse_crm_mon(out).to_dict()
            except readiness.BadXml:
                raise _CallFailed(f"{n}: crm_mon: {_first(out, err, rc)}") from None
        if op == "cmap_get":
            keys = [str(k) for k in a["keys"]]
            icmap = [k for k in keys if not k.startswith("stats.")]
            stats = [k for k in keys if k.startswith("stats.")]
            script = "; ".join(
                ["corosync-cmapctl " + " ".join(f"-g {shlex.quote(k)}" for k in icmap)] * bool(icmap)
                + ["corosync-cmapctl -m stats " + " ".join(f"-g {shlex.quote(k)}" for k in stats)] * bool(stats)
            )
            rc, out, err = await self._run(
                n, ["sh", "-c", script], QUICK_TIMEOUT if quick else CALL_TIMEOUT, check=False
            )
            values = parse_cmap(out)
            if not values and rc != 0:
                raise _CallFailed(f"{n}: corosync-cmapctl: {_first(out, err, rc)}")
            return {k: values.get(k) for k in keys}
        if op == "token_record":
            rc, out, _err = await self._run(n, ["cat", TOKEN_RECORD], check=False)
            return int(out.strip()) if rc == 0 and out.strip().isdigit() else None
        if op == "record_token":
            token = int(a["token"])
            d = os.path.dirname(TOKEN_RECORD)
            script = (
                f"f={TOKEN_RECORD}; if [ ! -s $f ]; then mkdir -p {d} && echo {token} > $f.new && sync $f.new "
                f"&& mv -f $f.new $f && sync {d}; fi; cat $f"
            )
            _rc, out, _err = await self._run(n, ["sh", "-c", script])
            return int(out.strip())
        if op == "clear_token_record":
            d = os.path.dirname(TOKEN_RECORD)
            await self._run(n, ["sh", "-c", f"rm -f {TOKEN_RECORD} && mkdir -p {d} && sync {d}"])
            return None
        if op == "write_corosync_conf":
            _rc, text, _err = await self._run(n, ["cat", COROSYNC_CONF])
            new = configs.with_token(text, int(a["token"]))
            if new != text:
                tmp = COROSYNC_CONF + ".clovm"
                script = (
                    f"cat > {tmp} && chmod 644 {tmp} && sync {tmp} && mv -f {tmp} {COROSYNC_CONF} "
                    f"&& sync {os.path.dirname(COROSYNC_CONF)}"
                )
                await self._run(n, ["sh", "-c", script], input=new)
            return None
        if op == "cfgtool_reload":
            await self._run(n, ["corosync-cfgtool", "-R"])
            return None
        if op == "cluster_property":
            name, value = str(a["name"]), a.get("value")
            argv = ["crm_attribute", "--type", "crm_config", "--name", name]
            await self._run(n, [*argv, "--update", str(value)] if value is not None else [*argv, "--delete"])
            return None
        if op == "stonith_devices":
            _rc, out, _err = await self._run(n, ["cibadmin", "-Q", "-o", "resources"])
            return readiness.parse_stonith_devices(out)
        if op == "stonith_update":
            params = {str(k): str(v) for k, v in dict(a["params"]).items()}
            await self._run(
                n, ["pcs", "stonith", "update", str(a["device"]), *[f"{k}={v}" for k, v in params.items()]], PCS_TIMEOUT
            )
            return None
        if op == "stonith_list":
            _rc, out, _err = await self._run(n, ["stonith_admin", "--list", str(a["node"])])
            return [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.strip().endswith(" found")]
        if op == "fence_agent":
            params = {str(k): str(v) for k, v in dict(a["params"]).items()}
            action = str(a.get("action", "status"))
            for attempt in range(2):  # fenced retries a failed agent too (pcmk_*_retries)
                rc, out, err = await self._run(
                    n, ["fence_virsh"], FENCE_TIMEOUT, input=fence_stdin(params, action), check=False
                )
                if not (rc == 1 and "Unable to connect/login" in err) or attempt:
                    break
            text = _first(out, err, rc) if (err.strip() or rc not in (0, 2)) else out.strip()
            return {
                "rc": rc,
                "status": fence_status(rc, out) if action == "status" else None,
                "text": text,
                "stdout": out,
            }
        raise _CallFailed(f"unknown operation {op}")


def where_of(status: Mapping[str, Any], domain: str) -> dict[str, Any] | None:
    """``where {domain}`` from a hypervisor's ``status``: None if it does not have the domain; else
    ``state`` ``active`` (running or paused), ``bound`` (the incoming copy of a migration) or
    ``inactive`` (shut off), ``virsh_state``, ``flags`` (``s``: migrating out, ``t``: incoming) and
    ``migration`` (its progress on the source, else None)."""
    views = {d["name"]: d for d in status.get("domains") or []}
    v = views.get(domain)
    if v is None:
        return None
    incoming = domain in (status.get("incoming") or [])
    m = (status.get("migrating") or {}).get(domain)
    state = "bound" if incoming else "active" if v["state"] in ("running", "paused") else "inactive"
    flags = "-----t" if incoming else ("-n---s" if m else "-n----") if state == "active" else "------"
    migration = None
    if m:
        migration = {"phase": m["phase"], "percent": int(m.get("percent") or 0)}
        if m.get("round"):
            migration.update(round=int(m["round"]), rounds_max=int(m.get("rounds_max") or 0))
    return {"state": state, "virsh_state": v["state"], "flags": flags, "migration": migration}


# ---------------------------------------------------------------------------------------- the journal
def journal_path(dirs: Dirs, host: str, domain: str) -> Path:
    """The journal of a ``clovm migrate`` of ``domain`` in progress (or stopped part way) on ``host``."""
    return mj.active_path(dirs.migrate_dir(host), domain)


def last_journal_path(dirs: Dirs, host: str, domain: str) -> Path:
    """The journal of its last finished run (what ``--status`` and ``clovm timeline`` read afterwards)."""
    return mj.last_path(dirs.migrate_dir(host), domain)


def _locked(dirs: Dirs, host: str, domain: str) -> contextlib.AbstractContextManager[dict[str, Any] | None]:
    """Hold ``DOMAIN.lock`` (flock: one clovm migrate per VM and host) and yield the journal in
    progress (None if there is none); Refused if locked or unreadable. A run that wrote no
    journal (and none finished before) leaves no lock file (nor the directory made for it) behind."""
    d = dirs.migrate_dir(host)
    path = journal_path(dirs, host, domain)
    return mj.locked(d, domain, path, host=host, holders=PROG, keep=[last_journal_path(dirs, host, domain)])


class _Persist(mj.JournalWriter):
    """Writes the run's Persist effects with the SPARC stack's writer
    (:class:`~clovm.runtime.migrate_journal.JournalWriter`: ``DOMAIN.migrate.json`` atomically while
    in progress, ``DOMAIN.migrate-last.json`` once done; this stack embeds no other journal: the
    run's removal of a clovmmigrate leftover at the end concerns the SPARC stack only), with this
    stack's kill points for ``CLOVM_MIGRATE_KILL_AT=POINT`` (SIGKILL right after the
    first journal write at POINT): the step names, ``prepared`` (every token recorded, nothing
    changed yet), ``protected`` (maintenance-mode and the raised token in force), ``migrating``
    (the migration is under way) and ``updating`` (the completion has begun: the fence device is
    re-pointed, token and maintenance not restored yet)."""

    def __init__(self, dirs: Dirs, host: str, domain: str) -> None:
        super().__init__(dirs.migrate_dir(host), domain)
        self.dirs, self.host = dirs, host

    @staticmethod
    def points(j: dict[str, Any]) -> set[str]:
        st, marks = str(j.get("step")), j.get("marks") or []
        out = {st}
        if st == "prepare" and ps.MARK_RECORDED in marks:
            out.add("prepared")
        if st == "prepare" and ps.MARK_PROTECTED in marks:
            out.add("protected")
        if st == "migrate" and j.get("progress"):
            out.add("migrating")
        if st == "complete" and ps.MARK_REPOINTED in marks:
            out.add("updating")
        return out


def _home_of(home: Path | str) -> tuple[L.Layout, dict[str, Any]]:
    lay = L.layout_for(home)
    from .record import Record

    rec = Record.load(lay.record_file)
    if rec is None:
        raise ClovmError(codes.NOT_RUNNING, f"{lay.home} runs no pacemaker topology (clovm up --topology pacemaker)")
    return lay, rec.data


async def safe_migration_async(
    home: Path | str, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[mig.Finished, dict[str, Any] | None]:
    """Run ``clovm migrate`` with source host ``host``; how it finished and the last journal
    written or read (None if it refused before reading one)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        lay, data = _home_of(home)
    except ClovmError as e:
        return mj.refuse(err, PROG, e.code, e.message + ". Nothing was changed."), None
    if not L.is_host(host):
        return mj.refuse(
            err,
            PROG,
            codes.UNKNOWN_HOST,
            f"{host!r} is not a hypervisor host of this datacenter (one of "
            f"{' '.join(L.HOSTS)}); give --host HOST where {request.domain} "
            f"runs. Nothing was changed.",
        ), None
    scale = float(data.get("time_scale") or 1.0)
    started = float(data.get("started") or time.time())
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", request.domain or "-"):  # it names journal files
        return mj.refuse(err, PROG, codes.BAD_ARGUMENT, f"{request.domain!r} is no VM name. Nothing was changed."), None
    dirs = Dirs(lay)
    try:
        with _locked(dirs, host, request.domain) as journal:
            persist = _Persist(dirs, host, request.domain)
            run = sm.SafeMigrationRun(request, journal, stack=ps.PacemakerStack() if journal is None else None)
            # the one driver loop of clovm migrate, shared with the SPARC stack
            fin = await rme.drive(
                run,
                PcmkEnv(lay, host, scale, started),
                lambda: (time.time() - started) * scale,
                persist,
                out,
                err,
            )
            return fin, persist.journal if persist.journal is not None else journal
    except mj.Refused as e:
        return mj.refuse(err, PROG, e.code, str(e)), None


def safe_migration(
    home: Path | str, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[mig.Finished, dict[str, Any] | None]:
    """Synchronous wrapper of :func:`safe_migration_async` (^C: :func:`clovm.runtime.migrate_journal.run_interruptible`)."""
    return mj.run_interruptible(safe_migration_async(home, host, request, out, err), err, request.domain)


def recorded(home: Path | str, host: str, *, finished: bool = False) -> list[str]:
    """VMs with a clovm migrate journal in progress on ``host`` (``finished``: or done)."""
    return mj.recorded(Dirs(L.layout_for(home)).migrate_dir(host), finished=finished)


def journals(home: Path | str, host: str, domain: str = "") -> list[tuple[Path, dict[str, Any]]]:
    """(path, journal) of ``domain``'s run in progress (else its last finished one), or of every
    VM's on ``host``; ValueError if one does not parse."""
    directory = Dirs(L.layout_for(home)).migrate_dir(host)
    found = (mj.load_first(directory, d) for d in ([domain] if domain else recorded(home, host, finished=True)))
    return [f for f in found if f is not None]


def arm_abort(home: Path | str, vm: str) -> str:
    """Fault injection: the next (or running) live migration of ``vm`` fails after the copy (its
    hypervisor kills it, as a real failed hand-off leaves the VM stopped)."""
    if not L.is_vm(vm):
        raise ClovmError(codes.NOT_A_VM, f"{vm!r} is not a VM: one of {', '.join(L.VMS)}")
    lay, _ = _home_of(home)
    host = api.where(home, vm)
    if host is None:
        raise ClovmError(codes.VM_NOT_RUNNING, f"{vm} runs on no host")
    try:
        rpc.call_unix_sync(lay.socket(host), "arm_abort", HVD_TIMEOUT, domain=vm)
    except rpc.RpcError as e:
        raise ClovmError(codes.REMOTE_ERROR, f"{host}: {e.message}") from None
    return f"migration of {vm} (from {host}) will fail after the copy"


__all__ = [
    "POINTS",
    "Dirs",
    "PcmkEnv",
    "arm_abort",
    "journals",
    "recorded",
    "run_in",
    "safe_migration",
    "safe_migration_async",
    "where_of",
]
