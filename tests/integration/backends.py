"""Real storage backends for the copytool integration tests, on 127.0.0.1 only.

``tests/servers/backends/install.sh`` installs (idempotently) the XRootD server and client tools, gfal2 CLI and
python3-gfal2, nginx WebDAV, openssl and voms-clients; ``up.sh BASE`` starts a test PKI, an XRootD server (root://
plus http and https/davs on one port, adler32 computed server side) and nginx WebDAV (http + https, no checksums);
``down.sh BASE`` stops them by their PID files.

Use from a conftest::

    from tests.integration.backends import storage_servers_fixture
    storage_servers = storage_servers_fixture()

and in a test::

    def test_x(storage_servers):
        url, adler = storage_servers.put_file("dir/in.bin", b"data")          # root://127.0.0.1:21094//dir/in.bin
        subprocess.run(["xrdcp", url, "/tmp/x"], env=storage_servers.client_env(), check=True, timeout=60)

Nothing is skipped: what is missing is installed, and a server that does not come up in bounded time is an error.
"""

import contextlib
import errno
import fcntl
import json
import math
import os
import pwd
import shutil
import subprocess
import tempfile
import zlib
from typing import Dict, Iterator, Optional, Tuple, Union

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(os.path.dirname(HERE), "servers", "backends")
DEFAULT_BASE = os.environ.get("PILOT_TEST_BACKENDS_BASE", "/tmp/pilot-test-backends")
INSTALL_TIMEOUT = 900   # cold apt install is about 1 min here; the apt lock wait (DPkg::Lock::Timeout) is 600 s
UP_TIMEOUT = 180        # up.sh bounds each server to READY_TIMEOUT (20 s) x 3 attempts; a cold start takes ~2 s
DOWN_TIMEOUT = 30
CLIENT_TIMEOUT = 60

# put_file / url / path server names -> (servers.json key of the base URL, data dir key, owner key)
SERVERS = {
    "xrootd": ("xrootd_root", "xrootd_data", "xrootd_user"),
    "xrootd_http": ("xrootd_http", "xrootd_data", "xrootd_user"),
    "xrootd_https": ("xrootd_https", "xrootd_data", "xrootd_user"),
    "xrootd_davs": ("xrootd_davs", "xrootd_data", "xrootd_user"),
    "webdav": ("webdav_http", "webdav_data", "webdav_user"),
    "webdav_http": ("webdav_http", "webdav_data", "webdav_user"),
    "webdav_https": ("webdav_https", "webdav_data", "webdav_user"),
    "webdav_davs": ("webdav_davs", "webdav_data", "webdav_user"),
}


class BackendError(RuntimeError):
    """A backend could not be installed, started or used."""


def adler32(data: bytes) -> str:
    """Adler-32 as the grid tools print it: 8 lower-case hex digits."""
    return "%08x" % (zlib.adler32(data) & 0xFFFFFFFF)


def _tail(text: Optional[str], limit: int = 3000) -> str:
    return (text or "")[-limit:]


def _run_script(args, timeout: float, what: str, env=None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["bash"] + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise BackendError(f"{what} did not finish within {timeout:.0f} s\nstdout:\n{_tail(out)}\n"
                           f"stderr:\n{_tail(err)}") from None
    if done.returncode != 0:
        raise BackendError(f"{what} failed (exit {done.returncode})\nstdout:\n{_tail(done.stdout)}\n"
                           f"stderr:\n{_tail(done.stderr)}")
    return done


def install(rucio: bool = False) -> None:
    """Install the server and client packages (a no-op taking well under a second once done)."""
    _run_script([os.path.join(SCRIPTS, "install.sh")] + (["--rucio"] if rucio else []), INSTALL_TIMEOUT,
                "tests/servers/backends/install.sh")


class StorageServers:
    """The running backends of one ``up.sh BASE``; attributes come from BASE/servers.json.

    URLs (all end with ``/``; XRootD paths are absolute, hence ``root://host:port//dir/f``):
      xrootd_root   root://127.0.0.1:PORT/            xrootd_http   http://127.0.0.1:HPORT/
      xrootd_https  https://127.0.0.1:HPORT/          xrootd_davs   davs://127.0.0.1:HPORT/   (same port as http)
      webdav_http   http://127.0.0.1:DPORT/           webdav_https  https://127.0.0.1:DSPORT/
      webdav_davs   davs://127.0.0.1:DSPORT/
    Dirs: xrootd_data, webdav_data (what the servers store, readable by the tests), ca_dir (X509_CERT_DIR),
    voms_dir (X509_VOMS_DIR), pki; files: ca_file, user_cert, user_key, host_cert, host_key, proxy (plain
    RFC 3820, 12 h), voms_proxy (RFC 3820 + VOMS AC /testvo/Role=production, 12 h; None without voms-clients).
    """

    def __init__(self, base: str):
        self.base = base
        with open(os.path.join(base, "servers.json")) as handle:
            self.info = json.load(handle)
        info = self.info
        self.ports: Dict[str, int] = dict(info["ports"])
        self.xrootd_root: str = info["xrootd_root"]
        self.xrootd_http: str = info["xrootd_http"]
        self.xrootd_https: str = info["xrootd_https"]
        self.xrootd_davs: str = info["xrootd_davs"]
        self.xrootd_data: str = info["xrootd_data"]
        self.xrootd_log: str = info["xrootd_log"]
        self.webdav_http: str = info["webdav_http"]
        self.webdav_https: str = info["webdav_https"]
        self.webdav_davs: str = info["webdav_davs"]
        self.webdav_data: str = info["webdav_data"]
        self.webdav_log: str = info["webdav_log"]
        self.pki: str = info["pki"]
        self.ca_dir: str = info["ca_dir"]
        self.ca_file: str = info["ca_file"]
        self.voms_dir: str = info["voms_dir"]
        self.user_cert = os.path.join(self.pki, "usercert.pem")
        self.user_key = os.path.join(self.pki, "userkey.pem")
        self.host_cert = os.path.join(self.pki, "hostcert.pem")
        self.host_key = os.path.join(self.pki, "hostkey.pem")
        self.proxy: str = info["proxy"]
        self.voms_proxy: Optional[str] = info.get("voms_proxy") or None
        self._proxies = 0

    def __repr__(self) -> str:
        return f"StorageServers({self.base!r}, xrootd={self.xrootd_root}, webdav={self.webdav_https})"

    # --- environment -------------------------------------------------------------------------------------------
    @property
    def env(self) -> Dict[str, str]:
        """Variables to overlay on os.environ for xrdcp/xrdfs/gfal-*/curl and the pilot's copytools."""
        return {
            "X509_CERT_DIR": self.ca_dir,
            "X509_VOMS_DIR": self.voms_dir,
            "X509_USER_PROXY": self.voms_proxy or self.proxy,
            # the gfal-* wrappers need a python that imports gfal2: Debian's, not the pyenv/venv one on PATH
            "GFAL_PYTHONBIN": "/usr/bin/python3",
            # fail fast instead of xrdcp's default minutes of reconnecting
            "XRD_CONNECTIONRETRY": "1",
        }

    def client_env(self, **extra: str) -> Dict[str, str]:
        """os.environ + env + extra: ready for subprocess.run(..., env=...)."""
        merged = dict(os.environ)
        merged.update(self.env)
        merged.update(extra)
        return merged

    # --- URLs and files ---------------------------------------------------------------------------------------
    def url(self, name: str, server: str = "xrootd") -> str:
        """URL of NAME (a relative path such as 'dir/f.bin') on SERVER (see SERVERS)."""
        url_key = self._server(server)[0]
        base = getattr(self, url_key)
        name = name.lstrip("/")
        return base + "/" + name if server == "xrootd" else base + name

    def path(self, name: str, server: str = "xrootd") -> str:
        """Where SERVER keeps NAME on disk."""
        data_key = self._server(server)[1]
        return os.path.join(getattr(self, data_key), name.lstrip("/"))

    def put_file(self, name: str, data: Union[bytes, str], server: str = "xrootd") -> Tuple[str, str]:
        """Pre-place a replica: write DATA as NAME straight into SERVER's data dir (owned by the server's user,
        parent dirs created) and return (url, adler32)."""
        if isinstance(data, str):
            data = data.encode()
        _, data_key, owner_key = self._server(server)
        root = getattr(self, data_key)
        target = self.path(name, server)
        if not os.path.realpath(target).startswith(os.path.realpath(root) + os.sep):
            raise ValueError(f"{name!r} is outside the data dir")
        owner = pwd.getpwnam(self.info[owner_key])
        folder = os.path.dirname(target)
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            os.mkdir(folder, 0o755)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        # a new inode: XRootD caches checksums in xattrs keyed on the mtime (1 s resolution)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
            os.rename(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return self.url(name, server), adler32(data)

    def read_file(self, name: str, server: str = "xrootd") -> bytes:
        with open(self.path(name, server), "rb") as handle:
            return handle.read()

    def xrootd_checksum(self, name: str, kind: str = "adler32") -> str:
        """The checksum the XRootD server computes (xrdfs query checksum), e.g. '0a1b2c3d'."""
        path = "/" + name.lstrip("/")
        if kind != "adler32":
            path += "?cks.type=" + kind
        done = subprocess.run(["xrdfs", self.xrootd_root, "query", "checksum", path], capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, env=self.client_env(), stdin=subprocess.DEVNULL)
        words = done.stdout.split()
        if done.returncode != 0 or len(words) < 2 or words[0] != kind:
            raise BackendError(f"xrdfs query checksum {path}: rc={done.returncode} {done.stdout} {done.stderr}")
        return words[1]

    # --- proxies ----------------------------------------------------------------------------------------------
    def make_proxy(self, path: Optional[str] = None, minutes: Optional[float] = None,
                   seconds: Optional[float] = None, expired: bool = False, voms: bool = False,
                   ac_seconds: Optional[float] = None) -> str:
        """Make an X.509 proxy of the test user and return its path.

        Lifetime: ``seconds`` or ``minutes`` from now (default 12 h); ``expired=True`` gives one that ended an
        hour ago (``seconds <= 0`` does too). ``voms=True`` adds a VOMS AC (/testvo/Role=production, made by
        voms-proxy-fake) valid for ``ac_seconds`` (default: the proxy's lifetime; times have 1 s resolution).
        Plain proxies are RFC 3820 (proxyCertInfo critical, inheritAll): file = proxy cert + key + user cert.
        """
        if expired:
            lifetime = -3600
        elif seconds is not None:
            lifetime = int(seconds)
        elif minutes is not None:
            lifetime = int(minutes * 60)
        else:
            lifetime = 12 * 3600
        if path is None:
            self._proxies += 1
            path = os.path.join(self.pki, "proxies", f"x509up_{self._proxies}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if voms:
            _voms_proxy(self, path, lifetime, lifetime if ac_seconds is None else int(ac_seconds))
        else:
            _rfc_proxy(self.user_cert, self.user_key, path, lifetime)
        return path

    def _server(self, server: str):
        try:
            return SERVERS[server]
        except KeyError:
            raise ValueError(f"unknown server {server!r}; one of {sorted(SERVERS)}") from None


def _rfc_proxy(cert_file: str, key_file: str, out: str, lifetime: int) -> None:
    """An RFC 3820 proxy signed by the user key (python 'cryptography'; exact lifetime, negative = expired)."""
    import datetime as dt
    import random

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    with open(cert_file, "rb") as handle:
        user_cert = x509.load_pem_x509_certificate(handle.read())
    with open(key_file, "rb") as handle:
        user_key = serialization.load_pem_private_key(handle.read(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serial = random.getrandbits(31) | 1
    subject = x509.Name(list(user_cert.subject) + [x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    not_after = now + dt.timedelta(seconds=lifetime)
    not_before = min(now - dt.timedelta(minutes=5), not_after - dt.timedelta(hours=1))
    # ProxyCertInfo (1.3.6.1.5.5.7.1.14) = SEQUENCE { SEQUENCE { id-ppl-inheritAll (1.3.6.1.5.5.7.21.1) } }
    pci = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14"),
                                     bytes.fromhex("300c300a06082b06010505071501"))
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=True, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(user_cert.subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(pci, critical=True).add_extension(usage, critical=True)
            .sign(user_key, hashes.SHA256()))
    pem = (cert.public_bytes(serialization.Encoding.PEM)
           + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
           + user_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out, pem)


def _voms_proxy(servers: StorageServers, out: str, lifetime: int, ac_lifetime: int) -> None:
    """voms-proxy-fake takes whole hours; -pastproxy/-pastac shift the start so that the end is now+lifetime."""
    if shutil.which("voms-proxy-fake") is None:
        raise BackendError("voms-proxy-fake not found (Debian voms-clients): run tests/servers/backends/install.sh")
    hours = max(1, math.ceil(lifetime / 3600))
    ac_hours = max(1, math.ceil(ac_lifetime / 3600))
    tmp = out + ".tmp"
    cmd = ["voms-proxy-fake", "-q", "-rfc", "-cert", servers.user_cert, "-key", servers.user_key,
           "-hostcert", servers.host_cert, "-hostkey", servers.host_key, "-voms", "testvo",
           "-uri", "localhost:15000", "-fqan", "/testvo/Role=production/Capability=NULL", "-fqan", "/testvo",
           "-hours", str(hours), "-pastproxy", str(hours * 3600 - lifetime),
           "-vomslife", str(ac_hours), "-pastac", str(ac_hours * 3600 - ac_lifetime), "-out", tmp]
    env = servers.client_env(HOME=servers.pki)   # voms-proxy-fake complains about a missing $HOME/.rnd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not os.path.exists(tmp):
        raise BackendError(f"voms-proxy-fake failed: rc={done.returncode} {done.stdout} {done.stderr}")
    os.chmod(tmp, 0o600)
    os.replace(tmp, out)


def _write_private(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# --- life cycle -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _base_lock(base: str) -> Iterator[str]:
    """Hold BASE.lock for the session. If another live session holds it, use BASE-<pid> instead (its own ports
    are then picked by up.sh), so two pytest runs never stop each other's servers."""
    candidates = [base, f"{base}-{os.getpid()}"]
    for candidate in candidates:
        os.makedirs(os.path.dirname(candidate) or "/", exist_ok=True)
        handle = open(candidate + ".lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        try:
            yield candidate
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            if candidate != base:
                shutil.rmtree(candidate, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(candidate + ".lock")
        return
    raise BackendError(f"could not lock {base}.lock")


def stop(base: str) -> None:
    _run_script([os.path.join(SCRIPTS, "down.sh"), base], DOWN_TIMEOUT, "tests/servers/backends/down.sh")


@contextlib.contextmanager
def running_storage_servers(base: Optional[str] = None,
                            ports: Optional[Dict[str, int]] = None) -> Iterator[StorageServers]:
    """Install what is missing, start the servers under BASE, yield them, stop them (also on errors).
    PORTS: preferred ports by up.sh variable (XRD_PORT, XRD_HTTP_PORT, DAV_PORT, DAVS_PORT; default the recipe's
    21094, 21095, 21080, 21443); a port in use is replaced by a free one. The servers also stop if this process
    dies (up.sh's watchdog on OWNER_PID)."""
    install()
    with _base_lock(base or DEFAULT_BASE) as locked:
        env = dict(os.environ, OWNER_PID=str(os.getpid()))
        env.update({key: str(value) for key, value in (ports or {}).items()})
        try:
            _run_script([os.path.join(SCRIPTS, "up.sh"), locked], UP_TIMEOUT, "tests/servers/backends/up.sh",
                        env=env)
            servers = StorageServers(locked)
        except BaseException:
            with contextlib.suppress(BackendError):
                stop(locked)
            raise
        try:
            yield servers
        finally:
            stop(locked)


def storage_servers_fixture(name: str = "storage_servers", base: Optional[str] = None):
    """A session-scoped pytest fixture NAME yielding a running StorageServers (see module doc)."""

    @pytest.fixture(scope="session", name=name)
    def _storage_servers(request):
        with running_storage_servers(base) as servers:
            yield servers

    return _storage_servers


# --- opt-in: a real Rucio server with RSEs on these storage servers ------------------------------------------------
class RucioServer:
    """A Rucio 41 server (sqlite, userpass ddmlab/secret, account root) started by up-rucio.sh.

    RSEs (deterministic, lfn2pfn 'hash'; scopes 'test' and 'user.root'): XRD_TEST (root:// on the XRootD server),
    HTTPS_TEST (https, webdav impl) and DAVS_TEST (davs, gfal impl) on XrdHttp, WEBDAV_TEST (davs on nginx, gfal
    impl, verify_checksum False), POSIX_TEST (file://posix_dir). Clients: ``python`` / ``rucio`` of the
    rucio-clients venv (Debian python3, gfal2 importable), with ``env`` (RUCIO_CONFIG + the storage env).
    """

    def __init__(self, servers: StorageServers):
        self.servers = servers
        with open(os.path.join(servers.base, "rucio", "rucio.json")) as handle:
            self.info = json.load(handle)
        self.url: str = self.info["url"]
        self.port: int = self.info["port"]
        self.config: str = self.info["config"]
        self.account: str = self.info["account"]
        self.username: str = self.info["username"]
        self.password: str = self.info["password"]
        self.rses = self.info["rses"].split()
        self.posix_dir: str = self.info["posix_dir"]
        self.traces_dir: str = self.info["traces"]
        self.log: str = self.info["log"]
        self.venv: str = self.info["cli_venv"]
        self.python = os.path.join(self.venv, "bin", "python")
        self.rucio = os.path.join(self.venv, "bin", "rucio")

    @property
    def env(self) -> Dict[str, str]:
        return dict(self.servers.env, RUCIO_CONFIG=self.config)

    def client_env(self, **extra: str) -> Dict[str, str]:
        return self.servers.client_env(RUCIO_CONFIG=self.config, **extra)


def start_rucio(servers: StorageServers) -> RucioServer:
    install(rucio=True)
    try:
        _run_script([os.path.join(SCRIPTS, "up-rucio.sh"), servers.base], UP_TIMEOUT,
                    "tests/servers/backends/up-rucio.sh", env=dict(os.environ))
        return RucioServer(servers)
    except BaseException:
        stop_rucio(servers)
        raise


def stop_rucio(servers: StorageServers) -> None:
    with contextlib.suppress(BackendError):
        _run_script([os.path.join(SCRIPTS, "down.sh"), servers.base, "rucio"], DOWN_TIMEOUT,
                    "tests/servers/backends/down.sh rucio")


def rucio_server_fixture(name: str = "rucio_server", storage: str = "storage_servers"):
    """A session-scoped fixture NAME yielding a RucioServer on the storage servers of fixture STORAGE.
    Opt-in: only tests that ask for it pay for the install (~40 s once) and the start (~3 s)."""

    @pytest.fixture(scope="session", name=name)
    def _rucio_server(request):
        servers = request.getfixturevalue(storage)
        rucio = start_rucio(servers)
        try:
            yield rucio
        finally:
            stop_rucio(servers)

    return _rucio_server
