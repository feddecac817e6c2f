"""compose.yaml, the Dockerfile, deploy/nginx.conf and the Procfile agree with the code."""

from __future__ import annotations

import ast
import importlib.util
import ipaddress
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "worker", "realtime")
ENV_PREFIX: str = Settings.model_config["env_prefix"]
API_PORT: int = Settings.model_fields["api_port"].default
REALTIME_PORT: int = Settings.model_fields["realtime_port"].default
#: nginx variables that carry the query string (and with it the WebSocket ?token=).
QUERY_VARIABLES = {"request", "request_uri", "args", "query_string", "is_args"}


@cache
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _command(name: str) -> list[str]:
    command = _service(name)["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _environment(name: str) -> dict[str, str]:
    env = _service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _healthcheck(name: str) -> str:
    test = _service(name)["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def _container_ports(name: str) -> set[int]:
    return {int(str(port).split(":")[-1]) for port in _service(name).get("ports", [])}


def _settings_variables() -> set[str]:
    return {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _runs_with_python_m(module: str) -> bool:
    """``python -m module`` works: a module, or a package with a ``__main__``."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    return spec.submodule_search_locations is None or _module_exists(f"{module}.__main__")


def _defines_function(target: str) -> bool:
    """``module:function`` names a module of the repo that defines ``function``."""
    module, function = target.split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    tree = ast.parse(Path(spec.origin).read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body)


def _procfile() -> dict[str, list[str]]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            words = shlex.split(command)
            entries[name] = [w for w in words if not re.match(r"^[A-Za-z_]\w*=", w)]
    return entries


@dataclass
class Directive:
    """One nginx directive: ``name args...;`` or ``name args... { block }``."""

    name: str
    args: list[str]
    block: list[Directive] = field(default_factory=list)

    def all(self, name: str) -> list[Directive]:
        """Every directive called ``name`` in this block and the blocks inside it."""
        found = []
        for child in self.block:
            if child.name == name:
                found.append(child)
            found.extend(child.all(name))
        return found

    def one(self, name: str) -> Directive:
        matches = [child for child in self.block if child.name == name]
        assert len(matches) == 1, f"expected one {name!r} in {self.name} {self.args}"
        return matches[0]


_NGINX_TOKEN = re.compile(r"#[^\n]*|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[{};]|[^\s{};\"'#]+")


@cache
def _nginx() -> Directive:
    root = Directive("main", [])
    stack = [root]
    words: list[str] = []
    for token in _NGINX_TOKEN.findall((ROOT / "deploy" / "nginx.conf").read_text()):
        if token.startswith("#"):
            continue
        if token in (";", "{"):
            directive = Directive(words[0], words[1:])
            stack[-1].block.append(directive)
            if token == "{":
                stack.append(directive)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token[1:-1] if token[0] in "\"'" else token)
    assert len(stack) == 1, "unbalanced braces in deploy/nginx.conf"
    return root


def _location(path: str) -> Directive:
    (location,) = [loc for loc in _nginx().all("location") if loc.args[-1] == path]
    return location


def _proxied_to(path: str) -> str:
    """``host:port`` that requests for the location ``path`` reach."""
    target = _location(path).one("proxy_pass").args[0].removeprefix("http://")
    upstreams = {u.args[0]: u for u in _nginx().all("upstream")}
    if target in upstreams:
        return upstreams[target].one("server").args[0]
    return target


def _headers(directive: Directive) -> dict[str, str]:
    return {h.args[0]: h.args[1] for h in directive.block if h.name == "proxy_set_header"}


def test_compose_defines_redis_the_three_app_services_and_the_edge() -> None:
    assert set(_compose()["services"]) == {
        "redis", "api", "worker", "realtime", "edge", "mqtt-accounts", "mosquitto", "bridge",
        "agent",
    }  # fmt: skip


def test_redis_persists_to_a_named_volume_with_append_only_and_reports_its_health() -> None:
    redis = _service("redis")

    assert redis["image"] == "redis:7-alpine"
    assert redis["command"] == ["redis-server", "--appendonly", "yes"]
    assert "redis-cli ping" in _healthcheck("redis")
    assert redis["volumes"] == ["redis-data:/data"]
    assert "redis-data" in _compose()["volumes"]


def test_app_services_share_one_image_built_from_the_dockerfile() -> None:
    assert [_service(name)["build"] for name in APP_SERVICES] == [".", ".", "."]
    assert (ROOT / "Dockerfile").is_file()


def test_every_app_service_waits_for_a_healthy_redis() -> None:
    for name in APP_SERVICES:
        assert _service(name)["depends_on"] == {"redis": {"condition": "service_healthy"}}, name


def test_each_app_service_runs_its_entry_point() -> None:
    assert _command("api") == ["python", "-m", "api"]
    assert _command("realtime") == ["python", "-m", "realtime"]
    assert _command("worker")[:3] == ["dramatiq", "workers.main:setup", "--skip-logging"]


def test_the_entry_points_compose_runs_exist_in_the_repository() -> None:
    assert _runs_with_python_m("api")
    assert _runs_with_python_m("realtime")
    assert _defines_function("workers.main:setup")


def test_the_worker_runs_the_procfile_command_and_polls_every_100_ms() -> None:
    assert _command("worker") == _procfile()["worker"]
    assert _environment("worker")["dramatiq_worker_timeout"] == "100"


def test_http_app_services_report_ready_from_their_own_port() -> None:
    assert "http://127.0.0.1:8000/health/ready" in _healthcheck("api")
    assert "http://127.0.0.1:8001/health/ready" in _healthcheck("realtime")
    assert "urllib.request.urlopen" in _healthcheck("api")
    assert "urllib.request.urlopen" in _healthcheck("realtime")


def test_the_worker_health_check_pings_the_configured_redis() -> None:
    check = _healthcheck("worker")

    assert "redis.Redis.from_url(os.environ['SOVD_REDIS_URL']" in check
    assert ".ping()" in check


def test_app_services_run_in_production_against_the_compose_redis() -> None:
    expected = {
        "SOVD_ENV": "production",
        "SOVD_REDIS_URL": "redis://redis:6379/0",
        "SOVD_JWT_SECRET": "${SOVD_JWT_SECRET:?set SOVD_JWT_SECRET}",
        "SOVD_LOG_FORMAT": "json",
        "SOVD_PUBLIC_REALTIME_URL": "ws://localhost:8080",
        "SOVD_API_HOST": "0.0.0.0",
        "SOVD_REALTIME_HOST": "0.0.0.0",
        "SOVD_CONNECTOR": "mqtt",
        "SOVD_MQTT_HOST": "mosquitto",
        "SOVD_MQTT_VEHICLE_SECRET": "${SOVD_MQTT_VEHICLE_SECRET:?set SOVD_MQTT_VEHICLE_SECRET}",
    }
    extra = {"api": {"SOVD_TRUSTED_PROXIES"}, "realtime": {"SOVD_TRUSTED_PROXIES"}}
    for name in APP_SERVICES:
        env = _environment(name)
        sovd = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        assert {k: v for k, v in sovd.items() if k not in extra.get(name, set())} == expected, name


@pytest.mark.parametrize("service", ["api", "realtime"])
def test_forwarded_headers_are_believed_from_the_edge_address_only(service: str) -> None:
    edge = _service("edge")["networks"]["default"]["ipv4_address"]
    subnets = [c["subnet"] for c in _compose()["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_address(edge) in ipaddress.ip_network(subnets[0])
    env = _environment(service)
    assert "FORWARDED_ALLOW_IPS" not in env  # uvicorn's blanket trust stays off
    trusted = Settings(_env_file=None, trusted_proxies=env["SOVD_TRUSTED_PROXIES"])
    assert trusted.trusted_proxies == [edge]


def test_every_sovd_variable_in_compose_is_a_valid_settings_field() -> None:
    for name in APP_SERVICES:
        env = {k: v for k, v in _environment(name).items() if k.startswith(ENV_PREFIX)}
        assert set(env) <= _settings_variables(), name
        values = {k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items()}
        values["jwt_secret"] = "s" * 48  # compose reads the real one from the host
        values["mqtt_vehicle_secret"] = "v" * 48
        settings = Settings.model_validate(values)  # validates the values, reads no env
        assert settings.env == "production"
        assert settings.effective_redis_url == "redis://redis:6379/0"


def test_published_ports_match_the_settings_defaults() -> None:
    assert (API_PORT, REALTIME_PORT) == (8000, 8001)
    assert _container_ports("api") == {API_PORT}
    assert _container_ports("realtime") == {REALTIME_PORT}
    assert _container_ports("edge") == {8080}
    assert _container_ports("redis") == set()
    assert _container_ports("worker") == set()


def test_the_edge_mounts_its_config_and_waits_for_healthy_api_and_realtime() -> None:
    edge = _service("edge")

    assert edge["image"] == "nginx:1.27-alpine"
    assert edge["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert edge["depends_on"] == {
        "api": {"condition": "service_healthy"},
        "realtime": {"condition": "service_healthy"},
    }
    assert _nginx().one("http").one("server").one("listen").args == ["8080"]


def test_the_edge_routes_api_paths_to_the_api_and_websockets_to_realtime() -> None:
    for path in ("/api/", "/docs", "/openapi.json", "/health/"):
        assert _proxied_to(path) == f"api:{API_PORT}", path
    assert _proxied_to("/ws/") == f"realtime:{REALTIME_PORT}"
    assert _proxied_to("/sse/") == f"realtime:{REALTIME_PORT}"
    assert _location("/sse/").one("proxy_buffering").args == ["off"]


def _routed(path: str) -> Directive:
    """The location nginx picks for ``path``: the longest prefix, unless a regular
    expression location matches (the first in the file), as nginx does without ``^~``."""
    locations = _nginx().all("location")
    prefixes = [loc for loc in locations if len(loc.args) == 1 and path.startswith(loc.args[0])]
    best = max(prefixes, key=lambda loc: len(loc.args[0]), default=None)
    for loc in locations:
        if loc.args[0] in ("~", "~*") and re.search(
            loc.args[1], path, re.IGNORECASE if loc.args[0] == "~*" else 0
        ):
            return loc
    assert best is not None, f"no location for {path}"
    return best


def test_the_edge_sends_a_commands_server_sent_events_to_realtime_unbuffered() -> None:
    """``GET /api/v1/commands/{id}/events`` is served by realtime; the api has no such
    route, so the /api/ prefix must not take it."""
    upstreams = {u.args[0]: u.one("server").args[0] for u in _nginx().all("upstream")}
    events = _routed("/api/v1/commands/0b7e2f9c-8f1e-4a63-9d0e-2b1c3d4e5f60/events")
    target = events.one("proxy_pass").args[0].removeprefix("http://")
    assert upstreams[target] == f"realtime:{REALTIME_PORT}"
    assert events.one("proxy_buffering").args == ["off"]
    assert events.one("proxy_read_timeout").args == ["1h"]
    for other in ("/api/v1/commands", "/api/v1/commands/x", "/api/v1/commands/x/cancel"):
        assert _routed(other) is _location("/api/"), other


def test_the_edge_upgrades_websockets_without_buffering_or_short_timeouts() -> None:
    ws = _location("/ws/")
    upgrade_map = next(
        m for m in _nginx().all("map") if m.args == ["$http_upgrade", "$connection_upgrade"]
    )

    assert ws.one("proxy_http_version").args == ["1.1"]
    assert _headers(ws)["Upgrade"] == "$http_upgrade"
    assert _headers(ws)["Connection"] == "$connection_upgrade"
    assert {m.name: m.args for m in upgrade_map.block} == {"default": ["upgrade"], "": ["close"]}
    assert ws.one("proxy_read_timeout").args == ["1h"]
    assert ws.one("proxy_send_timeout").args == ["1h"]
    assert ws.one("proxy_buffering").args == ["off"]


def test_the_edge_never_logs_query_strings() -> None:
    nginx = _nginx()
    formats = {f.args[0]: "".join(f.args[1:]) for f in nginx.all("log_format")}
    access_logs = [a.args for a in nginx.all("access_log")]

    assert access_logs == [["/dev/stdout", "sovd"]]
    assert "$uri" in formats["sovd"]
    for name, text in formats.items():
        used = set(re.findall(r"\$\{?(\w+)", text))
        assert not used & QUERY_VARIABLES, name
        assert not {v for v in used if v.startswith("arg_")}, name
    # nginx's error lines quote the whole request line: only critical ones may be written.
    assert [e.args for e in nginx.all("error_log")] == [["/dev/stderr", "crit"]]


def test_the_procfile_runs_redis_api_worker_realtime_and_gateway_from_modules_that_exist() -> None:
    procfile = _procfile()

    assert list(procfile) == [
        "redis", "api", "worker", "realtime", "mqtt", "bridge", "agent", "gateway",
    ]  # fmt: skip
    assert procfile["redis"] == ["python", "-m", "common.embedded_redis"]
    assert procfile["gateway"] == ["python", "-m", "gateway", "--procfile"]
    assert procfile["api"] == ["python", "-m", "api"]
    assert procfile["realtime"] == ["python", "-m", "realtime"]
    assert procfile["worker"][:2] == ["dramatiq", "workers.main:setup"]
    for name in ("redis", "api", "realtime", "gateway"):
        assert _runs_with_python_m(procfile[name][2]), name
    assert _defines_function(procfile["worker"][1])


def test_the_image_runs_the_api_as_a_non_root_user_by_default() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = re.findall(r"^([A-Z]+)\s+(.*)$", dockerfile, flags=re.MULTILINE)

    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert [args for op, args in instructions if op == "USER"] == ["10001:10001"]
    assert [args for op, args in instructions if op == "CMD"] == ['["python", "-m", "api"]']
    assert re.findall(r"\b(SOVD_\w+)=", dockerfile) == ["SOVD_API_HOST", "SOVD_REALTIME_HOST"]
    assert {"SOVD_API_HOST", "SOVD_REALTIME_HOST"} <= _settings_variables()


def test_the_image_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(pattern.removesuffix("*") for pattern in include)
    dockerfile = (ROOT / "Dockerfile").read_text()
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()

    assert packages == ["agent", "api", "cli", "common", "gateway", "realtime", "workers"]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/" in dockerignore, package


def test_the_broker_runs_the_deploy_config_and_acl_after_the_accounts_are_written() -> None:
    broker = _service("mosquitto")
    assert broker["image"] == "eclipse-mosquitto:2"
    mounts = set(broker["volumes"])
    assert "./deploy/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert "./deploy/mosquitto/acl:/mosquitto/config/acl:ro" in mounts
    assert "mqtt-auth:/mosquitto/auth" in mounts
    assert broker["depends_on"] == {
        "mqtt-accounts": {"condition": "service_completed_successfully"}
    }
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "password_file /mosquitto/auth/passwd" in conf
    assert "allow_anonymous false" in conf
    accounts = _command("mqtt-accounts")
    assert accounts[:2] == ["sovd-admin", "mqtt-credentials"]
    assert accounts[accounts.index("--password-file") + 1] == "/mosquitto/auth/passwd"


def test_the_bridge_and_agent_run_modules_that_exist_and_the_procfile_runs_them_too() -> None:
    procfile = _procfile()
    for name, module in (("bridge", "workers.vehicle_bridge"), ("agent", "agent")):
        assert _command(name) == ["python", "-m", module], name
        assert procfile[name] == ["python", "-m", module], name
        assert _runs_with_python_m(module), name
    assert procfile["mqtt"] == ["python", "-m", "common.embedded_mqtt"]
    assert _runs_with_python_m("common.embedded_mqtt")
