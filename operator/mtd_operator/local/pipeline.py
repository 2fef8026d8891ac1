"""`mtd run`: the whole pipeline on this machine (runner.py), then its result served
(serve.py) and asked once per task (asking.py), or, with --no-serve, the task table.

One engine lives through all of it: it scores every evaluation and then serves, so it
needs its port from the start. When an earlier `mtd run`/`mtd serve` of the workspace
still serves, the new adapters go into its engine and nothing restarts.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from mtd_contract.exits import EXIT_FAILED, EXIT_INVALID

from .asking import ask_every_task
from .lock import WorkspaceBusy
from .report import plan_table, task_table
from .runner import LocalRun, raise_interrupted
from .serve import local_engine, read_manifest, serve_forever, start_serving, stop_on_signals


def run_and_serve(
    spec_file: Path,
    workspace: Path,
    host: str,
    port: int,
    engine_port: int | None,
    serve: bool = True,
) -> int:
    """Run the pipeline and serve its result at `host:port` until stopped; the exit code
    (2: the workspace is busy; 1: the pipeline failed or the engine exited)."""
    signal.signal(signal.SIGTERM, raise_interrupted)  # stops like Ctrl-C: children first
    engine = local_engine(Path(), host, port, engine_port)
    run = LocalRun(spec_file, workspace, engine=engine)
    with engine, stop_on_signals():
        print(f"workspace: {run.root}\n{plan_table(run.plan)}")
        try:
            decision = run.run_pipeline()
        except WorkspaceBusy as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if decision.failed:
            print("pipeline failed: see the Trained/Evaluated conditions above", file=sys.stderr)
            return EXIT_FAILED
        if decision.serving is None:
            return EXIT_FAILED
        if not serve:
            print(task_table(decision.status, run.spec))
            return 0
        url = f"http://{host}:{port}"
        manifest = run.root / "serving.json"
        spec_dir = run.spec_file.resolve().parent
        if engine.process is None and not engine.attached:  # nothing was evaluated now
            engine.attach(read_manifest(manifest)["baseModel"])
        if engine.attached:
            # An earlier `mtd run`/`mtd serve` of this workspace serves: its engine now holds
            # the new adapters, and its gateway follows catalogue.json, rewritten just now.
            served = read_manifest(manifest)
            engine.load(served["adapters"], served.get("digests"))
            run.mark_serving(decision.serving.revision, url)
            print(f"{engine.url} now serves the new adapters too (no restart)")
            ask_every_task(url, run.spec, spec_dir)
            return 0
        _server, url = start_serving(manifest, engine, host, port)
        run.mark_serving(decision.serving.revision, url)
        reason = "mtd run ended"
        try:
            ask_every_task(url, run.spec, spec_dir)
            code = serve_forever(engine, url)
            reason = "mtd run stopped" if code == 0 else f"the engine exited with code {code}"
            return code
        except BaseException as exc:
            reason = f"mtd run failed while serving: {type(exc).__name__}: {exc}"
            raise
        finally:
            run.mark_stopped(reason)  # status.json: no longer Serving at that URL
