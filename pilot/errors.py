"""PanDA pilot error codes, the pilot exception and the pilot's shell exit codes.

The numbers and messages are part of the PanDA server/monitor contract (inherited from Pilot 1 and kept by
Pilot 3), so they are data here, never renumbered. A failure anywhere in the pilot ends up as one of these codes
plus a short diagnostic on the job; the pilot process's own exit code follows `shell_exit_code`.
"""

from __future__ import annotations

import enum
import signal as _signal
import threading
from typing import Dict, List, Optional, Tuple

# code: (NAME, standard message) -- the complete Pilot 3 table (147 entries).
ERRORS: Dict[int, Tuple[str, str]] = {
    1008: ('GENERALERROR', 'General pilot error, consult batch log'),
    1098: ('NOLOCALSPACE', 'Not enough local space'),
    1099: ('STAGEINFAILED', 'Failed to stage-in file'),
    1100: ('REPLICANOTFOUND', 'Replica not found'),
    1103: ('NOSUCHFILE', 'No such file or directory'),
    1104: ('USERDIRTOOLARGE', 'User work directory too large'),
    1106: ('STDOUTTOOBIG', 'Payload log or stdout file too big'),
    1110: ('SETUPFAILURE', 'Failed during payload setup'),
    1115: ('NFSSQLITE', 'NFS SQLite locking problems'),
    1116: ('QUEUEDATA', 'Pilot could not download queuedata'),
    1117: ('QUEUEDATANOTOK', 'Pilot found non-valid queuedata'),
    1124: ('OUTPUTFILETOOLARGE', 'Output file too large'),
    1133: ('NOSTORAGE', 'Fetching default storage failed: no activity related storage defined'),
    1137: ('STAGEOUTFAILED', 'Failed to stage-out file'),
    1141: ('PUTMD5MISMATCH', 'md5sum mismatch on output file'),
    1143: ('CHMODTRF', 'Failed to chmod transform'),
    1144: ('PANDAKILL', 'This job was killed by panda server'),
    1145: ('GETMD5MISMATCH', 'md5sum mismatch on input file'),
    1149: ('TRFDOWNLOADFAILURE', 'Transform could not be downloaded'),
    1150: ('LOOPINGJOB', 'Looping job killed by pilot'),
    1151: ('STAGEINTIMEOUT', 'File transfer timed out during stage-in'),
    1152: ('STAGEOUTTIMEOUT', 'File transfer timed out during stage-out'),
    1163: ('NOPROXY', 'Grid proxy not valid'),
    1165: ('MISSINGOUTPUTFILE', 'Local output file is missing'),
    1168: ('SIZETOOLARGE', 'Total file size too large'),
    1171: ('GETADMISMATCH', 'adler32 mismatch on input file'),
    1172: ('PUTADMISMATCH', 'adler32 mismatch on output file'),
    1177: ('NOVOMSPROXY', 'Voms proxy not valid'),
    1180: ('GETGLOBUSSYSERR', 'Globus system error during stage-in'),
    1181: ('PUTGLOBUSSYSERR', 'Globus system error during stage-out'),
    1186: ('NOSOFTWAREDIR', 'Software directory does not exist'),
    1187: ('NOPAYLOADMETADATA', 'Payload metadata does not exist'),
    1190: ('LFNTOOLONG', 'LFN too long (exceeding limit of 255 characters)'),
    1191: ('ZEROFILESIZE', 'File size cannot be zero'),
    1199: ('MKDIR', 'Failed to create directory'),
    1200: ('KILLSIGNAL', 'Job terminated by unknown kill signal'),
    1201: ('SIGTERM', 'Job killed by signal: SIGTERM'),
    1202: ('SIGQUIT', 'Job killed by signal: SIGQUIT'),
    1203: ('SIGSEGV', 'Job killed by signal: SIGSEGV'),
    1204: ('SIGXCPU', 'Job killed by signal: SIGXCPU'),
    1205: ('USERKILL', 'Job killed by user'),
    1206: ('SIGBUS', 'Job killed by signal: SIGBUS'),
    1207: ('SIGUSR1', 'Job killed by signal: SIGUSR1'),
    1208: ('SIGINT', 'Job killed by signal: SIGINT'),
    1211: ('MISSINGINSTALLATION', 'Missing installation'),
    1212: ('PAYLOADOUTOFMEMORY', 'Payload ran out of memory'),
    1213: ('REACHEDMAXTIME', 'Reached batch system time limit'),
    1220: ('UNKNOWNPAYLOADFAILURE', 'Job failed due to unknown reason (consult log file)'),
    1221: ('FILEEXISTS', 'File already exists'),
    1223: ('BADALLOC', 'Transform failed due to bad_alloc'),
    1224: ('ESRECOVERABLE', 'Event service: recoverable error'),
    1228: ('ESFATAL', 'Event service: fatal error'),
    1234: ('EXECUTEDCLONEJOB', 'Clone job is already executed'),
    1235: ('PAYLOADEXCEEDMAXMEM', 'Payload exceeded maximum allowed memory'),
    1236: ('FAILEDBYSERVER', 'Failed by server'),
    1238: ('ESNOEVENTS', 'Event service: no events'),
    1240: ('MESSAGEHANDLINGFAILURE', 'Failed to handle message from payload'),
    1242: ('CHKSUMNOTSUP', 'Query checksum is not supported'),
    1244: ('NORELEASEFOUND', 'No release candidates found'),
    1246: ('NOUSERTARBALL', 'User tarball could not be downloaded from PanDA server'),
    1247: ('BADXML', 'Badly formed XML'),
    1300: ('NOTIMPLEMENTED', 'The class or function is not implemented'),
    1301: ('UNKNOWNEXCEPTION', 'An unknown pilot exception has occurred'),
    1302: ('CONVERSIONFAILURE', 'Failed to convert object data'),
    1303: ('FILEHANDLINGFAILURE', 'Failed during file handling'),
    1305: ('PAYLOADEXECUTIONFAILURE', 'Failed to execute payload'),
    1306: ('SINGULARITYGENERALFAILURE', 'Singularity/Apptainer: general failure'),
    1307: ('SINGULARITYNOLOOPDEVICES', 'Singularity/Apptainer: No more available loop devices'),
    1308: ('SINGULARITYBINDPOINTFAILURE', 'Singularity/Apptainer: Not mounting requested bind point'),
    1309: ('SINGULARITYIMAGEMOUNTFAILURE', 'Singularity/Apptainer: Failed to mount image'),
    1310: ('PAYLOADEXECUTIONEXCEPTION', 'Exception caught during payload execution'),
    1311: ('NOTDEFINED', 'Not defined'),
    1312: ('NOTSAMELENGTH', 'Not same length'),
    1313: ('NOSTORAGEPROTOCOL', 'No protocol defined for storage endpoint'),
    1314: ('UNKNOWNCHECKSUMTYPE', 'Unknown checksum type'),
    1315: ('UNKNOWNTRFFAILURE', 'Unknown transform failure'),
    1316: ('RUCIOSERVICEUNAVAILABLE', 'Rucio: Service unavailable'),
    1317: ('EXCEEDEDMAXWAITTIME', 'Exceeded maximum waiting time'),
    1318: ('COMMUNICATIONFAILURE', 'Failed to communicate with server'),
    1319: ('INTERNALPILOTPROBLEM', 'An internal Pilot problem has occurred (consult Pilot log)'),
    1320: ('LOGFILECREATIONFAILURE', 'Failed during creation of log file'),
    1321: ('RUCIOLOCATIONFAILED', 'Failed to get client location for Rucio'),
    1322: ('RUCIOLISTREPLICASFAILED', 'Failed to get replicas from Rucio'),
    1323: ('UNKNOWNCOPYTOOL', 'Unknown copy tool'),
    1324: ('SERVICENOTAVAILABLE', 'Service not available at the moment'),
    1325: ('SINGULARITYNOTINSTALLED', 'Singularity: not installed'),
    1326: ('NOREPLICAS', 'No matching replicas were found in list_replicas() output'),
    1327: ('UNREACHABLENETWORK', 'Unable to stage-in file since network is unreachable'),
    1328: ('PAYLOADSIGSEGV', 'SIGSEGV: Invalid memory reference or a segmentation fault'),
    1329: ('NONDETERMINISTICDDM', 'Failed to construct SURL for non-deterministic ddm (update CRIC)'),
    1330: ('JSONRETRIEVALTIMEOUT', 'JSON retrieval timed out'),
    1331: ('MISSINGINPUTFILE', 'Input file is missing in storage element'),
    1332: ('BLACKHOLE', 'Black hole detected in file system (consult Pilot log)'),
    1333: ('NOREMOTESPACE', 'No space left on device'),
    1334: ('SETUPFATAL', 'Setup failed with a fatal exception (consult Payload log)'),
    1335: ('MISSINGUSERCODE', 'User code not available on PanDA server (resubmit task with --useNewCode)'),
    1336: ('JOBALREADYRUNNING', 'Job is already running elsewhere'),
    1337: ('BADMEMORYMONITORJSON', 'Memory monitor produced bad output'),
    1338: ('STAGEINAUTHENTICATIONFAILURE', 'Authentication failure during stage-in'),
    1339: ('DBRELEASEFAILURE', 'Local DBRelease handling failed (consult Pilot log)'),
    1340: ('SINGULARITYNEWUSERNAMESPACE', 'Singularity/Apptainer: Failed invoking the NEWUSER namespace runtime'),
    1341: ('BADQUEUECONFIGURATION', 'Bad queue configuration detected'),
    1342: ('MIDDLEWAREIMPORTFAILURE', 'Failed to import middleware (consult Pilot log)'),
    1343: ('NOOUTPUTINJOBREPORT', 'Found no output in job report'),
    1344: ('RESOURCEUNAVAILABLE', 'Resource temporarily unavailable'),
    1345: ('SINGULARITYFAILEDUSERNAMESPACE', 'Singularity/Apptainer: Failed to create user namespace'),
    1346: ('TRANSFORMNOTFOUND', 'Transform not found'),
    1347: ('UNSUPPORTEDSL5OS', 'Unsupported SL5 OS'),
    1348: ('SINGULARITYRESOURCEUNAVAILABLE', 'Singularity/Apptainer: Resource temporarily unavailable'),
    1349: ('UNRECOGNIZEDTRFARGUMENTS', 'Unrecognized transform arguments'),
    1350: ('EMPTYOUTPUTFILE', 'Empty output file detected'),
    1351: ('UNRECOGNIZEDTRFSTDERR', 'Unrecognized fatal error in transform stderr'),
    1352: ('STATFILEPROBLEM', 'Failed to stat proc file for CPU consumption calculation'),
    1353: ('NOSUCHPROCESS', 'CPU consumption calculation failed: No such process'),
    1354: ('GENERALCPUCALCPROBLEM', 'General CPU consumption calculation problem (consult Pilot log)'),
    1355: ('COREDUMP', 'Core dump detected'),
    1356: ('PREPROCESSFAILURE', 'Pre-process command failed'),
    1357: ('POSTPROCESSFAILURE', 'Post-process command failed'),
    1358: ('MISSINGRELEASEUNPACKED', 'Missing release setup in unpacked container'),
    1359: ('PANDAQUEUENOTACTIVE', 'PanDA queue is not active'),
    1360: ('IMAGENOTFOUND', 'Image not found'),
    1361: ('REMOTEFILECOULDNOTBEOPENED', 'Remote file could not be opened'),
    1362: ('XRDCPERROR', 'Xrdcp was unable to open file'),
    1363: ('KILLPAYLOAD', 'Raythena has decided to kill payload'),
    1364: ('MISSINGCREDENTIALS', 'Unable to locate credentials for S3 transfer'),
    1365: ('NOCTYPES', 'Python module ctypes not available on worker node'),
    1366: ('CHECKSUMCALCFAILURE', 'Failure during checksum calculation'),
    1367: ('COMMANDTIMEDOUT', 'Command timed out'),
    1368: ('REMOTEFILEOPENTIMEDOUT', 'Remote file open timed out'),
    1369: ('FRONTIER', 'Frontier error'),
    1370: ('VOMSPROXYABOUTTOEXPIRE', 'VOMS proxy is about to expire'),
    1371: ('BADOUTPUTFILENAME', 'Output file name contains illegal characters'),
    1372: ('APPTAINERNOTINSTALLED', 'Apptainer: not installed'),
    1373: ('CERTIFICATEHASEXPIRED', 'Certificate has expired'),
    1374: ('REMOTEFILEDICTDOESNOTEXIST', 'Remote file open dictionary does not exist'),
    1375: ('LEASETIME', 'Lease time is up'),
    1376: ('LOGCREATIONTIMEOUT', 'Log file creation timed out'),
    1377: ('CVMFSISNOTALIVE', 'CVMFS is not responding'),
    1378: ('LSETUPTIMEDOUT', 'Lsetup command timed out during remote file open'),
    1379: ('PREEMPTION', 'Job was preempted'),
    1380: ('ARCPROXYFAILURE', 'General arcproxy failure'),
    1381: ('ARCPROXYLIBFAILURE', 'Arcproxy failure while loading shared libraries'),
    1382: ('PROXYTOOSHORT', 'Proxy is too short'),
    1383: ('STAGEOUTAUTHENTICATIONFAILURE', 'Authentication failure during stage-out'),
    1384: ('QUEUENOTSETUPFORCONTAINERS', 'Queue is not set up for containers'),
    1385: ('NOJOBSINPANDA', 'No jobs in PanDA'),
    1386: ('PANDAQUEUENOTONLINE', 'PanDA queue is not online'),
}

# Name -> code, e.g. CODES["PAYLOADEXECUTIONFAILURE"] == 1305.
CODES: Dict[str, int] = {name: code for code, (name, _msg) in ERRORS.items()}


class _Code(enum.IntEnum):
    """Prints and serialises as its number (the wire value) on every Python version, not as Class.NAME."""

    def __str__(self) -> str:
        return str(int(self))

    def __format__(self, spec: str) -> str:
        return int(self).__format__(spec)


# The codes by Pilot 3's names, e.g. ErrorCode.INTERNALPILOTPROBLEM == 1319; PilotError.code is one of them.
# Built on first use (`errors.ErrorCode`, through the module __getattr__ below): an IntEnum of 147 members costs
# some 4 ms, and a pilot whose jobs go well never needs it before its payload runs.
_enum_lock = threading.Lock()
_enum: List[type] = []  # the one ErrorCode class, once built (written once, under the lock)


def _error_code_enum() -> type:
    if not _enum:
        with _enum_lock:
            if not _enum:
                _enum.append(_Code("ErrorCode", [(name, code) for code, (name, _msg) in ERRORS.items()]))
    return _enum[0]


def __getattr__(attribute: str):
    if attribute == "ErrorCode":
        return _error_code_enum()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")

# User-job errors the server may retry (Pilot 3's "recoverable" list); informational.
RECOVERABLE_CODES = frozenset({1135, 1136, 1137, 1141, 1152, 1181})

# Signal -> pilot error code (Pilot 3 semantics; 1200 for any other signal).
SIGNAL_CODES: Dict[int, int] = {
    _signal.SIGTERM: 1201,
    _signal.SIGQUIT: 1202,
    _signal.SIGSEGV: 1203,
    _signal.SIGXCPU: 1204,
    _signal.SIGBUS: 1206,
    _signal.SIGUSR1: 1207,
    _signal.SIGINT: 1208,
}

# Pilot error code -> shell exit code of pilot.py (Pilot 3 §2.3). Codes not listed map to 1.
_SHELL_CODES: Dict[int, int] = {
    -1: 64, 1377: 64, 1008: 65, 1199: 66, 1103: 67, 1177: 68, 1163: 68, 1373: 68, 1098: 69, 1301: 70,
    1116: 71, 1117: 72, 1186: 73, 1330: 74, 1332: 75, 1342: 76, 1331: 77, 1359: 78, 1318: 79, 1382: 80,
    1213: 81, 1385: 82, 1386: 83, 1200: 137,
}

MAX_DIAG_LENGTH = 256


def message(code: int) -> str:
    """Standard message of a code ("Unknown error code N" for numbers outside the table)."""
    entry = ERRORS.get(abs(code))
    return entry[1] if entry else f"Unknown error code {code}"


def name(code: int) -> str:
    entry = ERRORS.get(abs(code))
    return entry[0] if entry else "UNKNOWN"


def signal_code(signum: int) -> int:
    """Pilot error code for a kill signal (1200 KILLSIGNAL for signals without their own code)."""
    return SIGNAL_CODES.get(signum, 1200)


def shell_exit_code(code: int, signum: Optional[int] = None) -> int:
    """Exit code of the pilot process.

    A received signal wins: 128 + signal number, the shell's own convention, which also equals every
    signal row of Pilot 3's table (SIGTERM 143, SIGINT 130, SIGUSR1 138, SIGXCPU 152, ...). Otherwise the
    Pilot 3 translation table; 0 stays 0 and any other code is 1.
    """
    if signum:
        return 128 + int(signum)
    if code == 0:
        return 0
    if code in SIGNAL_CODES.values():
        sig = next(s for s, c in SIGNAL_CODES.items() if c == code)
        return 128 + int(sig)
    return _SHELL_CODES.get(code, 1)


def format_diag(code: int, detail: str = "") -> str:
    """One-line diagnostic of at most 256 characters: the detail if given, else the standard message."""
    # a blank detail (only whitespace) counts as none: a reported error never has an empty diagnostic
    text = " ".join(str(detail or "").split()) or message(code)
    if len(text) > MAX_DIAG_LENGTH:
        text = text[: MAX_DIAG_LENGTH - 3] + "..."
    return text


class PilotError(Exception):
    """A failure with a PanDA pilot error code; `diag` is the short text sent to the server. `retry` False: asking
    again cannot help (the caller gives up at once instead of backing off)."""

    retry = True

    def __init__(self, code: int, diag: str = ""):
        if code not in ERRORS:
            raise ValueError(f"unknown pilot error code {code}")
        self.code = _error_code_enum()(code)
        self.diag = format_diag(code, diag)
        super().__init__(f"{code} {name(code)}: {self.diag}")


class CredentialsRefused(PilotError):
    """A server refused the pilot's token or proxy (HTTP 401/403, or a reply saying the role is missing).

    1163 NOPROXY ("Grid proxy not valid", shell exit 68): Pilot 3's code for unusable credentials; there is no
    separate one for tokens. Never retried with the same credentials.
    """

    retry = False

    def __init__(self, diag: str):
        super().__init__(1163, diag)


class ServerNotTrusted(PilotError):
    """The server's TLS certificate did not verify against the pilot's trust (--cacert, --capath, X509_CERT_DIR,
    the system CAs). 1318 COMMUNICATIONFAILURE, at once: a retry with the same trust would fail the same way, so
    the pilot takes no job and a final update stays spooled for a pilot that trusts the server."""

    retry = False

    def __init__(self, diag: str):
        super().__init__(1318, diag)


class StartupSignal(KeyboardInterrupt):
    """A kill signal that came before the pipeline's own handlers were in place (pilot.py installs the raiser
    first thing): start-up stops with the signal's code and exit status, one line, no traceback, no job taken."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# the signals the start-up handler saw, in order: written only by that handler, while the pilot is one thread
_startup_signals: List[int] = []


def raise_startup_signal(signum: int, _frame) -> None:
    _startup_signals.append(signum)
    raise StartupSignal(signum)


def swallowed_startup_signal() -> Optional[int]:
    """A start-up signal whose StartupSignal never reached pilot.py: Python only prints an exception raised where
    it runs a weakref callback or a __del__ (the import lock's clean-up, for one) and goes on. Read once the
    pipeline's own handlers are in place, so that such a signal still stops the pilot before it takes a job."""
    return _startup_signals[0] if _startup_signals else None
