"""The pipeline's supervisor (the main thread): a signal is acted on whichever of the pilot's threads took it."""

import json
import signal
import threading
import time

from pilot.config import load_config
from pilot.context import Context, Paths
from pilot.main import make_channel
from pilot.pipeline import HANDLED_SIGNALS, Pipeline
from pilot.queuedata import BUILTIN_LOCAL, from_dict
from pilot.settings import Settings


def test_a_signal_taken_by_a_worker_thread_still_stops_the_pilot(tmp_path):
    """The kernel may hand a signal sent to the pilot to any thread; its handler runs only when the main thread
    runs bytecode. Here the execute thread takes the SIGTERM (pthread_kill) while the main thread waits for the
    end of a 20 s payload: the pilot must still stop within seconds with 143, not finish the job and exit 0."""
    main, jobs, storage = (tmp_path / name for name in ("main", "jobs", "storage"))
    for folder in (main, jobs, storage):
        folder.mkdir()
    started = tmp_path / "started"
    (jobs / "77.json").write_text(json.dumps({
        "PandaID": "77", "transformation": "sh", "jobPars": f"-c 'touch {started}; sleep 20'",
        "logFile": "77.job.log.tgz", "logGUID": "00000000-0000-4000-8000-000000000077", "scopeLog": "test"}))
    config = load_config(env={"PILOT_CFG_PILOT_ABORT_GRACE": "15", "PILOT_CFG_PILOT_KILL_GRACE": "1"})
    ctx = Context(config=config, settings=Settings(queue="LOCAL"), queuedata=from_dict(dict(BUILTIN_LOCAL), "LOCAL"),
                  paths=Paths(source=str(tmp_path), main=str(main), input_dir=str(storage),
                              output_dir=str(storage)), lifetime=3600.0)
    pipeline = Pipeline(ctx, make_channel(ctx, f"local:{jobs}"))
    previous = {name: signal.getsignal(getattr(signal, name)) for name in HANDLED_SIGNALS}
    sent = []

    def shoot():
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        execute = pipeline.by_name["execute"]
        sent.append(time.monotonic())
        signal.pthread_kill(execute.ident, signal.SIGTERM)

    pipeline.install_signal_handlers()
    try:
        threading.Thread(target=shoot, daemon=True).start()
        code = pipeline.run()
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
    took = time.monotonic() - sent[0]
    assert code == 143 and ctx.signum == signal.SIGTERM, (code, ctx.abort_reason)
    assert took < 10, f"the signal waited {took:.1f} s for the main thread"
    final = [name for name in (main / "reports" / "77").iterdir() if name.name.endswith(".final.json")]
    assert len(final) == 1 and json.loads(final[0].read_text())["pilotErrorCode"] == 1201
