"""Unit tests for tablemover.config: TOML parsing, validation messages and environment overrides.

Every invalid input must surface as :class:`ConfigError` (exit code 2, a readable message), never as
a raw pydantic ValidationError or another exception with a traceback.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.config import Config, load_config, parse_config
from tablemover.errors import ConfigError

FAST = settings(max_examples=150, deadline=None)

MINIMAL = """\
[move]
name = "orders"
database = "app"
tables = ["orders"]
"""


def parse(text: str = MINIMAL, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, origin="move.toml", env=env or {})


def with_move(extra: str) -> str:
    return MINIMAL + extra + "\n"


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    assert info.value.exit_code == 2
    return str(info.value)


# --------------------------------------------------------------------------- valid configs


def test_minimal_config_and_defaults() -> None:
    config = parse()
    assert config.move.name == "orders"
    assert config.move.database == "app"
    assert config.move.tables == ["orders"]
    assert config.move.chunk_size == 1000
    assert config.move.postpone_cutover is False
    assert config.move.cutover_lock_timeout_s == 3
    assert config.move.renamed_table_format == "_{table}_moved"
    assert config.move.renamed("orders") == "_orders_moved"
    assert config.source.host == "127.0.0.1"
    assert config.source.port == 3306
    assert config.target.port == 3306
    assert config.throttle.max_lag_s == 2.0
    assert config.socket_path == "/run/tablemover/orders.sock"
    assert config.control.http == "127.0.0.1:0"


def test_full_config() -> None:
    text = """\
[move]
name = "m_1"
database = "app"
target_database = "app2"
tables = ["orders", "order_items"]
chunk_size = 500
postpone_cutover = true
renamed_table_format = "__old_{table}"

[source]
host = "10.0.0.1"
port = 3307
user = "mover"
password = "s3cret"

[target]
socket = "/run/mysqld/mysqld.sock"

[throttle]
max_lag_s = 0.5
max_threads_running = 10

[control]
socket = "/tmp/{name}.sock"
http = ""
"""
    config = parse(text)
    assert config.move.tables == ["orders", "order_items"]
    assert config.move.effective_target_database == "app2"
    assert config.move.renamed("orders") == "__old_orders"
    assert config.source.address == "10.0.0.1:3307"
    assert config.source.resolved_password() == "s3cret"
    assert config.target.address == "/run/mysqld/mysqld.sock"
    assert config.socket_path == "/tmp/m_1.sock"
    assert config.control.http == ""


def test_effective_target_database_defaults_to_database() -> None:
    assert parse().move.effective_target_database == "app"
    assert (
        parse(
            MINIMAL.replace('database = "app"', 'database = "app"\ntarget_database = ""')
        ).move.effective_target_database
        == "app"
    )


def test_effective_replica_server_id_stable_and_in_range() -> None:
    first = parse().move.effective_replica_server_id
    assert first == parse().move.effective_replica_server_id
    assert 1 <= first < 2**32
    other = parse(MINIMAL.replace('name = "orders"', 'name = "orders2"')).move.effective_replica_server_id
    assert other != first
    assert 1 <= other < 2**32


@given(st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True))
@FAST
def test_effective_replica_server_id_range_property(name: str) -> None:
    config = parse(MINIMAL.replace('name = "orders"', f'name = "{name}"'))
    server_id = config.move.effective_replica_server_id
    assert 1 <= server_id < 2**32
    assert server_id == config.move.effective_replica_server_id


def test_configured_replica_server_id_wins() -> None:
    config = parse(MINIMAL + "replica_server_id = 4242\n")
    assert config.move.effective_replica_server_id == 4242


# --------------------------------------------------------------------------- invalid configs


def test_unknown_key_is_named() -> None:
    message = error_of(MINIMAL + "postpone_cutovr = true\n")
    assert "unknown key" in message
    assert "move.postpone_cutovr" in message
    assert "move.toml" in message


def test_unknown_key_in_other_section() -> None:
    message = error_of(MINIMAL + "[source]\nhots = 'x'\n")
    assert "unknown key" in message
    assert "source.hots" in message


def test_unknown_section_is_an_error() -> None:
    message = error_of(MINIMAL + "[sorce]\nhost = 'x'\n")
    assert "unknown key" in message
    assert "sorce" in message


def test_missing_required_key() -> None:
    message = error_of('[move]\nname = "orders"\ntables = ["orders"]\n')
    assert "move.database" in message
    assert "missing" in message


def test_invalid_toml() -> None:
    assert "not valid TOML" in error_of("[move\nname=")


@pytest.mark.parametrize("port", ["0", "65536", "-1", "99999", '"abc"', "3306.5", "[3306]"])
def test_bad_port(port: str) -> None:
    message = error_of(MINIMAL + f"[source]\nport = {port}\n")
    assert "source.port" in message


def test_empty_tables() -> None:
    message = error_of(MINIMAL.replace('tables = ["orders"]', "tables = []"))
    assert "move.tables" in message


def test_duplicate_tables() -> None:
    message = error_of(MINIMAL.replace('tables = ["orders"]', 'tables = ["orders", "items", "orders"]'))
    assert "move.tables" in message
    assert "twice" in message


@pytest.mark.parametrize("bad", ["or-ders", "app.orders", "or ders", "`orders`", "", "x" * 65, "ord'ers"])
def test_bad_table_identifier(bad: str) -> None:
    message = error_of(MINIMAL.replace('tables = ["orders"]', f'tables = ["{bad}"]'))
    assert "move.tables" in message


@pytest.mark.parametrize("bad", ["Orders", "with-dash", "", "x" * 33])
def test_bad_move_name(bad: str) -> None:
    assert "move.name" in error_of(MINIMAL.replace('name = "orders"', f'name = "{bad}"'))


def test_bad_target_database() -> None:
    assert "move.target_database" in error_of(MINIMAL + 'target_database = "a.b"\n')


@pytest.mark.parametrize("fmt", ["_moved", "{tabel}_moved", "{table}", "{table}-moved", "{table}.old"])
def test_bad_renamed_table_format(fmt: str) -> None:
    message = error_of(MINIMAL + f'renamed_table_format = "{fmt}"\n')
    assert "move.renamed_table_format" in message


def test_renamed_table_format_without_table_placeholder_says_so() -> None:
    assert "{table}" in error_of(MINIMAL + 'renamed_table_format = "_moved"\n')


@pytest.mark.parametrize("fmt", ["{table}_{x}", "_{table}_{}", "{table}_{0}", "{table}_{"])
def test_renamed_table_format_with_stray_braces_is_a_config_error(fmt: str) -> None:
    message = error_of(MINIMAL + f'renamed_table_format = "{fmt}"\n')
    assert "move.renamed_table_format" in message


def test_password_and_password_file_together() -> None:
    message = error_of(MINIMAL + '[source]\npassword = "x"\npassword_file = "/etc/p"\n')
    assert "source" in message
    assert "password_file" in message


@pytest.mark.parametrize("http", ["localhost", "127.0.0.1:", ":80", "a b:80"])
def test_bad_http(http: str) -> None:
    assert "control.http" in error_of(MINIMAL + f'[control]\nhttp = "{http}"\n')


# --------------------------------------------------------------------------- environment overrides


def test_env_overrides_scalar() -> None:
    config = parse(env={"TABLEMOVER_SOURCE__PORT": "3307", "TABLEMOVER_TARGET__HOST": "db2"})
    assert config.source.port == 3307
    assert config.target.host == "db2"
    assert config.target.port == 3306


def test_env_overrides_file_value() -> None:
    config = parse(MINIMAL + "[source]\nport = 3310\n", env={"TABLEMOVER_SOURCE__PORT": "3307"})
    assert config.source.port == 3307


def test_env_tables_comma_list() -> None:
    assert parse(env={"TABLEMOVER_MOVE__TABLES": "a,b"}).move.tables == ["a", "b"]
    assert parse(env={"TABLEMOVER_MOVE__TABLES": " a , b ,"}).move.tables == ["a", "b"]


def test_env_tables_json_list() -> None:
    assert parse(env={"TABLEMOVER_MOVE__TABLES": '["x", "y"]'}).move.tables == ["x", "y"]
    assert parse(env={"TABLEMOVER_MOVE__TABLES": '["solo"]'}).move.tables == ["solo"]


def test_env_single_table_without_comma() -> None:
    assert parse(env={"TABLEMOVER_MOVE__TABLES": "solo"}).move.tables == ["solo"]


def test_env_bad_json_list_is_config_error() -> None:
    assert "cannot parse the JSON list" in error_of(MINIMAL, env={"TABLEMOVER_MOVE__TABLES": '["x",'})


def test_env_password_with_comma_is_taken_verbatim() -> None:
    config = parse(env={"TABLEMOVER_SOURCE__PASSWORD": "pa,ss"})
    assert config.source.resolved_password() == "pa,ss"


def test_env_password_starting_with_bracket_is_taken_verbatim() -> None:
    config = parse(env={"TABLEMOVER_SOURCE__PASSWORD": "[s3cret"})
    assert config.source.resolved_password() == "[s3cret"


def test_env_unknown_section_is_an_error() -> None:
    message = error_of(MINIMAL, env={"TABLEMOVER_SORCE__PORT": "1"})
    assert "TABLEMOVER_SORCE__PORT" in message
    assert "sorce" in message


def test_env_unknown_key_is_an_error() -> None:
    message = error_of(MINIMAL, env={"TABLEMOVER_SOURCE__PROT": "1"})
    assert "unknown key" in message
    assert "source.prot" in message


def test_env_bad_value_is_config_error() -> None:
    assert "source.port" in error_of(MINIMAL, env={"TABLEMOVER_SOURCE__PORT": "abc"})


def test_env_unrelated_variables_are_ignored() -> None:
    config = parse(env={"TABLEMOVER_DEBUG": "1", "PATH": "/bin", "OTHER__X": "y", "TABLEMOVERX__A": "1"})
    assert config.source.port == 3306


def test_env_can_create_a_section() -> None:
    config = parse(env={"TABLEMOVER_THROTTLE__MAX_LAG_S": "0.25"})
    assert config.throttle.max_lag_s == 0.25


# --------------------------------------------------------------------------- passwords


def test_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "source.pass"
    secret.write_text("hunter2\n")
    config = parse(MINIMAL + f'[source]\npassword_file = "{secret}"\n')
    assert config.source.resolved_password() == "hunter2"


def test_password_file_keeps_inner_whitespace(tmp_path: Path) -> None:
    secret = tmp_path / "source.pass"
    secret.write_text(" a b \r\n")
    config = parse(MINIMAL + f'[source]\npassword_file = "{secret}"\n')
    assert config.source.resolved_password() == " a b "


def test_password_file_missing_is_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pass"
    config = parse(MINIMAL + f'[source]\npassword_file = "{missing}"\n')
    with pytest.raises(ConfigError, match=r"nope\.pass"):
        config.source.resolved_password()


def test_password_file_directory_is_config_error(tmp_path: Path) -> None:
    config = parse(MINIMAL + f'[target]\npassword_file = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match="password_file"):
        config.target.resolved_password()


def test_password_never_in_repr() -> None:
    config = parse(MINIMAL + '[source]\npassword = "hunter2-src"\n[target]\npassword = "hunter2-tgt"\n')
    for text in (
        repr(config),
        str(config),
        repr(config.source),
        str(config.target),
        config.model_dump_json(),
    ):
        assert "hunter2" not in text
    assert config.source.resolved_password() == "hunter2-src"
    assert config.target.resolved_password() == "hunter2-tgt"


@pytest.mark.parametrize("value", ["[hunter2", "hunter2,", "[hunter2]", '["hunter2"]'])
def test_password_never_in_error_messages(value: str) -> None:
    """Whatever happens to an env password, a ConfigError message must not print it."""
    try:
        parse(env={"TABLEMOVER_SOURCE__PASSWORD": value})
    except ConfigError as exc:
        assert "hunter2" not in str(exc)


def test_password_from_env_never_in_repr() -> None:
    config = parse(env={"TABLEMOVER_TARGET__PASSWORD": "hunter2"})
    assert "hunter2" not in repr(config)
    assert config.target.resolved_password() == "hunter2"


# --------------------------------------------------------------------------- files


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "move.toml"
    path.write_text(MINIMAL)
    assert load_config(path, env={}).move.name == "orders"


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", env={})


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "move.toml"
    path.write_text(MINIMAL + "bogus = 1\n")
    with pytest.raises(ConfigError, match=r"move\.toml"):
        load_config(path, env={})


# --------------------------------------------------------------------------- properties


@given(st.integers(1, 65535), st.integers(10, 100_000))
@FAST
def test_valid_ports_and_chunk_sizes_parse(port: int, chunk: int) -> None:
    config = parse(MINIMAL + f"chunk_size = {chunk}\n[source]\nport = {port}\n")
    assert config.source.port == port
    assert config.move.chunk_size == chunk
    env_config = parse(env={"TABLEMOVER_TARGET__PORT": str(port), "TABLEMOVER_MOVE__CHUNK_SIZE": str(chunk)})
    assert env_config.target.port == port
    assert env_config.move.chunk_size == chunk


bad_ints = st.one_of(st.integers(max_value=0), st.integers(min_value=65536))
bad_chunks = st.one_of(st.integers(max_value=9), st.integers(min_value=100_001))


@given(bad_ints)
@FAST
def test_invalid_ports_raise_config_error(port: int) -> None:
    assert "source.port" in error_of(MINIMAL + f"[source]\nport = {port}\n")
    assert "target.port" in error_of(MINIMAL, env={"TABLEMOVER_TARGET__PORT": str(port)})


@given(bad_chunks)
@FAST
def test_invalid_chunk_sizes_raise_config_error(chunk: int) -> None:
    assert "move.chunk_size" in error_of(MINIMAL + f"chunk_size = {chunk}\n")


@given(st.text(alphabet=string.ascii_letters + " .-_/", min_size=1, max_size=10).filter(lambda s: s.strip()))
@FAST
def test_non_numeric_port_strings_raise_config_error(value: str) -> None:
    error_of(MINIMAL, env={"TABLEMOVER_SOURCE__PORT": value})


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
@FAST
def test_fractional_ports_raise_config_error(value: float) -> None:
    error_of(MINIMAL + f"[source]\nport = {value!r}\n")


_FMT_PART = st.text(alphabet="_a0x{}.!:", max_size=6)


@given(_FMT_PART, _FMT_PART)
@FAST
def test_any_renamed_table_format_parses_or_raises_config_error(before: str, after: str) -> None:
    fmt = before + "{table}" + after
    try:
        config = parse(env={"TABLEMOVER_MOVE__RENAMED_TABLE_FORMAT": fmt})
    except ConfigError:
        return
    renamed = config.move.renamed("orders")
    assert renamed != "orders"
    assert renamed


def test_a_password_file_is_read_from_systemds_credential_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "orders.source.pass").write_text("from-etc\n")
    creds = tmp_path / "credentials"
    creds.mkdir()
    config = parse(with_move(f'[source]\npassword_file = "{etc}/orders.source.pass"'))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert config.source.resolved_password() == "from-etc"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert config.source.resolved_password() == "from-etc", "no credential of that name: the file itself"
    (creds / "orders.source.pass").write_text("from-credential\n")
    assert config.source.resolved_password() == "from-credential"
