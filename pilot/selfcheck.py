"""`pilot --check -q QUEUE`: can this worker node run the queue's jobs? A table, and an exit code that says why not.

Each line is one fact an admin would otherwise look up by hand: Python and dependency versions, free disk and
memory, cores, the copytools and container runtimes the queue needs and whether they are on PATH, proxy or
token lifetime, and whether the PanDA server answers /api/v1/system/is_alive. A blocking problem exits with the
pilot's shell code for it (Pilot 3 table): 69 no space, 68 proxy, 71/72/78 queue data, 79 server; any other
blocking problem (a copytool or container runtime missing) exits 1 with the PanDA code shown in the table.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional, Tuple

from . import __version__
from .errors import PilotError, shell_exit_code

# copytool name -> the command it needs on PATH (None: pure Python); names not listed need the command of their name
COPYTOOL_COMMANDS = {"mv": None, "xrdcp": "xrdcp", "gfal": "gfal-copy", "gfalcopy": "gfal-copy", "rucio": "rucio",
                     "s3": None, "objectstore": None}


RUNTIME_DEPENDENCIES = ("requests", "psutil")


def require_dependencies() -> None:
    """A Python without requests or psutil would take a job it cannot talk about or watch: stop before that (1342).

    Only looked up, not imported (both are loaded later, where used): importing them here would cost every
    pilot start some 20 MB and a quarter of a second.
    """
    import importlib.util

    missing = []
    for module in RUNTIME_DEPENDENCIES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken package, or one hidden by the environment
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise PilotError(1342, f"Python module(s) {', '.join(missing)} missing in {sys.executable}: install "
                               f"them (pip install -r requirements.txt) or run the pilot with another Python")


class Row:
    def __init__(self, item: str, value: str, ok: bool = True, code: int = 0, blocking: bool = True):
        self.item, self.value, self.ok, self.code, self.blocking = item, value, ok, code, blocking


def _version(module: str) -> Optional[str]:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return getattr(imported, "__version__", "?")


def gather(settings, config) -> List[Row]:
    import platform  # here, not at module level: every pilot start imports this module for the dependency check

    from .queuedata import load_queuedata

    rows = [Row("pilot", __version__), Row("python", f"{platform.python_version()} ({sys.executable})",
                                           sys.version_info >= (3, 9), 1008)]
    for module in RUNTIME_DEPENDENCIES:
        version = _version(module)
        rows.append(Row(module, version or "MISSING", version is not None, 1342))
    free = shutil.disk_usage(settings.workdir or os.getcwd()).free
    need = config.pilot.free_space_limit_mb * 1024 * 1024
    rows.append(Row("free disk", f"{free / 2**30:.1f} GiB in {settings.workdir or os.getcwd()} (need "
                                 f"{need / 2**30:.1f} GiB)", free >= need, 1098))
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    rows.append(Row("memory", f"{pages * size / 2**30:.1f} GiB", blocking=False))
    rows.append(Row("cores", f"{os.cpu_count()} ({platform.machine()})", blocking=False))
    try:
        from .main import queuedata_sources

        queue = load_queuedata(settings.queue, timeout=config.information.download_timeout, attempts=1,
                               sources=queuedata_sources(settings, config, os.getcwd()))
    except PilotError as exc:
        rows.append(Row("queue data", exc.diag, False, exc.code))
        return rows
    rows.append(Row("queue data", f"{queue.name}: state {queue.state}, status {queue.status}"))
    from .registry import COPYTOOLS

    needed = sorted({tool for tools in queue.acopytools.values() for tool in tools} | set(queue.copytools))
    for tool in needed:
        command = COPYTOOL_COMMANDS.get(tool, tool)
        path = shutil.which(command) if command else "built in"
        rows.append(Row(f"copytool {tool}", path or f"{command} not on PATH", bool(path),
                        1323 if tool not in COPYTOOLS else 1099))
    from .payload.containers import parse_container_type
    from .registry import CONTAINER_RUNTIMES

    wanted = parse_container_type(queue.container_type).get("pilot")
    for runtime in CONTAINER_RUNTIMES.names():
        plugin = CONTAINER_RUNTIMES.get(runtime)
        path = shutil.which(plugin.command)
        if runtime == wanted:
            rows.append(Row(f"container {runtime}", path or "NOT on PATH (the queue needs it)", bool(path),
                            plugin.missing_code))
        elif path:
            rows.append(Row(f"container {runtime}", path, blocking=False))
    rows += _credentials(settings, config)
    rows += _node(settings, config, queue)
    if settings.url or os.environ.get("PANDA_SERVER_URL"):
        rows.append(_server(settings, config))
    return rows


def _credentials(settings, config) -> List[Row]:
    from .monitor.proxy import check_proxy, proxy_path, remaining_seconds

    rows = []
    path = proxy_path()
    if settings.verify_proxy and (os.environ.get("X509_USER_PROXY") or os.path.exists(path)):
        problem = check_proxy(path, config.pilot.proxy_min_lifetime_start, 1382)
        if problem:
            rows.append(Row("X509 proxy", problem[1], False, problem[0]))
        else:
            rows.append(Row("X509 proxy", f"{path}: {remaining_seconds(path) / 3600:.1f} h left"))
    token = os.environ.get("OIDC_AUTH_TOKEN") or os.environ.get("PANDA_AUTH_TOKEN")
    if token:
        folder = os.environ.get("OIDC_AUTH_DIR") or os.environ.get("PANDA_AUTH_DIR") or os.getcwd()
        token_path = token if os.path.isabs(token) else os.path.join(folder, token)
        rows.append(_token_row(token_path, settings, config))
    return rows


def _token_row(path: str, settings, config) -> Row:
    """The token's real lifetime: its `exp` claim, decoded without verifying the signature (never printed)."""
    import time

    from .monitor.credentials import token_file_expiry

    try:
        expiry = token_file_expiry(path)
    except OSError as exc:
        return Row("token", f"{path} not readable: {exc.strerror}", False, 1163)
    except ValueError as exc:
        return Row("token", f"{path}: {exc}", False, 1163)
    if expiry is None:
        return Row("token", f"{path}: no exp claim (lifetime unknown)", blocking=False, ok=True)
    left = expiry - time.time()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(expiry))
    if left <= 0:
        return Row("token", f"{path}: expired {-left:.0f} s ago ({when} UTC)", False, 1163)
    renewal = "renewed through the server while jobs run" if settings.token_renewal else "no renewal (-y)"
    return Row("token", f"{path}: {left / 3600:.2f} h left (exp {when} UTC; {renewal})",
               ok=left >= config.token.renew_before, code=1163, blocking=False)



def _node(settings, config, queue) -> List[Row]:
    """CVMFS (when the queue needs it) and an announced shutdown (machine/job features)."""
    import time

    from .monitor import cvmfs
    from .monitor.features import shutdown_time

    rows = []
    if cvmfs.wanted(settings, config, queue):
        problem = cvmfs.check_node(config)
        repos = ", ".join(cvmfs.repositories(config)) or config.pilot.cvmfs_root
        rows.append(Row("CVMFS", problem[1] if problem else f"{repos}: available", not problem,
                        problem[0] if problem else 0))
    announced = shutdown_time()
    if announced:
        when, where = announced
        left = when - time.time() - config.pilot.shutdown_margin
        rows.append(Row("node shutdown", f"{where}: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(when))} UTC, "
                                         f"{max(0.0, left):.0f} s usable", left >= config.pilot.min_job_time, 1213))
    return rows


def _server(settings, config) -> Row:
    from .channels.panda import server_url
    from .net import Client, NetError, trust

    url = server_url(settings.url or os.environ.get("PANDA_SERVER_URL", ""), settings.port, config.pilot.pandaserver)
    try:
        with Client(trust(settings.cacert, settings.capath), (10, 20), {"Accept": "application/json"}) as client:
            reply = client.get(f"{url}/api/v1/system/is_alive")
        ok = reply.status_code == 200
        return Row("PanDA server", f"{url}: HTTP {reply.status_code} {reply.text.strip()[:60]}", ok, 1318)
    except NetError as exc:
        return Row("PanDA server", f"{url}: {exc.message.split(':')[0]}", False, 1318)


def render(rows: List[Row]) -> str:
    width = max(len(row.item) for row in rows)
    lines = [f"{'check':<{width}}  {'result':<6}  details", "-" * (width + 60)]
    for row in rows:
        status = "ok" if row.ok else ("FAIL" if row.blocking else "warn")
        code = f"  [{row.code}]" if not row.ok else ""
        lines.append(f"{row.item:<{width}}  {status:<6}  {row.value}{code}")
    return "\n".join(lines)


def exit_code(rows: List[Row]) -> Tuple[int, int]:
    """(shell exit code, PanDA code) of the first blocking failure; (0, 0) when the node is usable."""
    for row in rows:
        if not row.ok and row.blocking:
            return shell_exit_code(row.code), row.code
    return 0, 0


def run_check(settings) -> int:
    from .config import load_config

    rows = gather(settings, load_config(settings.config or None))
    print(render(rows))
    code, panda_code = exit_code(rows)
    print(f"\nnode {'can' if code == 0 else 'CANNOT'} run jobs of queue {settings.queue}"
          + (f" (PanDA code {panda_code}, exit {code})" if code else ""))
    return code
