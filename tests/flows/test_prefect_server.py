"""The first run cannot trip on Prefect's temporary server: gdig waits as long as a busy machine
needs (a slow start), stops at once when the server dies (a failed start), and says so in one
line with exit code 2 (the CLI, end to end in a fresh process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gdig_flows.flows import server as srv

ROOT = Path(__file__).resolve().parents[2]

# a stand-in for Prefect's server: answers /health only after `delay` seconds, or exits at once
FAKE = """
import http.server, sys, time
port, delay, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
if code:
    print("sqlalchemy.exc.OperationalError: unable to open database file", flush=True)
    sys.exit(code)
time.sleep(delay)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path.endswith("/health") else 404)
        self.end_headers()
        self.wfile.write(b"true")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture()
def fake_server(monkeypatch):
    from prefect.server.api.server import SubprocessASGIServer

    # a registry of its own: a session's test harness keeps its running server in the real one
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})
    launched = []

    def use(delay: float = 0.0, code: int = 0):
        def launch(server, log):
            launched.append(server.port)
            return subprocess.Popen([sys.executable, "-c", FAKE, str(server.port), str(delay), str(code)],
                                    stdout=log, stderr=subprocess.STDOUT)
        monkeypatch.setattr(srv, "_launch", launch)
        return launched

    yield use
    for server in list(SubprocessASGIServer._instances.values()):  # the stand-in, when one started
        server.stop()


def test_startup_timeout_is_generous_unless_the_user_set_one(monkeypatch):
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as setting
    from prefect.settings import temporary_settings

    monkeypatch.delenv(setting.name, raising=False)
    assert srv.startup_timeout() == srv.STARTUP_TIMEOUT_S >= 300  # Prefect's own default is 20 s
    monkeypatch.setenv(setting.name, "45")
    with temporary_settings({setting: 45}):
        assert srv.startup_timeout() == 45


def test_a_slow_start_is_waited_for_and_the_server_is_the_one_prefect_uses(fake_server):
    from prefect.server.api.server import SubprocessASGIServer

    fake_server(delay=3.0)
    with pytest.raises(srv.PrefectUnavailable, match=r"did not answer within 1 s .*PREFECT_SERVER_EPHEMERAL_"
                                                     r"STARTUP_TIMEOUT_SECONDS.*--no-prefect") as short:
        srv.start_temporary_server(timeout=1)  # what a short timeout (Prefect's 20 s, on a busy machine) did
    _remove_log(str(short.value))
    t0 = time.monotonic()
    url = srv.start_temporary_server(timeout=srv.STARTUP_TIMEOUT_S)
    assert time.monotonic() - t0 >= 3.0
    server = SubprocessASGIServer()  # where Prefect's client looks: running, so it starts no other
    assert server.running and url == server.api_url and server.server_process.poll() is None


def test_a_failed_start_stops_at_once_and_names_the_cause(fake_server):
    fake_server(code=1)
    t0 = time.monotonic()
    with pytest.raises(srv.PrefectUnavailable) as err:
        srv.start_temporary_server(timeout=srv.STARTUP_TIMEOUT_S)
    assert time.monotonic() - t0 < 60  # not the 600 s timeout
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("Prefect's temporary server exited with code 1 while starting "
                              "(sqlalchemy.exc.OperationalError: unable to open database file; its log: ")
    assert message.endswith("start a server (`prefect server start`) and set "
                            "PREFECT_API_URL=http://127.0.0.1:4200/api, or pass --no-prefect")
    _remove_log(message)


def _remove_log(message: str) -> None:
    """The failed server's log, which the line names (kept for the user; a test cleans it up)."""
    import re

    found = re.search(r"its log: (\S+?)\)", message)
    assert found and Path(found.group(1)).is_file()
    Path(found.group(1)).unlink()


def test_a_configured_server_that_does_not_answer(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # the discard port: nothing listens
        with pytest.raises(srv.PrefectUnavailable, match=r"^the Prefect API at http://127.0.0.1:9/api "
                                                         r"\(PREFECT_API_URL\) does not answer \(ConnectError: "):
            srv.ensure_api()


def _gdig(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdig.cli", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_when_prefect_cannot_start_prints_one_line_and_exits_2(tmp_path):
    """Prefect made unable to start (its database cannot be opened): one line, exit 2, no
    traceback, before any demo work; --debug shows the traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/prefect.db")
    out = _gdig("demo", "--workdir", tmp_path / "demo", env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Prefect's temporary server exited with code "), out.stderr
    assert "unable to open database file" in lines[0] and lines[0].endswith("or pass --no-prefect")
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "demo" / "data").exists()  # it stopped before the demo's work
    _remove_log(lines[0])
    debug = _gdig("demo", "--workdir", tmp_path / "demo", "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "PrefectUnavailable" in debug.stderr
    _remove_log(debug.stderr.strip().splitlines()[-1])


# -- no orphans: the temporary server dies with its gdig process, however that dies ---------------

PARENT = """
import subprocess, sys, time
from gdig_flows.flows import server as srv
if sys.argv[1] == "real":
    url = srv.start_temporary_server(600)
    from prefect.server.api.server import SubprocessASGIServer
    child = [s for s in SubprocessASGIServer._instances.values() if s.running][0].server_process
else:
    url = f"http://127.0.0.1:{sys.argv[2]}"
    child = subprocess.Popen(srv.guarded(["http.server", "--bind", "127.0.0.1", sys.argv[2]]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, url, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


def _kill_parent_and_watch(kind: str, port: int, timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind, str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pid, url = parent.stdout.readline().split()
        pid = int(pid)
        deadline = time.monotonic() + timeout
        while not _answers(url):
            assert time.monotonic() < deadline, f"the {kind} server never answered"
            time.sleep(0.2)
        assert _alive(pid)
    finally:
        parent.kill()  # SIGKILL: no atexit, no finally, no signal handler runs in the gdig process
        parent.wait()
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return pid, url


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_a_guarded_child_dies_with_its_parent_on_sigkill():
    from prefect.server.api.server import SubprocessASGIServer

    port = SubprocessASGIServer().find_available_port()
    pid, url = _kill_parent_and_watch("stand-in", port, timeout=30)
    assert not _alive(pid) and not _answers(url)


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_the_real_temporary_server_dies_with_gdig_on_sigkill():
    pid, url = _kill_parent_and_watch("real", 0, timeout=300)
    assert not _alive(pid) and not _answers(url)
