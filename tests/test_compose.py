"""The Docker Compose playgrounds under ``compose/``: structure, grants, move configs, ``config``.

No container is started (no Docker engine runs where the tests do). The structural tests parse the
compose files with PyYAML and always run. ``docker-compose config`` (or ``docker compose config``)
validates the files against Compose's own schema when one of them is installed; only that part is
skipped, loudly, when neither is.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tablemover.config import load_config
from tablemover.flavor import Flavor, parse_version
from tablemover.preflight.grant_plan import grant_script, minimal_needs
from tablemover.preflight.grants import NameRules, parse_show_grants, plan_fix
from tablemover.preflight.privileges import source_requirements, target_requirements

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
TABLES = ["orders", "order_items"]
DATABASE = "app"
MOVER = "'mover'@'%'"


@dataclass(frozen=True)
class Stack:
    """What one compose playground must look like."""

    flavor: str
    image: str
    source_port: int
    target_port: int
    version: str  # a server version string of that image, for tablemover's privilege model
    gtid_flags: tuple[str, ...]
    root_password_var: str  # the image's variable for the root password
    healthcheck: str  # a word the healthcheck command must contain

    @property
    def compose_file(self) -> Path:
        return COMPOSE / f"docker-compose.{self.flavor}.yml"

    @property
    def move_config(self) -> Path:
        return COMPOSE / f"move.{self.flavor}.toml"

    def init_sql(self, role: str) -> Path:
        return COMPOSE / "init" / f"{self.flavor}-{role}.sql"

    @property
    def ports(self) -> dict[str, int]:
        return {"source": self.source_port, "target": self.target_port}


STACKS = [
    Stack(
        flavor="mysql",
        image="mysql:8.4",
        source_port=3316,
        target_port=3317,
        version="8.4.3",
        gtid_flags=("--gtid-mode=ON", "--enforce-gtid-consistency=ON"),
        root_password_var="MYSQL_ROOT_PASSWORD",
        healthcheck="mysqladmin ping",
    ),
    Stack(
        flavor="mariadb",
        image="mariadb:10.11",
        source_port=3326,
        target_port=3327,
        version="10.11.9-MariaDB",
        gtid_flags=("--gtid-strict-mode=ON", "--log-slave-updates=ON"),
        root_password_var="MARIADB_ROOT_PASSWORD",
        healthcheck="healthcheck.sh",
    ),
]
BY_FLAVOR = pytest.mark.parametrize("stack", STACKS, ids=[s.flavor for s in STACKS])


# --- helpers -------------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    """The parsed compose file; PyYAML is a dev dependency of these tests."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is None:
        pytest.fail(
            "PyYAML is not installed in this environment; the compose tests need it "
            "(add PyYAML to the dev dependencies in pyproject.toml)",
            pytrace=False,
        )
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def sql_statements(path: Path) -> list[str]:
    """The statements of an init SQL file: comments dropped, split on ``;`` outside quotes."""
    statements: list[str] = []
    current: list[str] = []
    quote = ""
    text = path.read_text()
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
            current.append(ch)
        elif text.startswith("--", i) or ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            statements.append(" ".join("".join(current).split()))
            current = []
        else:
            current.append(ch)
        i += 1
    assert not quote, f"{path}: unterminated quote"
    rest = " ".join("".join(current).split())
    assert not rest, f"{path}: statement without a terminating ';': {rest[:80]!r}"
    return [s for s in statements if s]


_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<obj>\S+)\s+TO\s+(?P<who>.+)$", re.I)


def grant_statements(path: Path) -> list[str]:
    """The GRANT statements of an init SQL file."""
    return [s for s in sql_statements(path) if s.upper().startswith("GRANT ")]


def grants_by_object(path: Path | list[str]) -> dict[str, set[str]]:
    """``{"*.*": {...}, "app.orders": {...}}`` from GRANT statements (a file's, or given), all to the
    mover user."""
    found: dict[str, set[str]] = {}
    for statement in grant_statements(path) if isinstance(path, Path) else path:
        match = _GRANT.match(statement)
        assert match, f"{path}: cannot read {statement!r}"
        assert match["who"] == MOVER, f"{path}: grant to someone other than {MOVER}: {statement!r}"
        obj = match["obj"].replace("`", "")
        privileges = {" ".join(p.upper().split()) for p in match["privs"].split(",")}
        assert obj not in found, f"{path}: two GRANTs on {obj}; keep one per object"
        found[obj] = privileges
    return found


def mover_passwords(path: Path) -> list[str]:
    """The passwords of every ``CREATE USER 'mover'@'%'`` in the file."""
    pattern = re.compile(
        r"^CREATE USER (?:IF NOT EXISTS )?'mover'@'%' IDENTIFIED (?:WITH \w+ )?BY '([^']*)'$", re.I
    )
    return [m[1] for s in sql_statements(path) if (m := pattern.match(s))]


def command_args(service: dict[str, Any]) -> list[str]:
    """A service's ``command`` as a list, whichever form the file uses."""
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def flag_values(args: list[str], name: str) -> list[str]:
    """The values of ``--name=value`` among ``args`` (``-``/``_`` spelled either way)."""
    wanted = name.replace("_", "-")
    values = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key.startswith("--") and key[2:].replace("_", "-") == wanted:
            values.append(value)
    return values


def host_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (resolved against compose/) of a service's bind mounts."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"long-form volume {volume!r}: use the short form"
        host, container = volume.split(":")[:2]
        mounts[container] = (COMPOSE / host).resolve()
    return mounts


def load_traffic() -> ModuleType:
    """compose/traffic.py as a module (it imports pymysql only when it runs); writes no bytecode."""
    path = COMPOSE / "traffic.py"
    module = ModuleType("compose_traffic")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


# --- compose files -------------------------------------------------------------------------------


@BY_FLAVOR
def test_compose_file_has_source_target_and_traffic(stack: Stack) -> None:
    data = load_yaml(stack.compose_file)
    assert str(data.get("version", "3.8")).split(".")[0] in ("2", "3"), "docker-compose 1.29 needs 2.x/3.x"
    assert set(data["services"]) == {"source", "target", "traffic"}
    for role in ("source", "target"):
        service = data["services"][role]
        assert service["image"] == stack.image


@BY_FLAVOR
def test_servers_write_the_binlog_tablemover_needs(stack: Stack) -> None:
    services = load_yaml(stack.compose_file)["services"]
    server_ids = []
    for role in ("source", "target"):
        args = command_args(services[role])
        assert any(a == "--log-bin" or a.startswith("--log-bin=") for a in args), f"{role}: no --log-bin"
        assert flag_values(args, "binlog-format") == ["ROW"], f"{role}: {args}"
        assert flag_values(args, "binlog-row-image") == ["FULL"], f"{role}: {args}"
        for flag in stack.gtid_flags:
            assert flag in args, f"{role}: {flag} missing from {args}"
        ids = flag_values(args, "server-id")
        assert len(ids) == 1 and ids[0].isdigit() and int(ids[0]) > 0, f"{role}: server-id {ids}"
        server_ids.append(int(ids[0]))
    assert len(set(server_ids)) == 2, f"source and target need distinct server ids, got {server_ids}"


@BY_FLAVOR
def test_servers_publish_only_on_loopback(stack: Stack) -> None:
    services = load_yaml(stack.compose_file)["services"]
    for role, port in stack.ports.items():
        assert services[role].get("ports") == [f"127.0.0.1:{port}:3306"], services[role].get("ports")
    assert "ports" not in services["traffic"]
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


@BY_FLAVOR
def test_servers_have_root_password_default_and_healthcheck(stack: Stack) -> None:
    services = load_yaml(stack.compose_file)["services"]
    for role in ("source", "target"):
        service = services[role]
        password = service["environment"][stack.root_password_var]
        assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*:-[^}]+\}", password), (
            f"{role}: root password {password!r} should come from an env var with a default"
        )
        health = service["healthcheck"]
        test = health["test"]
        command = " ".join(test) if isinstance(test, list) else str(test)
        assert stack.healthcheck in command, f"{role}: healthcheck {command!r}"
        for key in ("interval", "timeout", "retries"):
            assert key in health, f"{role}: healthcheck without {key}"


@BY_FLAVOR
def test_servers_mount_their_init_sql(stack: Stack) -> None:
    services = load_yaml(stack.compose_file)["services"]
    for role in ("source", "target"):
        mounts = host_mounts(services[role])
        init = {c: h for c, h in mounts.items() if c.startswith("/docker-entrypoint-initdb.d/")}
        assert list(init.values()) == [stack.init_sql(role).resolve()], f"{role}: {mounts}"
        assert stack.init_sql(role).is_file()


@BY_FLAVOR
def test_traffic_service_runs_the_bundled_script(stack: Stack) -> None:
    services = load_yaml(stack.compose_file)["services"]
    traffic = services["traffic"]
    assert traffic["image"] == "python:3.11-slim"
    mounts = host_mounts(traffic)
    scripts = [c for c, h in mounts.items() if h == (COMPOSE / "traffic.py").resolve()]
    assert scripts, f"traffic.py is not mounted: {mounts}"
    command = " ".join(command_args(traffic))
    assert re.search(r"pip install .*pymysql", command, re.I), command
    assert scripts[0] in command, command
    env = traffic["environment"]
    assert env["DB_HOST"] == "source" and str(env["DB_PORT"]) == "3306" and env["DB_NAME"] == DATABASE
    assert env["DB_PASSWORD"] == services["source"]["environment"][stack.root_password_var]
    depends = traffic["depends_on"]
    assert "source" in depends
    assert traffic.get("restart", "no") == "no", "traffic exits 0 at cutover and must stay down"


def test_traffic_script_compiles_and_treats_1146_as_cutover() -> None:
    traffic = load_traffic()
    assert traffic.ER_NO_SUCH_TABLE == 1146
    assert traffic.is_cutover(1146, tables_seen=True)
    assert not traffic.is_cutover(1146, tables_seen=False), "1146 before any write is a startup race"
    assert not traffic.is_cutover(2003, tables_seen=True)
    assert traffic.error_code(Exception(1146, "Table 'app.orders' doesn't exist")) == 1146
    assert set(traffic.TABLES) == set(TABLES)


# --- init SQL ------------------------------------------------------------------------------------


def printed_grants(stack: Stack, role: str) -> list[str]:
    """What `tablemover check` prints for the compose move config (target schema created by init)."""
    config = load_config(stack.move_config)
    version = parse_version(stack.version)
    script = grant_script(
        minimal_needs(config.move, version, target_schema_exists=True),
        version.flavor,
        version.flavor,
        account=MOVER,
    )
    part = script.split("-- on the target")[role == "target"]
    return [line.rstrip(";") for line in part.splitlines() if line.startswith("GRANT")]


@BY_FLAVOR
def test_init_sql_grants_exactly_what_check_prints(stack: Stack) -> None:
    for role in ("source", "target"):
        assert grants_by_object(stack.init_sql(role)) == grants_by_object(printed_grants(stack, role))
        statements = sql_statements(stack.init_sql(role))
        assert not [s for s in statements if s.upper().startswith("REVOKE")]
        assert any(re.fullmatch(r"CREATE DATABASE (IF NOT EXISTS )?`?app`?", s, re.I) for s in statements)
    # table-level: nothing on the whole application schema but MySQL's LOCK TABLES
    source = grants_by_object(stack.init_sql("source"))
    assert source.get("app.*", {"LOCK TABLES"}) == {"LOCK TABLES"}
    assert "app.*" not in grants_by_object(stack.init_sql("target"))


@BY_FLAVOR
def test_init_sql_grants_satisfy_tablemover_preflight(stack: Stack) -> None:
    """The grants pass tablemover's own privilege model (what `tablemover check` decides)."""
    version = parse_version(stack.version)
    rules = NameRules(ordering=version.flavor)
    move = load_config(stack.move_config).move
    source = parse_show_grants(grant_statements(stack.init_sql("source")))
    target = parse_show_grants(grant_statements(stack.init_sql("target")))
    assert not source.unparsed and not target.unparsed
    source_plan = plan_fix([source], source_requirements(move, version), rules)
    assert not source_plan.missing, source_plan
    target_plan = plan_fix([target], target_requirements(move), rules)
    assert not target_plan.missing, target_plan
    if version.flavor is Flavor.MYSQL:
        # LOCK TABLES is there for a reason: without it MySQL 8.0.22+ refuses the locking reads.
        lines = [s for s in grant_statements(stack.init_sql("source")) if "LOCK TABLES" not in s]
        without = plan_fix([parse_show_grants(lines)], source_requirements(move, version), rules)
        assert without.missing


@BY_FLAVOR
def test_source_init_sql_creates_movable_demo_tables_with_rows(stack: Stack) -> None:
    statements = sql_statements(stack.init_sql("source"))
    for table in TABLES:
        creates = [s for s in statements if re.match(rf"CREATE TABLE (`?app`?\.)?`?{table}`? \(", s, re.I)]
        assert len(creates) == 1, f"CREATE TABLE {table}: {creates}"
        ddl = creates[0].upper()
        assert "PRIMARY KEY" in ddl and "ENGINE=INNODB" in ddl, ddl
        inserts = [s for s in statements if re.match(rf"INSERT INTO (`?app`?\.)?`?{table}`? ", s, re.I)]
        assert inserts, f"no seed rows for {table}"
    text = " ".join(statements).upper()
    assert "FOREIGN KEY" not in text and "REFERENCES" not in text and "TRIGGER" not in text
    target = " ".join(sql_statements(stack.init_sql("target"))).upper()
    assert "CREATE TABLE" not in target, "tablemover creates the target tables itself"


# --- tablemover configs --------------------------------------------------------------------------


@BY_FLAVOR
def test_move_config_points_at_the_published_ports(stack: Stack) -> None:
    config = load_config(stack.move_config, env={})
    services = load_yaml(stack.compose_file)["services"]
    assert config.move.database == DATABASE
    assert config.move.tables == TABLES
    for role, server in (("source", config.source), ("target", config.target)):
        published = services[role]["ports"][0].split(":")
        assert (server.host, server.port) == (published[0], int(published[1]))
        assert (server.host, server.port) == ("127.0.0.1", stack.ports[role])
        assert server.user == "mover"
        assert mover_passwords(stack.init_sql(role)) == [server.resolved_password()], role
    assert config.socket_path.startswith("/tmp/"), config.socket_path


def test_compose_readme_explains_the_workflow() -> None:
    text = (COMPOSE / "README.md").read_text()
    for needle in (
        "docker compose -f compose/docker-compose.mysql.yml up -d",
        "tablemover check -c compose/move.mysql.toml",
        "tablemover run -c compose/move.mysql.toml",
        "tablemover verify -c compose/move.mysql.toml",
        "down -v",
        "mariadbd",
        "healthy",
    ):
        assert needle in text, needle


# --- docker-compose config -----------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """``docker-compose`` (Debian's 1.29) or the ``docker compose`` plugin, whichever exists."""
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


def compose_env(**overrides: str) -> dict[str, str]:
    """The environment without anything that changes how the files interpolate."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEMO_ROOT_PASSWORD", "TRAFFIC_RATE") and not k.startswith("COMPOSE_")
    }
    env.update(overrides)
    return env


@BY_FLAVOR
def test_docker_compose_config_accepts_the_file(stack: Stack) -> None:
    command = compose_command()
    if command is None:
        message = (
            "docker-compose not installed: the compose files were NOT validated with `docker-compose "
            "config`. Install Debian's docker-compose package (apt-get install docker-compose) to run it."
        )
        print(f"\n{'!' * 20} {message} {'!' * 20}")
        warnings.warn(message, stacklevel=1)
        pytest.skip("docker-compose not installed")
    result = subprocess.run(
        [*command, "-f", str(stack.compose_file), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        env=compose_env(),
    )
    assert result.returncode == 0, f"{' '.join(command)} config failed:\n{result.stderr}"
    rendered = result.stdout
    for port in stack.ports.values():
        assert f"127.0.0.1:{port}:3306" in rendered, rendered
    assert "--binlog-format=ROW" in rendered and "--binlog-row-image=FULL" in rendered
    assert "rootpass" in rendered, "the root password default was not interpolated"
    custom = subprocess.run(
        [*command, "-f", str(stack.compose_file), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        env=compose_env(DEMO_ROOT_PASSWORD="s3cret-from-env"),
    )
    assert custom.returncode == 0, custom.stderr
    assert "s3cret-from-env" in custom.stdout and "rootpass" not in custom.stdout
