"""Extra processes on the same database as a worker: queue servers (c) and a remote receiver (d).

``python -m benchmarks.helper --impl perdure|dbos --url URL --executor-id ID [--queue]`` launches
the implementation (with its own executor ID, and serving the benchmark queue with ``--queue``),
writes ``{"ready": true}`` on stdout, then obeys one command per line of stdin, answering with
one JSON line each:

- ``recv``: start a receiver workflow, wait until it is about to call ``recv``, write
  ``{"id": ...}``; once the measuring process has sent to it, write ``{"latency_ms": ...}``
  (the workflow's own measure: its ``recv`` return minus the send time carried in the message;
  ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, shared by all processes of the machine).
- ``setter``: start a setter workflow that waits for its go signal, write ``{"id": ...}``.
- ``go ID``: release setter ``ID`` (it then calls ``set_event``); no answer.
- ``stop`` or end of input: ``destroy()`` and exit.

`Helper` starts one and talks to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import traceback
import uuid
from typing import IO, Any

from benchmarks import workloads

READY_TIMEOUT_SEC = 120.0


def _serve(impl: str, url: str, executor_id: str, queue: bool, out: IO[str]) -> None:
    api, wfs, _ = workloads.launch(impl, url, executor_id=executor_id, queue=queue)
    write_lock = threading.Lock()

    def answer(record: dict[str, Any]) -> None:
        with write_lock:
            out.write(json.dumps(record) + "\n")
            out.flush()

    answer({"ready": True})
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "stop":
            break
        if command == "recv":
            key = f"remote-recv-{uuid.uuid4().hex}"
            signal = workloads.ready.setdefault(key, threading.Event())
            with api.SetWorkflowID(key):
                handle = api.DBOS.start_workflow(wfs.receiver, key)
            if not signal.wait(workloads.SIGNAL_TIMEOUT_SEC):
                raise RuntimeError(f"receiver {key} never became ready")
            answer({"id": key})
            latency_ms = handle.get_result() * 1000
            workloads.ready.pop(key, None)
            answer({"latency_ms": latency_ms})
        elif command == "setter":
            key = f"remote-setter-{uuid.uuid4().hex}"
            workloads.go[key] = threading.Event()
            with api.SetWorkflowID(key):
                api.DBOS.start_workflow(wfs.setter, key)
            answer({"id": key})
        elif command == "go":
            workloads.go[argument].set()
        else:
            raise ValueError(f"unknown helper command {line!r}")
    api.DBOS.destroy()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve; JSON answers go to the real stdout only."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.helper")
    parser.add_argument("--impl", choices=("perdure", "dbos"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--queue", action="store_true", help="serve the benchmark queue")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr
    code = 0
    try:
        _serve(args.impl, args.url, args.executor_id, args.queue, out)
    except BaseException:  # noqa: BLE001 - reported on stderr; the exit code tells the worker
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


class Helper:
    """One helper process, started by a worker; ``stop()`` it when done."""

    def __init__(self, impl: str, url: str, executor_id: str, *, queue: bool = False) -> None:
        command = [sys.executable, "-m", "benchmarks.helper", "--impl", impl, "--url", url]
        command += ["--executor-id", executor_id]
        if queue:
            command.append("--queue")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,  # the worker's stderr: shown by the runner if the worker fails
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()

    def wait_ready(self) -> None:
        """Block until the helper has launched (raises if it died instead)."""
        if not self.read().get("ready"):
            raise RuntimeError("helper did not report ready")

    def _stdin(self) -> IO[str]:
        if self.process.stdin is None:
            raise RuntimeError("helper started without a stdin pipe")
        return self.process.stdin

    def send(self, command: str) -> None:
        """Write one command line."""
        with self._lock:
            self._stdin().write(command + "\n")
            self._stdin().flush()

    def read(self) -> dict[str, Any]:
        """The next JSON answer."""
        if self.process.stdout is None:
            raise RuntimeError("helper started without a stdout pipe")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"helper exited (code {self.process.wait()}) without answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        """Ask it to exit, and wait (kill it if it does not)."""
        try:
            self.send("stop")
            self._stdin().close()
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    main()
