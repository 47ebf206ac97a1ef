#!/usr/bin/env python3
"""Entry point: ./pilot.py -q QUEUE [options]; see README.md."""

import sys

if __name__ == "__main__":
    # a kill signal while the modules load and the pilot starts (before the pipeline's handlers) ends the start-up
    # with the signal's exit status and one line, not a traceback or a silent default death
    try:
        import signal

        from pilot.errors import raise_startup_signal

        for _name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGXCPU", "SIGQUIT", "SIGHUP"):
            if signal.getsignal(getattr(signal, _name)) is not signal.SIG_IGN:
                signal.signal(getattr(signal, _name), raise_startup_signal)
        from pilot.main import main

        code = main()
    except KeyboardInterrupt as exc:  # StartupSignal (pilot.errors) carries the signal number; SIGINT is 2
        signum = getattr(exc, "signum", 2)
        print(f"pilot: interrupted by signal {signum} during start-up", file=sys.stderr)
        code = 128 + signum
    # Everything is reported and written: leave without Python's interpreter teardown, which frees every module
    # and object one by one (~20 ms, most of the time from the final report to the exit). Nothing is lost: the
    # log handlers and the standard streams are flushed here, the pipeline's threads are daemons it has already
    # joined or given up on, and the pilot registers no exit hooks of its own.
    import logging
    import os

    logging.shutdown()
    for _stream in (sys.stdout, sys.stderr):
        try:
            if _stream is not None:  # None: the pilot was started with that descriptor closed
                _stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: there is no reader left to tell
            continue
    os._exit(code)
