"""One Rucio API call in a child process: `python rucio_worker.py REQUEST.json` (result on stdout).

Runs under whichever Python has `rucio.client` (the pilot's own, or the interpreter of the `rucio` command a site
sets up), so the pilot needs no Rucio install itself, and a hung download or upload can be killed like any other
tool. Standalone on purpose: it must not import the pilot package, which that interpreter may not see.

request: {"op": "download"|"upload", "item": {... DownloadClient/UploadClient item ...}, "summary": path,
          "trace": {trace fields} or null}
result (one JSON object on the last stdout line): {"ok": bool, "state": clientState, "error": exception class,
          "message": text, "adler32", "md5", "bytes", "pfn"}
"""

import json
import logging
import sys


def download(item, trace):
    from rucio.client.downloadclient import DownloadClient

    client = DownloadClient(logger=_Log("rucio.download"), tracing=trace is not None)
    call = client.download_pfns if item.get("pfn") else client.download_dids
    results = call([item], num_threads=1, trace_custom_fields=trace or {}, deactivate_file_download_exceptions=True)
    result = results[0] if results else {}
    state = str(result.get("clientState", "FAILED")).split(".")[-1]  # an enum in recent clients
    return {"ok": state in ("DONE", "ALREADY_DONE"), "state": state, "adler32": result.get("adler32"),
            "md5": result.get("md5"), "bytes": result.get("bytes"), "pfn": item.get("pfn") or "",
            "error": "" if state in ("DONE", "ALREADY_DONE") else state, "message": result.get("error") or state}


def upload(item, summary, trace):
    from rucio.client.uploadclient import UploadClient

    client = UploadClient(logger=_Log("rucio.upload"), tracing=trace is not None)
    client.upload([item], summary_file_path=summary, ignore_availability=True)
    with open(summary) as handle:
        info = next(iter(json.load(handle).values()), {})
    return {"ok": True, "state": "DONE", "adler32": info.get("adler32"), "md5": info.get("md5"),
            "bytes": info.get("bytes"), "pfn": info.get("pfn") or "", "error": "", "message": ""}


class _Log:
    """Rucio 41's clients call their `logger` argument and its `.log`, depending on the path: give them both."""

    def __init__(self, name):
        self.log = logging.getLogger(name).log

    def __call__(self, *args, **kwargs):
        self.log(*args, **kwargs)


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    try:
        if request["op"] == "download":
            result = download(request["item"], request.get("trace"))
        else:
            result = upload(request["item"], request["summary"], request.get("trace"))
    except ImportError as exc:
        result = {"ok": False, "state": "FAILED", "error": "ImportError", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - every Rucio failure is reported to the pilot, which maps it to a code
        message = " ".join(str(getattr(exc, "_message", "") or exc).split())
        result = {"ok": False, "state": "FAILED", "error": type(exc).__name__, "message": message[:1000]}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
