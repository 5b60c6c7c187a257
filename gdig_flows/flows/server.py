"""A Prefect API for the command before its flow starts, or one line that says why there is none.

Without PREFECT_API_URL, Prefect starts a temporary server on the first API call and gives it
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s by default) to answer.  Its first start
also creates and migrates a new database, and on a laptop that is busy compiling or training
that takes longer: the command died with a 40-line traceback.  So gdig starts the temporary
server itself, waits for its health endpoint as long as a busy machine needs (the user's own
setting, when there is one, wins), notices at once when the server process dies, and otherwise
leaves Prefect's ephemeral mode as it is: the server is registered where Prefect's client looks
for it (SubprocessASGIServer), so the flow uses it and Prefect stops it at exit.  A watchdog in
the server process stops it when the gdig process is gone, killed included (`guarded`).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time

# generous: a first start migrates a new database, and a machine busy with other work is normal
STARTUP_TIMEOUT_S = 600
HEALTH_TIMEOUT_S = 30  # a configured server that does not answer /health within this is down

WHAT_TO_DO = ("start a server (`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
              "or pass --no-prefect")


class PrefectUnavailable(RuntimeError):
    """No Prefect API for the flow; the message is the one line the CLI prints."""


def startup_timeout() -> float:
    """The user's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (environment or profile), else
    gdig's generous default."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as setting
    from prefect.settings import load_current_profile

    if setting.name in os.environ:
        return float(setting.value())
    try:
        in_profile = any(getattr(k, "name", k) == setting.name for k in load_current_profile().settings)
    except Exception:  # an unreadable profile is Prefect's to report, not this check's
        in_profile = False
    return float(setting.value()) if in_profile else float(STARTUP_TIMEOUT_S)


def ensure_api(timeout: float | None = None) -> str:
    """The API URL the flow will use: a configured server that answers its health endpoint, or a
    temporary server started here and healthy.  Raises PrefectUnavailable otherwise."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if api:
        _check_health(api)
        return api
    # Prefect 3.9.1's client starts the temporary server whenever no API URL is set (it tests the
    # PREFECT_SERVER_EPHEMERAL_ENABLED setting object, not its value), so gdig does too
    return start_temporary_server(startup_timeout() if timeout is None else timeout)


def _check_health(api: str) -> None:
    import httpx

    try:
        response = httpx.get(f"{api.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as err:
        raise PrefectUnavailable(f"the Prefect API at {api} (PREFECT_API_URL) does not answer "
                                 f"({type(err).__name__}: {_first_line(str(err))}): {WHAT_TO_DO}") from err


def start_temporary_server(timeout: float) -> str:
    """Start Prefect's temporary server (as its client would: the same command, registered in
    SubprocessASGIServer) and wait for /health; the server's own output goes to a log file."""
    import httpx
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running and server.server_process is not None and server.server_process.poll() is None:
        return server.api_url
    log = tempfile.NamedTemporaryFile("w+b", prefix="gdig-prefect-server-", suffix=".log", delete=False)
    deadline = time.monotonic() + timeout
    server.port = server.find_available_port()
    proc, relaunches = _launch(server, log), 0
    with httpx.Client() as client:
        while True:
            code = proc.poll()
            # uvicorn exits with 3 when its startup fails; when that was the port being taken
            # meanwhile, another port (as Prefect does), a few times at most
            if code == 3 and relaunches < 5 and not server.is_port_available(server.port):
                server.port, relaunches = server.find_available_port(), relaunches + 1
                proc = _launch(server, log)
                continue
            if code is not None:
                raise PrefectUnavailable(f"Prefect's temporary server exited with code {code} while starting "
                                         f"({_last_line(log.name)}; its log: {log.name}): {WHAT_TO_DO}")
            try:
                if client.get(f"{server.api_url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                proc.terminate()
                raise PrefectUnavailable(
                    f"Prefect's temporary server did not answer within {timeout:.0f} s (its log: {log.name}): "
                    f"raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, {WHAT_TO_DO}")
            time.sleep(0.2)
    server.server_process, server.running = proc, True
    atexit.register(_remove, log.name)  # a server that started keeps no log behind (runs after stop)
    atexit.register(server.stop)
    return server.api_url


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _launch(server, log) -> subprocess.Popen:
    from prefect.settings import get_current_settings

    import prefect

    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    return subprocess.Popen(
        guarded(["uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                 "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(server.port),
                 "--log-level", "error", "--lifespan", "on"]),
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


# Runs a module as `python -m` would, with a watchdog thread that stops the process once its
# parent (the gdig process) is gone: atexit never runs after SIGKILL or a crash, and uvicorn
# would otherwise stay up, orphaned, listening.  SIGTERM first (uvicorn shuts down cleanly and
# closes its database), then a hard exit should that hang.
_GUARD = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)
threading.Thread(target=watch, daemon=True, name="gdig-parent-watch").start()
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def guarded(module_argv: list[str], parent: int | None = None) -> list[str]:
    """The command line that runs `python -m <module_argv>` and dies with `parent` (default:
    this process), however it dies."""
    return [sys.executable, "-c", _GUARD, str(os.getpid() if parent is None else parent), *module_argv]


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def _last_line(path: str) -> str:
    """The server log's cause: its last exception line ("...Error: why"), else its last line."""
    import re

    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        lines = []
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return (errors or lines or ["no output"])[-1][:200]
