"""The move's configuration: a TOML file validated by pydantic, with environment overrides.

Every key can be overridden by ``TABLEMOVER_<SECTION>__<KEY>`` (e.g. ``TABLEMOVER_SOURCE__PORT=3307``),
which is how systemd drop-ins and containers usually inject settings. Unknown keys are errors,
not warnings: a typo in ``postpone_cutover`` must not silently start a cutover.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tablemover.errors import ConfigError

_IDENT = r"[A-Za-z0-9_$]{1,64}"
ENV_PREFIX = "TABLEMOVER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoveSection(_Section):
    """``[move]``: what is moved and how the cutover behaves."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$", description="names the checkpoint rows and the socket")
    database: str = Field(pattern=f"^{_IDENT}$", description="source schema")
    target_database: str = Field(default="", description="target schema; empty means same as database")
    tables: list[str] = Field(min_length=1, description="tables to move, all from `database`")
    chunk_size: int = Field(default=1000, ge=10, le=100_000, description="rows per copy chunk (start value)")
    adaptive_chunk_size: bool = True  # grow/shrink chunks towards ~0.25 s each
    # Read the next chunk on a second source connection while the previous one is written: about
    # 1.5x faster, at the price of two chunks' rows locked at once instead of one.
    copy_read_ahead: bool = True
    # Parallel copy (tablemover.parallel): this many chunk readers, each with its own target writer,
    # across the moved tables and within a table by ranges of its first key column. 0 = from the
    # host's cores (copyplan.auto_copy_threads); 1 = one reader, the ordered writer writes chunks.
    copy_threads: int = Field(default=0, ge=0, le=32, description="parallel copy streams; 0 = auto")
    # Create the target tables with their primary and unique keys only, and add every other index
    # (plain, FULLTEXT, SPATIAL) in one ALTER per table once the copy is complete and caught up,
    # before the checksum gate: a copy without them writes faster (tablemover.indexes).
    defer_secondary_indexes: bool = Field(
        default=False, description="add non-unique indexes after the copy instead of before it"
    )
    postpone_cutover: bool = False
    postpone_flag_file: str = ""
    hooks_dir: str = ""
    hook_timeout_s: float = Field(default=60.0, gt=0)
    status_hook_interval_s: float = Field(default=60.0, gt=0, description="how often on-status runs")
    drain_timeout_s: float = Field(default=60.0, gt=0)
    cutover_lock_timeout_s: int = Field(default=3, ge=1, le=3600)
    cutover_max_attempts: int = Field(default=10, ge=1)
    # Look before you lock: while a source transaction older than cutover_blocker_min_age_s holds
    # a moved table, the RENAME is not issued (it would stall every query behind it); this bounds
    # that wait, after which the RENAME is tried anyway with its short lock wait.
    cutover_blocker_wait_s: float = Field(default=300.0, ge=0)
    cutover_blocker_min_age_s: float = Field(default=1.0, ge=0)
    renamed_table_format: str = "_{table}_moved"
    replica_server_id: int = Field(
        default=0, ge=0, lt=2**32, description="server_id the binlog client registers with; 0 = derived"
    )
    # How long one outage (deadlocks, lost connections, a restarting server) may last before the
    # daemon gives up with exit 1; any committed work in between starts a new outage.
    retry_budget_s: float = Field(default=300.0, gt=0, description="per-outage retry budget, seconds")
    # Checksum every table, source against target, before the cutover may start (spec 4, item 5).
    verify_before_cutover: bool = True
    # How many chunks that checksum compares at once, each on its own source and target connection.
    # The gate compares each copied chunk soon after its commit (trailing the copy, while the apply
    # lags under a second) instead of every row after the copy; what is left is finished before
    # the cutover. Only with verify_before_cutover.
    checksum_during_copy: bool = True
    checksum_threads: int = Field(
        default=2, ge=1, le=16, description="chunks the checksum compares at once (1..16)"
    )
    # The rollback window: after the success hook, stream the target's writes back into the
    # renamed source tables for this long, so `tablemover rollback` can return to the source
    # without losing a write. 0 = off (the move ends at DONE right after the success hook).
    rollback_window_s: float = Field(
        default=0.0, ge=0, description="seconds the rollback window stays open; 0 = off"
    )
    rolledback_table_format: str = "_{table}_rolledback"
    # Reading from a replica (issue #24, only with a [replica] section). What the move does while
    # the replica cannot be read from (unreachable, a thread stopped, not replicating from
    # [source], lagging past replica_max_lag_s): "wait" for it, with the reason in status; or
    # "source": after replica_fallback_after_s, read rows and the binlog from the primary instead,
    # from the same GTID position, for the rest of this run (a restarted daemon tries the replica
    # again, once it has caught up with what was applied).
    replica_fallback: Literal["wait", "source"] = "wait"
    replica_fallback_after_s: float = Field(default=10.0, ge=0)
    # A new move starts reading from the replica only within this lag; later it is a wait reason.
    replica_max_lag_s: float = Field(default=60.0, gt=0)
    # The schema that holds the move's own state (the checkpoint on the target, the rollback
    # window's feed checkpoint on the source), created by the daemon. A schema of its own, so that
    # the application's accounts, which have DML on the application schema, cannot write a row the
    # daemon would read as the move's state; grant them nothing on it.
    state_database: str = Field(
        default="_tablemover", pattern=f"^{_IDENT}$", description="schema of the move's own state"
    )
    # How each server resolves table and database names (its lower_case_table_names: 0 compares
    # them as spelt, 1 stores and compares them in lower case). Not configurable: read from the
    # servers by :func:`tablemover.schema.resolve_names`, which also folds the names above into the
    # spelling the server stored, so that every later comparison (the binlog's table maps, the
    # checkpoint's table keys, information_schema) sees the same name.
    _source_lctn: int = PrivateAttr(0)
    _target_lctn: int = PrivateAttr(0)

    @field_validator("tables")
    @classmethod
    def _tables_valid(cls, tables: list[str]) -> list[str]:
        for table in tables:
            if not re.fullmatch(_IDENT, table):
                raise ValueError(f"table name {table!r} is not a plain identifier")
        if len(set(tables)) != len(tables):
            raise ValueError("a table is listed twice")
        return tables

    @field_validator("target_database")
    @classmethod
    def _target_db_valid(cls, value: str) -> str:
        if value and not re.fullmatch(_IDENT, value):
            raise ValueError(f"{value!r} is not a plain identifier")
        return value

    @field_validator("renamed_table_format", "rolledback_table_format")
    @classmethod
    def _format_valid(cls, value: str) -> str:
        if "{table}" not in value:
            raise ValueError("must contain {table}, e.g. '_{table}_moved'")
        try:
            sample = value.format(table="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("may contain only the placeholder {table}") from exc
        if not re.fullmatch(_IDENT, sample) or sample == "t":
            raise ValueError("must produce a plain identifier different from the table name")
        return value

    @property
    def effective_copy_threads(self) -> int:
        """``copy_threads``, with 0 worked out from this host's cores (copyplan.auto_copy_threads)."""
        from tablemover.copyplan import auto_copy_threads  # copyplan is pure; no import cycle

        return self.copy_threads or auto_copy_threads(os.cpu_count())

    @property
    def effective_target_database(self) -> str:
        """The target schema, defaulting to the source schema's name."""
        return self.target_database or self.database

    def renamed(self, table: str) -> str:
        """The name a source table gets at cutover (as the source stores it)."""
        name = self.renamed_table_format.format(table=table)
        return name.lower() if self._source_lctn else name

    def rolledback(self, table: str) -> str:
        """The name a target table gets when the move is rolled back (as the target stores it)."""
        name = self.rolledback_table_format.format(table=table)
        return name.lower() if self._target_lctn else name

    @property
    def source_folds_names(self) -> bool:
        """True when the source stores and compares table names in lower case (lower_case_table_names=1)."""
        return self._source_lctn != 0

    @property
    def target_folds_names(self) -> bool:
        """True when the target stores and compares table names in lower case (lower_case_table_names=1)."""
        return self._target_lctn != 0

    def with_name_rules(self, source_lctn: int, target_lctn: int) -> MoveSection:
        """This section with every name spelt as the servers store it (see :func:`stored_names`)."""
        database, target_database, tables = stored_names(
            self.database, self.target_database, self.tables, source_lctn, target_lctn
        )
        # One name for both servers: fold it when either folds (a folded name is valid on both).
        state = self.state_database.lower() if source_lctn or target_lctn else self.state_database
        resolved = self.model_copy(
            update={
                "database": database,
                "target_database": target_database,
                "tables": tables,
                "state_database": state,
            }
        )
        resolved._source_lctn = source_lctn
        resolved._target_lctn = target_lctn
        return resolved

    @property
    def reverse_server_id(self) -> int:
        """The server_id of the rollback window's binlog client on the target (never the forward one)."""
        forward = self.effective_replica_server_id
        return forward + 1 if forward + 1 < 2**32 else forward - 1

    @property
    def effective_replica_server_id(self) -> int:
        """A stable server_id for the binlog client, unique per move unless configured.

        Derived from the move's name and schemas so that a restarted daemon reuses its id (the
        server then drops the stale dump thread instead of keeping two), while two moves, even of
        the same name into different target schemas, get different ids. Preflight refuses an id
        that a replica of the source or another tablemover move registered with.
        """
        if self.replica_server_id:
            return self.replica_server_id
        identity = f"{self.name}\0{self.database}\0{self.effective_target_database}"
        return 1_000_000_000 + zlib.crc32(identity.encode()) % 1_000_000_000

    @property
    def replica_host_tag(self) -> str:
        """What the binlog client reports as its host in SHOW REPLICA HOSTS: names the move."""
        return f"tablemover:{self.name}"


def credential_path(password_file: str) -> Path:
    """Where to read ``password_file`` from: systemd's credential of the same name when there is one.

    Under the unit, ``LoadCredential=`` hands the daemon a private copy of each password file
    (``$CREDENTIALS_DIRECTORY/<file name>``), so the files themselves can stay root-only (0600) and
    the operators' socket group never reads them. Anywhere else the configured path is read.
    """
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        credential = Path(directory) / Path(password_file).name
        if credential.is_file():
            return credential
    return Path(password_file)


def stored_names(
    database: str, target_database: str, tables: list[str], source_lctn: int, target_lctn: int
) -> tuple[str, str, list[str]]:
    """``(database, target_database, tables)`` as servers with these lower_case_table_names store them.

    With 1 the server folds every database and table name to lower case when it creates and when it
    looks one up, and the binlog's table maps carry the folded name; with 0 names are taken as
    spelt. (2, stored as spelt but compared folded, exists only on case-insensitive file systems;
    preflight refuses it.) Two configured tables that fold to one name are a configuration error.
    """

    def fold(name: str, lctn: int) -> str:
        return name.lower() if lctn == 1 else name

    folded = [fold(t, source_lctn) for t in tables]
    if len(set(folded)) != len(folded):
        raise ConfigError(
            f"[move] tables {tables} name the same table twice on the source, which compares table names "
            "case-insensitively (lower_case_table_names=1): list each table once."
        )
    return fold(database, source_lctn), fold(target_database, target_lctn), folded


class ServerSection(_Section):
    """``[source]`` / ``[target]``: how to reach a primary."""

    host: str = "127.0.0.1"
    port: int = Field(default=3306, ge=1, le=65535)
    user: str = "mover"
    password: SecretStr = SecretStr("")
    password_file: str = ""
    socket: str = Field(default="", description="unix socket path; overrides host/port when set")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # TLS, with the mysql client's --ssl-mode meanings (tablemover/tls.py). preferred: TLS when the
    # server offers it, unverified; required: TLS, unverified; verify_ca: the certificate must chain
    # to tls_ca; verify_identity: and name the host.
    tls_mode: Literal["disabled", "preferred", "required", "verify_ca", "verify_identity"] = "preferred"
    tls_ca: str = Field(default="", description="PEM file of the CA the server certificate must chain to")
    tls_cert: str = Field(default="", description="PEM client certificate (for REQUIRE X509 users)")
    tls_key: str = Field(default="", description="PEM private key of tls_cert, unencrypted")
    tls_min_version: Literal["", "TLSv1.2", "TLSv1.3"] = Field(
        default="", description='lowest TLS version accepted; "" = TLSv1.2 (the ssl module default)'
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> ServerSection:
        if self.password.get_secret_value() and self.password_file:
            raise ValueError("set either password or password_file, not both")
        return self

    @model_validator(mode="after")
    def _tls_consistent(self) -> ServerSection:
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key is set without tls_cert: set both (the client certificate and its key)")
        if self.socket and self.tls_mode in ("verify_ca", "verify_identity"):
            raise ValueError(
                f'tls_mode = "{self.tls_mode}" needs host/port: a unix socket connection is local and '
                'not encrypted, so there is no certificate to verify (use "preferred" or "required")'
            )
        return self

    def resolved_password(self) -> str:
        """The password, read from ``password_file`` when one is configured."""
        if not self.password_file:
            return self.password.get_secret_value()
        try:
            return credential_path(self.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read password_file {self.password_file!r}: {exc.strerror}. "
                "Check the path and that the tablemover user may read it."
            ) from exc

    @property
    def address(self) -> str:
        """Human-readable address for messages."""
        return self.socket or f"{self.host}:{self.port}"


class ThrottleSection(_Section):
    """``[throttle]``: when copying pauses (the binlog apply never does)."""

    max_lag_s: float = Field(default=2.0, gt=0)
    max_threads_running: int = Field(default=50, ge=1)
    flag_file: str = ""
    # Replicas of the target the copy must not put behind (issue #27): "host:port", reached with the
    # target's user, password and TLS settings.
    target_replicas: list[str] = Field(default_factory=list)
    # Replicas of the source, watched during the rollback window, when the reverse feed writes the
    # target's changes back into the source: "host:port", reached with the source's credentials.
    source_replicas: list[str] = Field(default_factory=list)
    max_replica_lag_s: float = Field(default=1.5, gt=0)
    heartbeat_interval_ms: int = Field(default=100, ge=10)
    # The cutover's wait, after the drain and before on-success, for the watched replicas to hold
    # the target's position; on timeout "stop" (exit 3 in DRAINED, a re-run waits again) or "proceed".
    cutover_replica_wait_s: float = Field(default=60.0, gt=0)
    replica_wait_timeout_action: Literal["stop", "proceed"] = "stop"

    @field_validator("target_replicas", "source_replicas")
    @classmethod
    def _replicas_valid(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[^\s:]+:\d{1,5}", item):
                raise ValueError(f'{item!r} must be "host:port"')
        return value


class ControlSection(_Section):
    """``[control]``: the unix socket and the optional HTTP status endpoint."""

    socket: str = "/run/tablemover/{name}.sock"
    http: str = Field(default="127.0.0.1:0", description='"host:port" for /status and /metrics; "" = off')

    @field_validator("http")
    @classmethod
    def _http_valid(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^\s:]+:\d{1,5}", value):
            raise ValueError('must be "host:port" or ""')
        return value


class Config(_Section):
    """A whole move configuration."""

    move: MoveSection
    source: ServerSection = ServerSection()
    target: ServerSection = ServerSection()
    # A replica of [source] that rows and the binlog are read from (issue #24); the RENAME, the
    # position read with it, the blocker check and the move's identity stay on [source].
    replica: ServerSection | None = None
    throttle: ThrottleSection = ThrottleSection()
    control: ControlSection = ControlSection()

    @property
    def reader(self) -> ServerSection:
        """Where rows and the binlog are read: ``[replica]`` when configured, else ``[source]``."""
        return self.replica if self.replica is not None else self.source

    @property
    def reader_role(self) -> str:
        """The role name of :attr:`reader` in messages and connection names."""
        return "replica" if self.replica is not None else "source"

    def reading_from_source(self) -> Config:
        """This config with rows and the binlog read from ``[source]`` (the replica fallback)."""
        return self.model_copy(update={"replica": None})

    @model_validator(mode="after")
    def _replica_is_another_server(self) -> Config:
        if self.replica is None:
            return self
        for role, server in (("source", self.source), ("target", self.target)):
            if self.replica.address == server.address:
                raise ValueError(
                    f"[replica] names the same server as [{role}] ({server.address}): it must be a "
                    "replica of [source] of its own"
                )
        return self

    def with_name_rules(self, source_lctn: int, target_lctn: int) -> Config:
        """This config with the move's names spelt as the servers store them (see ``MoveSection``)."""
        return self.model_copy(update={"move": self.move.with_name_rules(source_lctn, target_lctn)})

    @property
    def socket_path(self) -> str:
        """The control socket path with ``{name}`` filled in."""
        return self.control.socket.format(name=self.move.name)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Overlay TABLEMOVER_<SECTION>__<KEY> variables; returns which variable set which key."""
    applied: dict[tuple[str, str], str] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        if section not in Config.model_fields:
            raise ConfigError(
                f"environment variable {var} names an unknown section [{section}]; "
                f"known sections: {', '.join(Config.model_fields)}"
            )
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"[{section}] in the config file is not a table")
        target[key] = _env_value(var, value) if key in _LIST_KEYS.get(section, ()) else value
        applied[(section, key)] = var
    return applied


# Keys whose values are lists: from the environment they come as JSON or as a comma list. Every other
# value is taken verbatim (a password may contain commas or brackets) and pydantic coerces it.
_LIST_KEYS = {"move": ("tables",)}


def _env_value(var: str, value: str) -> Any:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{var}: cannot parse the JSON list: {exc.msg}") from exc
    return [part.strip() for part in stripped.split(",") if part.strip()]


def _format_validation_error(
    exc: ValidationError, origin: str, from_env: Mapping[tuple[str, str], str] | None = None
) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(err["loc"]) + " (see `tablemover run --help` for the format)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
        var = (from_env or {}).get((str(err["loc"][0]), str(err["loc"][1]))) if len(err["loc"]) > 1 else None
        where = f" (set by environment variable {var}, not by {origin})" if var else ""
        lines.append(f"  {loc}: {msg}{where}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """ ", did you mean chunk_size?" for a misspelt key of a known section."""
    if len(loc) != 2:
        return ""
    field = Config.model_fields.get(str(loc[0]))
    model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[1]), list(model.model_fields), n=1, cutoff=0.6)
    return f", did you mean {close[0]}?" if close else ""


def parse_config(text: str, origin: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    """Parse TOML text plus environment overrides into a validated :class:`Config`."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from exc
    from_env = _apply_env(raw, os.environ if env is None else env)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin, from_env)) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises :class:`ConfigError` with a readable message."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from exc
    return parse_config(text, origin=str(p), env=env)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Write a config (sections of scalars and lists) as TOML; the inverse of what we parse."""
    lines: list[str] = []
    for title, values in sections.items():
        lines.append(f"[{title}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def example_config() -> str:
    """A commented example config, printed by ``tablemover run --help``."""
    return _EXAMPLE


_EXAMPLE = """\
# The common keys. Every key, each with a comment: deploy/move.example.toml in the source tree.
[move]
name = "orders"                 # [a-z0-9_]{1,32}; names the checkpoint rows and the socket
database = "app"                # source schema
target_database = "app"         # default: same as database
tables = ["orders", "order_items"]
chunk_size = 1000               # rows per copy chunk (start value)
adaptive_chunk_size = true      # adapt the chunk size towards ~0.25 s per chunk
copy_read_ahead = true          # read the next chunk while the previous one is written
copy_threads = 0                # parallel chunk readers+writers; 0 = from the cores (1 on 2 cores)
defer_secondary_indexes = false # true: create non-unique indexes after the copy (one ALTER per table)
postpone_cutover = false        # true: after copy+catch-up, wait for `tablemover cutover`
postpone_flag_file = ""         # cutover waits while this file exists
hooks_dir = ""                  # directory of executable hooks
drain_timeout_s = 60            # warn loudly past this while draining
cutover_lock_timeout_s = 3      # lock_wait_timeout for the source RENAME
cutover_blocker_wait_s = 300    # hold the RENAME this long while a long transaction would block it
renamed_table_format = "_{table}_moved"
retry_budget_s = 300            # ride through transient errors for this long per outage, then exit 1
verify_before_cutover = true    # checksum source vs target before renaming anything
checksum_during_copy = true     # the gate trails the copy (each chunk soon after its commit)
checksum_threads = 2            # chunks that checksum compares at once, each on its own connections
rollback_window_s = 0           # > 0: keep a way back open this long after the cutover (`rollback`)

[source]                        # a writable primary, binlog ROW/FULL, GTID on
host = "127.0.0.1"
port = 3306
user = "mover"
password_file = "/etc/tablemover/source.pass"   # or password = "..."

tls_mode = "preferred"          # disabled | preferred | required | verify_ca | verify_identity
tls_ca = ""                     # CA file for verify_ca/verify_identity; tls_cert/tls_key: client certificate

[target]                        # same keys as [source]
host = "10.0.0.2"

# [replica]                     # optional: read rows and the binlog from this replica of [source]
# host = "10.0.0.3"             # same keys as [source]; replica_fallback = "wait" | "source" in [move]

[throttle]                      # holds copying only; SIGHUP re-reads this section
max_lag_s = 2.0                 # apply lag
max_threads_running = 50        # on source or target
flag_file = ""                  # copying waits while this file exists

[control]
socket = "/run/tablemover/{name}.sock"   # pause/unpause/cutover/abort/status talk to the daemon here
http = "127.0.0.1:0"            # /status and /metrics; port 0 = any free port (logged); "" = off
"""
