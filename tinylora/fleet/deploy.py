"""A local Flower deployment: one SuperLink and N SuperNodes as processes on the loopback
interface (insecure mode, free ports), the apps submitted with ``flwr run``.

Every process gets the environment variable ``TINYLORA_FLEET_RUN=<id>``; Flower starts some of
its helpers (``flower-superexec``) in sessions of their own, so :meth:`LocalDeployment.stop`
ends the process groups it started and then every process that carries the marker, TERM then
KILL. Nothing is left when the deployment's ``with`` block exits, also on errors and Ctrl-C.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

from tinylora.errors import FleetError, MissingDependencyError

MARKER = "TINYLORA_FLEET_RUN"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: pathlib.Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FleetError(f"{what} exited with status {proc.returncode} at start:\n{tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FleetError(f"{what} did not open port {port} within {START_TIMEOUT:.0f} s:\n{tail(log)}")


def tail(path: pathlib.Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def marked_pids(run_id: str) -> list[int]:
    """Processes (other than this one) whose environment carries this run's marker."""
    want, out = f"{MARKER}={run_id}".encode(), []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if want in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def _bin(name: str) -> str:
    """A Flower executable next to this Python (the venv's bin), else on PATH."""
    here = pathlib.Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise MissingDependencyError(f"{name} not found: install Flower with `pip install tinylora[fleet]`")
    return found


class LocalDeployment:
    """``with LocalDeployment(n, workdir) as d: report = d.run(config, on_round)``."""

    def __init__(self, clients: int, workdir: pathlib.Path, node_config: dict[int, str] | None = None):
        """``node_config``: more of SuperNode i's --node-config (e.g. ``device="/dev/pts/3"``)."""
        self.clients, self.dir = clients, pathlib.Path(workdir)
        self.node_config = node_config or {}
        self.run_id = uuid.uuid4().hex
        self.procs: list[subprocess.Popen] = []
        bindir = str(pathlib.Path(sys.executable).parent)
        self.env = dict(os.environ, **{MARKER: self.run_id, "FLWR_HOME": str(self.dir / "flwr-home"),
                                       "PATH": bindir + os.pathsep + os.environ.get("PATH", "")})
        root = str(pathlib.Path(__file__).resolve().parents[2])   # the apps import this tinylora
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))

    def _start(self, name: str, args: list[str]) -> tuple[subprocess.Popen, pathlib.Path]:
        log = self.dir / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen([_bin(args[0]), *args[1:]], stdout=f, stderr=subprocess.STDOUT,
                                 env=self.env, cwd=self.dir, start_new_session=True)
        self.procs.append(p)
        return p, log

    def __enter__(self) -> LocalDeployment:
        try:
            self.port = free_port()
            (self.dir / "flwr-home").mkdir(parents=True, exist_ok=True)
            (self.dir / "flwr-home" / "config.toml").write_text(
                f'[superlink]\ndefault = "tinylora"\n\n[superlink.tinylora]\n'
                f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
            # Start everything at once (each process spends seconds importing Flower); the
            # SuperNodes retry until the SuperLink listens.
            waits = [(self.port, *self._start("superlink", [
                "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(self.port),
                "--disable-runtime-dependency-installation"]),   # the apps run in this environment
                "flower-superlink")]
            for i in range(self.clients):
                port = free_port()
                waits.append((port, *self._start(f"supernode-{i}", [
                    "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                    "--host", "127.0.0.1", "--port", str(port),
                    "--node-config",
                    f"partition-id={i} num-partitions={self.clients} {self.node_config.get(i, '')}".strip()]),
                    f"flower-supernode {i}"))
            for port, p, log, what in waits:
                _wait_port(port, p, what, log)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, grace: float = 5.0) -> None:
        """TERM every process group started and every marked process; KILL what remains."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                if p.poll() is None or sig == signal.SIGKILL:
                    try:
                        os.killpg(p.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            for pid in marked_pids(self.run_id):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (marked_pids(self.run_id) or
                                                   any(p.poll() is None for p in self.procs)):
                time.sleep(0.1)
            if not marked_pids(self.run_id) and all(p.poll() is not None for p in self.procs):
                break
        for p in self.procs:
            if p.poll() is None:
                p.wait(timeout=5)

    def run(self, config: dict, on_round=None, timeout: float = 900.0, module: str = "tinylora.fleet.apps") -> dict:
        """Submit the apps with `config` as their run config; poll the report the ServerApp writes
        after each round (calling on_round(round_dict) for new rounds) until it is final."""
        app, report = self.dir / "app", self.dir / "report.json"
        app.mkdir(exist_ok=True)
        (app / "pyproject.toml").write_text(app_pyproject(dict(config, report=str(report)), module))
        p, log = self._start("flwr-run", ["flwr", "run", str(app), "tinylora", "--stream"])
        shown, deadline = 0, time.monotonic() + timeout
        while True:
            data = _read_json(report)
            rounds = data.get("rounds", []) if data else []
            for r in rounds[shown:]:
                if on_round:
                    on_round(r)
            shown = len(rounds)
            if data and data.get("final"):
                return data
            if p.poll() is not None and not (data and data.get("final")):
                data = _read_json(report)
                if data and data.get("final"):
                    continue
                raise FleetError(f"the Flower run ended (status {p.returncode}) without a final report:\n"
                                 f"{tail(log)}\n--- superlink:\n{tail(self.dir / 'superlink.log')}")
            if time.monotonic() > deadline:
                raise FleetError(f"the Flower run did not finish within {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.3)


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))   # a JSON string is a valid TOML basic string


def app_pyproject(config: dict, module: str = "tinylora.fleet.apps") -> str:
    """The Flower app project `flwr run` submits: tinylora's apps (`module`: tinylora.fleet.apps,
    or tinylora.fleet.secagg for SecAgg+) and this run's config."""
    lines = ['[build-system]', 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', '',
             '[project]', 'name = "tinylora-fleet"', 'version = "1.0.0"',
             'description = "tinylora fleet LoRA (generated by tinylora fleet)"',
             'license = "Apache-2.0"', 'dependencies = []', '',
             '[tool.hatch.build.targets.wheel]', 'packages = ["."]', '',
             '[tool.flwr.app]', 'publisher = "tinylora"', '',
             '[tool.flwr.app.components]', f'serverapp = "{module}:server_app"',
             f'clientapp = "{module}:client_app"', '', '[tool.flwr.app.config]']
    lines += [f"{k} = {_toml_value(v)}" for k, v in config.items()]
    return "\n".join(lines) + "\n"
