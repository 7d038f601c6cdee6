"""The bench, the drill, the load kit and the test helpers talk to the servers under a move too:
every connection they open is either one of tablemover's TLS factories or a root connection over the
local server's unix socket (which never leaves the machine, and which the servers count as secure
under ``require_secure_transport``). ``test_tls_settings.py`` holds ``src/`` to the same rule.

The calls are found in the syntax tree, so a new ``pymysql.connect``, ``asyncmy.connect`` or binlog
reader anywhere in these trees fails here until it is one of the two kinds (or listed with its reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("bench", "drill", "loadkit", "compose")
HELPERS = ("tests/support.py", "tests/conftest.py", "tests/faults/faultkit.py")
CONNECT = {"pymysql.connect", "asyncmy.connect", "pymysql.Connection", "pymysql.connections.Connection"}

# (file, the call, how it connects): every connection call these trees make.
EXPECTED = {
    # the binlog part's and the tls part's parse-only reference: the daemon's own factory
    ("bench/copyapply.py", "Reader", "tls factory"),
    # records the packets of a dump as root over the unix socket (bench/decode.py replays them)
    ("bench/decode.py", "Recorder", "unix socket"),
    ("bench/realistic.py", "pymysql.connect", "unix socket"),
    ("tests/support.py", "pymysql.connect", "unix socket"),
    ("tests/faults/faultkit.py", "pymysql.connect", "unix socket"),
    # The compose demo's application: its own writes to the source it is configured with
    # (DB_HOST), as any application would; tablemover's connections there are the daemon's.
    ("compose/traffic.py", "pymysql.connect", "the application's"),
}


def dotted(node: ast.expr) -> str:
    """``a.b.c`` for a name or attribute chain, "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def reader_classes(tree: ast.Module) -> set[str]:
    """``BinLogStreamReader`` and every class of the module that derives from it."""
    readers = {"BinLogStreamReader"}
    grew = True
    while grew:
        grew = False
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ClassDef)
                and node.name not in readers
                and any(dotted(b).rsplit(".", 1)[-1] in readers for b in node.bases)
            ):
                readers.add(node.name)
                grew = True
    return readers


def how(call: ast.Call, path: str) -> str:
    """How a connection call connects: "unix socket", "tls factory", or what it is listed as."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if "unix_socket" in keywords:
        return "unix socket"
    wrapper = keywords.get("pymysql_wrapper")
    if isinstance(wrapper, ast.Call) and dotted(wrapper.func) == "tls.pymysql_connector":
        return "tls factory"
    settings = keywords.get("connection_settings")
    if isinstance(settings, ast.Dict) and any(
        isinstance(k, ast.Constant) and k.value == "unix_socket" for k in settings.keys
    ):
        return "unix socket"
    return "the application's" if path == "compose/traffic.py" else "UNPROTECTED"


def connection_calls(rel: str, text: str) -> set[tuple[str, str, str]]:
    """(file, call, how) of every connection call in the source ``text`` of file ``rel``."""
    tree = ast.parse(text, rel)
    readers = reader_classes(tree)
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name in CONNECT or name.rsplit(".", 1)[-1] in readers:
            found.add((rel, name, how(node, rel)))
    return found


def test_every_helper_connection_is_the_tls_factory_or_a_unix_socket() -> None:
    files = [p for tree in TREES for p in sorted((ROOT / tree).rglob("*.py"))]
    files += [ROOT / h for h in HELPERS]
    found: set[tuple[str, str, str]] = set()
    for path in files:
        found |= connection_calls(str(path.relative_to(ROOT)), path.read_text())
    assert not [c for c in found if c[2] == "UNPROTECTED"], found
    assert found == EXPECTED, "a new connection call: use tls.pymysql_connector / db.connect or a unix socket"


def test_the_shared_root_connection_and_the_clients_use_unix_sockets() -> None:
    """What the bench and the drill reach the servers through besides the calls above: the shared
    root connection (``.admin()``, ``root_connection``), sysbench and the ``mariadb`` client."""
    local = ast.parse((ROOT / "src/tablemover/local/mariadb.py").read_text())
    root_conn = next(
        n for n in ast.walk(local) if isinstance(n, ast.FunctionDef) and n.name == "root_connection"
    )
    calls = [
        n for n in ast.walk(root_conn) if isinstance(n, ast.Call) and dotted(n.func) == "pymysql.connect"
    ]
    assert len(calls) == 1 and how(calls[0], "") == "unix socket"
    loadkit = (ROOT / "loadkit/__init__.py").read_text()
    assert "--mysql-socket=" in loadkit and "--mysql-host" not in loadkit and "--mysql-port" not in loadkit
    drill = "\n".join(p.read_text() for p in sorted((ROOT / "drill").rglob("*.py")))
    assert '"-S", socket_path' in drill and '"-h"' not in drill and "--host" not in drill
    assert "S={pair.source.socket},u=root" in drill and "h=" not in drill  # pt-table-sync's DSNs
    # The server-to-server links: the native-replication reference's replica replicating from the
    # source, and the replicas local.mariadb.replicate sets up (third local servers the bench, the
    # drill, the demo and the tests start); not connections of ours.
    masters = [p for p in sorted((ROOT / "bench").rglob("*.py")) if "MASTER_HOST" in p.read_text()]
    assert [p.name for p in masters] == ["native.py"]


def test_the_finder_sees_a_plain_tcp_connection() -> None:
    """The check above would catch a TCP connect or a binlog reader without the factory."""
    code = (
        "import pymysql\nfrom pymysqlreplication import BinLogStreamReader\n"
        "class R(BinLogStreamReader): pass\n"
        "class S(R): pass\n"
        "pymysql.connect(host='db', port=3306)\n"
        "S(connection_settings={'host': 'db'}, pymysql_wrapper=pymysql.connect)\n"
        "pymysql.connect(unix_socket='/run/db.sock')\n"
    )
    assert connection_calls("bench/probe.py", code) == {
        ("bench/probe.py", "pymysql.connect", "UNPROTECTED"),
        ("bench/probe.py", "S", "UNPROTECTED"),
        ("bench/probe.py", "pymysql.connect", "unix socket"),
    }
