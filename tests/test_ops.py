"""Deployment files: the Dockerfile's steps run in a plain venv, and the systemd units'
socket activation exercised the way systemd does it (LISTEN_FDS/LISTEN_PID, fd 3)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs
import pytest
import yaml

from bullmq_proxy.config import SETTINGS, Config
from bullmq_proxy.redis.embedded import free_port
from tests.twistd_process import REPO, TWISTD, TwistdProxy, proxy_env

# Real twistd processes, installs or packaging steps: part of the slow subset.
pytestmark = pytest.mark.slow


STOPPED_BY_TERM = -signal.SIGTERM
UNITS = REPO / "contrib" / "systemd"

# Sets what systemd (227+) sets, in the process that then becomes twistd: LISTEN_PID must be the
# pid of the process reading it, so it can only be set after the fork, before the exec.
SYSTEMD_WRAPPER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()),
                  LISTEN_FDNAMES="bullmq-proxy.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


@attrs.frozen
class Instruction:
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, got {found}"
    return found[0]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def unit(name: str) -> configparser.ConfigParser:
    # systemd repeats keys (SystemCallFilter=...); keep the last, as a reader would.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def test_dockerfile_is_a_small_non_root_image_running_twistd():
    build, final = stages(dockerfile())
    base = only(final, "FROM").arguments
    # An exact Python and Debian release (or a digest), never a moving tag like 3.11-slim.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    assert only(build, "FROM").arguments == f"{base} AS build"
    assert only(final, "USER").arguments not in ("root", "0")
    assert json.loads(only(final, "CMD").arguments) == [
        "twistd", "--nodaemon", "--pidfile=", "bullmq-proxy",
    ]
    assert only(final, "STOPSIGNAL").arguments == "SIGTERM"
    health = only(final, "HEALTHCHECK").arguments
    probe = json.loads(health.split(" CMD ", 1)[1])
    assert probe[0] == "python"
    assert "/healthz" in probe[2]
    assert not any(tool in health for tool in ("curl", "wget"))
    port = env_of(final)["PORT"]
    assert only(final, "EXPOSE").arguments == port


def _sources(instruction: Instruction) -> list[str]:
    *sources, _ = instruction.arguments.split()
    return sources


def test_dockerfile_installs_pinned_dependencies_in_a_layer_before_the_sources():
    build, _ = stages(dockerfile())
    steps = [i for i in build if i.keyword in ("COPY", "RUN")]
    first_run = next(n for n, i in enumerate(steps) if i.keyword == "RUN")
    # Before the dependencies are installed, only what names and pins them is copied in.
    copied_first = {s for i in steps[:first_run] for s in _sources(i)}
    assert copied_first == {"setup.cfg", "constraints.txt"}
    dependencies = steps[first_run].arguments
    assert "-c constraints.txt" in dependencies
    copied_later = {s for i in steps[first_run:] if i.keyword == "COPY" for s in _sources(i)}
    assert {"bullmq_proxy", "plugins", "twisted"} <= copied_later
    (project,) = [i.arguments for i in steps[first_run + 1:] if i.keyword == "RUN"]
    assert "pip install --no-cache-dir --no-deps ." in project


def test_every_runtime_dependency_is_pinned_by_the_constraints(tmp_path):
    build, _ = stages(dockerfile())
    listing = next(step for step in map(str.strip, only_first_run(build).split("&&"))
                   if step.startswith("python -c") and step.endswith("> requirements.txt"))
    shutil.copy(REPO / "setup.cfg", tmp_path)
    (tmp_path / "python").symlink_to(sys.executable)
    subprocess.run(["sh", "-c", listing], cwd=tmp_path, check=True,
                   env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    required = [line.strip() for line in (tmp_path / "requirements.txt").read_text()
                .splitlines() if line.strip()]
    assert len(required) >= 10
    pinned = {_name(line.split("==")[0]): line.split("==")[1]
              for line in (REPO / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    for requirement in required:
        name = _name(re.split(r"[\[<>=~! ]", requirement, maxsplit=1)[0])
        assert name in pinned, requirement


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def only_first_run(stage: list[Instruction]) -> str:
    return next(i.arguments for i in stage if i.keyword == "RUN")


def test_dockerfile_copies_only_what_exists_and_sets_known_settings():
    build, final = stages(dockerfile())
    for instruction in build:
        if instruction.keyword == "COPY":
            for source in _sources(instruction):
                assert (REPO / source).exists(), f"COPY {source}: no such file"
    known = {s.env for s in SETTINGS} | {"PORT", "PATH", "PYTHONUNBUFFERED"}
    assert set(env_of(final)) <= known
    copied = only(final, "COPY").arguments.split()
    assert copied[0] == "--from=build"
    venv = copied[1]
    assert f"python -m venv {venv}" in only_first_run(build)
    assert env_of(final)["PATH"].startswith(f"{venv}/bin:")


def test_image_steps_build_a_working_proxy_in_a_plain_venv(tmp_path, redis_url):
    """The build stage's COPY and RUN steps in order, with the venv under tmp, then the final
    stage's CMD and HEALTHCHECK. The new venv sees the test venv's packages, so that pip finds
    the pinned dependencies installed already; nothing is downloaded but the build backend."""
    build, final = stages(dockerfile())
    source = tmp_path / "src"
    source.mkdir()
    venv_path = only(final, "COPY").arguments.split()[1]
    venv = tmp_path / "venv"
    shell_path = tmp_path / "bin"
    shell_path.mkdir()
    (shell_path / "python").symlink_to(sys.executable)  # the image's python, on PATH
    shell_env = {**os.environ, "PATH": f"{shell_path}:{os.environ['PATH']}"}
    for instruction in build:
        if instruction.keyword == "COPY":
            for name in _sources(instruction):
                copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
                copy(REPO / name, source / name,
                     **({"ignore": shutil.ignore_patterns("__pycache__", "dropin.cache")}
                        if (REPO / name).is_dir() else {}))
        elif instruction.keyword == "RUN":
            for step in instruction.arguments.replace(venv_path, str(venv)).split("&&"):
                subprocess.run(["sh", "-c", step.strip()], cwd=source, env=shell_env,
                               check=True, capture_output=True, timeout=300)
                if step.strip().startswith("python -m venv "):
                    _share_test_packages(venv)

    home = tmp_path / "home"
    home.mkdir()
    env = {**proxy_env(), **env_of(final), "PORT": str(free_port()),
           "DATA_DIR": str(home / "data"), "REDIS_URL": redis_url, "AUTH_TOKENS": "t"}
    env["PATH"] = (env["PATH"].replace(f"{venv_path}/bin", str(venv / "bin"))
                   .replace("$PATH", os.environ["PATH"]))
    del env["PYTHONPATH"]  # the installed package, not the checkout, must serve
    located = subprocess.run(["python", "-c", "import bullmq_proxy; print(bullmq_proxy.__file__)"],
                             env=env, cwd=home, capture_output=True, text=True, check=True)
    assert located.stdout.startswith(str(venv))
    # The systemd unit's Documentation= names a page this install has (same venv path).
    documentation = unit("bullmq-proxy.service")["Unit"]["Documentation"]
    assert documentation.startswith(f"file://{venv_path}/")
    assert Path(documentation.replace(f"file://{venv_path}", str(venv))).is_file()

    command = json.loads(only(final, "CMD").arguments)
    log_path = home / "twistd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=home, stdout=log,
                                   stderr=subprocess.STDOUT)
    proxy = TwistdProxy(process, int(env["PORT"]), log_path)
    try:
        proxy.wait_ready()
        probe = json.loads(only(final, "HEALTHCHECK").arguments.split(" CMD ", 1)[1])
        assert subprocess.run(probe, env=env, cwd=home, timeout=10).returncode == 0
        deadline = time.monotonic() + 10  # the worker registry loads just after start
        while proxy.request("GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, proxy.output()
            time.sleep(0.05)
    finally:
        code = proxy.stop()
    assert code == STOPPED_BY_TERM
    assert "Server Shut Down." in proxy.output()
    assert not (home / "twistd.pid").exists()
    # And the health check fails once the proxy is gone.
    assert subprocess.run(probe, env=env, cwd=home, capture_output=True,
                          timeout=10).returncode != 0


def _share_test_packages(venv: Path) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The console script pip would have made had it installed Twisted into this venv.
    twistd = venv / "bin" / "twistd"
    twistd.write_text(f"#!{venv}/bin/python\nfrom twisted.scripts.twistd import run\nrun()\n")
    twistd.chmod(0o755)


def test_systemd_units_are_hardened_and_match_each_other():
    service, sock = unit("bullmq-proxy.service"), unit("bullmq-proxy.socket")
    svc = service["Service"]
    assert svc["Type"] in ("simple", "notify")
    for option, value in {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "KillSignal": "SIGTERM",
        "CapabilityBoundingSet": "",
    }.items():
        assert svc[option] == value, option
    assert svc["EnvironmentFile"].lstrip("-").startswith("/etc/")
    assert "bullmq-proxy.socket" in service["Unit"]["Requires"]
    argv = shlex.split(svc["ExecStart"])
    assert argv[1:4] == ["--nodaemon", "--pidfile=", "bullmq-proxy"]
    listen = argv[argv.index("--listen") + 1]
    assert listen == "systemd:domain=INET:index=0"
    # domain=INET needs an IPv4 socket, and index 0 needs exactly one.
    streams = [v for k, v in sock["Socket"].items() if k == "ListenStream"]
    assert len(streams) == 1
    socket.inet_aton(streams[0].rsplit(":", 1)[0])


def test_the_systemd_recipe_starts_the_service_at_boot_not_at_the_first_connection():
    service = unit("bullmq-proxy.service")
    assert service["Install"]["WantedBy"] == "multi-user.target"
    recipe = (REPO / "docs" / "operations.md").read_text().split("### systemd", 1)[1]
    commands = recipe.split("```sh", 1)[1].split("```", 1)[0]
    enable = next(line for line in commands.splitlines() if "systemctl enable" in line)
    assert {"bullmq-proxy.socket", "bullmq-proxy.service"} <= set(shlex.split(enable))


def test_systemd_analyze_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed to verify the unit files")
    text = (UNITS / "bullmq-proxy.service").read_text()
    (tmp_path / "bullmq-proxy.service").write_text(
        text.replace("/opt/bullmq-proxy/bin/twistd", TWISTD[0]))
    shutil.copy(UNITS / "bullmq-proxy.socket", tmp_path)
    result = subprocess.run(
        [analyze, "verify", "bullmq-proxy.service", "bullmq-proxy.socket"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "bullmq-proxy" in line]
    assert complaints == []


def _socket_activated(args: list[str], env: dict[str, str], tmp_path: Path,
                      listener: socket.socket) -> TwistdProxy:
    log_path = tmp_path / "twistd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SYSTEMD_WRAPPER, str(listener.fileno()), TWISTD[0], *args],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    return TwistdProxy(process, listener.getsockname()[1], log_path)


def test_socket_activation_serves_on_the_socket_systemd_passes(tmp_path, redis_url):
    exec_start = shlex.split(unit("bullmq-proxy.service")["Service"]["ExecStart"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        # PORT names another port: with --listen, the proxy must ignore it.
        env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t", PORT=str(free_port()))
        proxy = _socket_activated(exec_start[1:], env, tmp_path, listener)
    finally:
        listener.close()  # the proxy holds its own copy, as with systemd
    try:
        proxy.wait_ready()
        status, banner = proxy.request("GET", "/")
        assert status == 200
        assert banner.startswith("BullMQ Proxy")
        status, jobs = proxy.request("POST", "/queues/mail/jobs", [{"name": "a", "data": 1}],
                                     "t")
        assert status == 200
        assert jobs[0]["name"] == "a"
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/", timeout=2)
    finally:
        code = proxy.stop()
    assert code == STOPPED_BY_TERM
    assert "Server Shut Down." in proxy.output()
    assert "Traceback" not in proxy.output()


def test_socket_activation_without_a_passed_socket_fails_loudly(tmp_path, redis_url):
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t")
    result = subprocess.run(
        [*TWISTD, "--nodaemon", "--pidfile=", "bullmq-proxy",
         "--listen", "systemd:domain=INET:index=0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "systemd passed no such socket" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_listen_description_is_one_line(tmp_path):
    env = proxy_env(REDIS_URL="redis://127.0.0.1:1", AUTH_TOKENS="t")
    result = subprocess.run(
        [*TWISTD, "--nodaemon", "--pidfile=", "bullmq-proxy", "--listen", "tcp:notaport"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("bullmq-proxy: --listen tcp:notaport is not a valid")
    assert "Traceback" not in result.stderr


def _known_env() -> set[str]:
    return {s.env for s in SETTINGS if s.env} | {"PORT"}


def test_compose_file_runs_the_image_next_to_redis():
    compose = yaml.safe_load((REPO / "docs" / "docker-compose.yml").read_text())
    proxy = compose["services"]["proxy"]
    assert (REPO / "docs" / proxy["build"]["context"] / proxy["build"]["dockerfile"]).exists()
    assert set(proxy["environment"]) <= _known_env()
    assert proxy["environment"]["REDIS_HOST"] in compose["services"]
    assert proxy["depends_on"]["redis"]["condition"] == "service_healthy"
    _, final = stages(dockerfile())
    assert proxy["ports"] == [f"{env_of(final)['PORT']}:{env_of(final)['PORT']}"]


def test_kubernetes_manifest_probes_existing_routes_as_the_image_user():
    documents = {doc["kind"]: doc for doc in
                 yaml.safe_load_all((REPO / "docs" / "kubernetes.yaml").read_text())}
    assert set(documents) == {"Secret", "Deployment", "Service"}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"] for item in container["env"]} | set(
        documents["Secret"]["stringData"])
    assert env <= _known_env()
    _, final = stages(dockerfile())
    assert container["ports"][0]["containerPort"] == int(only(final, "EXPOSE").arguments)
    useradd = next(i.arguments for i in final if "useradd" in i.arguments)
    assert f"--uid {pod['securityContext']['runAsUser']} " in useradd
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    data_dir = next(item["value"] for item in container["env"] if item["name"] == "DATA_DIR")
    assert any(data_dir.startswith(mount["mountPath"]) for mount in container["volumeMounts"])


def test_operations_doc_covers_every_setting():
    # Its metrics table: tests/test_metrics_queues.py.
    text = (REPO / "docs" / "operations.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `--{setting.option}` |" in text, setting.env


# What a stop takes beyond WORKER_SHUTDOWN_GRACE (docs/operations.md, "Shutdown").
STOP_MARGIN_SECONDS = 5


def test_supervisors_wait_longer_than_a_graceful_stop_takes():
    grace = Config().worker_shutdown_grace
    documents = {doc["kind"]: doc for doc in
                 yaml.safe_load_all((REPO / "docs" / "kubernetes.yaml").read_text())}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    pause = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pause[1]) + grace + STOP_MARGIN_SECONDS

    timeout = unit("bullmq-proxy.service")["Service"]["TimeoutStopSec"]
    assert int(timeout) >= grace + STOP_MARGIN_SECONDS

    compose = yaml.safe_load((REPO / "docs" / "docker-compose.yml").read_text())
    stop = compose["services"]["proxy"]["stop_grace_period"]
    assert stop.endswith("s")
    assert int(stop[:-1]) >= grace + STOP_MARGIN_SECONDS


def _compose_interpolated(value: str, env: dict[str, str]) -> str:
    """What Docker Compose makes of ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        given = env.get(name, "")
        if operator == ":-":
            return given or argument
        if operator == ":?":
            assert given, f"compose would refuse to start: {argument}"
        return given

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)


@pytest.mark.slow
def test_the_compose_file_environment_starts_the_proxy(tmp_path, redis_server):
    compose = yaml.safe_load((REPO / "docs" / "docker-compose.yml").read_text())
    environment = {name: _compose_interpolated(str(value), {"AUTH_TOKENS": "secret"})
                   for name, value in compose["services"]["proxy"]["environment"].items()}
    assert environment["METRICS_TOKEN"] == ""  # what ${METRICS_TOKEN:-} gives when unset
    _, final = stages(dockerfile())
    port = free_port()
    redis_host, redis_port = redis_server.removeprefix("redis://").split("/")[0].split(":")
    env = {
        **proxy_env(), **env_of(final), **environment,
        # Only the addresses differ from the containers: the redis service, the mapped port.
        "REDIS_HOST": redis_host, "REDIS_PORT": redis_port, "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"), "PATH": os.environ["PATH"],
    }
    command = json.loads(only(final, "CMD").arguments)
    log_path = tmp_path / "twistd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([TWISTD[0], *command[1:]], env=env, cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
    proxy = TwistdProxy(process, port, log_path)
    try:
        proxy.wait_ready()
        assert proxy.request("GET", "/queues/mail/jobs", token="secret")[0] == 200
        # No METRICS_TOKEN: an API token scrapes, nobody else.
        assert proxy.request("GET", "/metrics", token="secret")[0] == 200
        assert proxy.request("GET", "/metrics")[0] == 401
    finally:
        assert proxy.stop() == STOPPED_BY_TERM
    assert all(json.loads(line) for line in proxy.output().splitlines())
