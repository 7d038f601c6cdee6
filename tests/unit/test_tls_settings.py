"""tls.py: the context each mode builds, the file errors, the status fields, and that every
connection in src/ goes through the one factory."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from tablemover import tls
from tablemover.config import ServerSection, parse_config
from tablemover.errors import ConfigError
from tablemover.local.mariadb import TlsFiles, make_tls_files
from tablemover.preflight.tls_state import plain_text_warning

SRC = Path(__file__).resolve().parents[2] / "src" / "tablemover"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"))


def section(pki: TlsFiles | None = None, **keys: object) -> ServerSection:
    base: dict[str, object] = {"host": "db.example.org", "port": 3306}
    if pki is not None:
        base.update(tls_ca=str(pki.ca), tls_cert=str(pki.client_cert), tls_key=str(pki.client_key))
    return ServerSection.model_validate({**base, **keys})


def test_default_is_preferred_and_env_overrides_every_tls_key() -> None:
    text = '[move]\nname = "m"\ndatabase = "d"\ntables = ["t"]\n'
    assert parse_config(text, env={}).source.tls_mode == "preferred"
    env = {
        "TABLEMOVER_SOURCE__TLS_MODE": "verify_identity",
        "TABLEMOVER_SOURCE__TLS_CA": "/etc/tm/ca.pem",
        "TABLEMOVER_TARGET__TLS_CERT": "/etc/tm/c.pem",
        "TABLEMOVER_TARGET__TLS_KEY": "/etc/tm/k.pem",
        "TABLEMOVER_TARGET__TLS_MIN_VERSION": "TLSv1.3",
    }
    config = parse_config(text, env=env)
    assert (config.source.tls_mode, config.source.tls_ca) == ("verify_identity", "/etc/tm/ca.pem")
    assert (config.target.tls_cert, config.target.tls_key, config.target.tls_min_version) == (
        "/etc/tm/c.pem",
        "/etc/tm/k.pem",
        "TLSv1.3",
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"tls_mode": "verify"}, "tls_mode"),
        ({"tls_min_version": "TLSv1.0"}, "tls_min_version"),
        ({"tls_key": "/k.pem"}, "tls_key is set without tls_cert"),
        ({"socket": "/run/m.sock", "tls_mode": "verify_ca"}, "needs host/port"),
    ],
)
def test_bad_tls_settings_are_config_errors(keys: dict[str, str], message: str) -> None:
    body = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    with pytest.raises(ConfigError, match=message):
        parse_config(f'[move]\nname = "m"\ndatabase = "d"\ntables = ["t"]\n[source]\n{body}', env={})


def test_contexts_per_mode(pki: TlsFiles) -> None:
    assert tls.build_context(section(pki, tls_mode="disabled")) is None
    assert tls.build_context(section(pki, socket="/run/m.sock", tls_mode="required")) is None
    for mode in ("preferred", "required"):
        ctx = tls.build_context(section(pki, tls_mode=mode))
        assert ctx is not None and ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
    ca = tls.build_context(section(pki, tls_mode="verify_ca"))
    assert ca is not None and ca.verify_mode is ssl.CERT_REQUIRED and not ca.check_hostname
    ident = tls.build_context(section(pki, tls_mode="verify_identity", tls_min_version="TLSv1.3"))
    assert ident is not None and ident.verify_mode is ssl.CERT_REQUIRED and ident.check_hostname
    assert ident.minimum_version is ssl.TLSVersion.TLSv1_3
    assert [c["subject"] for c in ident.get_ca_certs()] == [((("commonName", "tablemover test CA"),),)]


def test_unreadable_files_name_the_key_and_the_file(pki: TlsFiles, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    for key in ("tls_ca", "tls_cert", "tls_key"):
        with pytest.raises(tls.TlsSetupError, match=f"cannot read {key} '{missing}'") as err:
            tls.build_context(section(pki, tls_mode="verify_ca", **{key: str(missing)}))
        assert err.value.exit_code == 2
    with pytest.raises(tls.TlsSetupError, match=r"tls_ca .* is not a PEM CA certificate"):
        tls.build_context(section(pki, tls_mode="verify_ca", tls_ca=str(pki.client_key)))
    with pytest.raises(tls.TlsSetupError, match=r"tls_cert .* tls_key .* cannot be used") as mismatch:
        tls.build_context(section(pki, tls_key=str(pki.server_key)))
    assert pki.server_key.read_text() not in str(mismatch.value)  # the key is never in a message


def test_handshake_failures_name_the_setting() -> None:
    server = section(tls_mode="verify_identity", tls_ca="/etc/tm/ca.pem")
    exc = ssl.SSLCertVerificationError(1, "x")
    exc.verify_message = "IP address mismatch, certificate is not valid for '127.0.0.1'."
    assert "does not name 'db.example.org'" in str(tls.describe_tls_failure(server, "target", exc))
    exc.verify_message = "certificate has expired"
    assert "renew it" in str(tls.describe_tls_failure(server, "target", exc))
    exc.verify_message = "unable to get local issuer certificate"
    assert "tls_ca '/etc/tm/ca.pem'" in str(tls.describe_tls_failure(server, "target", exc))
    no_tls = tls.describe_tls_failure(server, "source", OSError(tls.CR_SSL_CONNECTION_ERROR, "x"))
    assert no_tls is not None and 'tls_mode = "verify_identity" requires it' in no_tls
    assert tls.describe_tls_failure(server, "source", OSError(2003, "refused")) is None


def test_required_modes_refuse_a_plain_outcome() -> None:
    plain = tls.TlsState("required", encrypted=False)
    with pytest.raises(tls.TlsSetupError, match="does not offer TLS"):
        tls.require_outcome(section(tls_mode="required"), plain, "source")
    tls.require_outcome(section(tls_mode="preferred"), tls.TlsState("preferred", False), "source")
    local = tls.TlsState("required", encrypted=False, transport="socket")
    tls.require_outcome(section(tls_mode="required", socket="/run/m.sock"), local, "source")


def test_plain_text_warning_only_for_other_hosts() -> None:
    plain = tls.TlsState("preferred", encrypted=False)
    warning = plain_text_warning(section(), "source", plain)
    assert warning is not None and "NOT encrypted" in warning and "verify_identity" in warning
    assert plain_text_warning(section(host="127.0.0.1"), "source", plain) is None
    assert plain_text_warning(section(host="localhost"), "source", plain) is None
    assert plain_text_warning(section(host="::1"), "source", plain) is None
    encrypted = tls.TlsState("preferred", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert plain_text_warning(section(), "source", encrypted) is None


def test_status_fields_and_line() -> None:
    good = tls.TlsState("verify_identity", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", verified=True)
    states = {
        ("source", "sql"): good,
        ("source", "binlog"): good,
        ("target", "sql"): tls.TlsState("preferred", False),
    }
    fields = tls.status_fields(states)
    assert fields["source"]["encrypted"] is True and fields["target"]["encrypted"] is False
    assert fields["source"]["connections"]["binlog"]["cipher"] == "TLS_AES_256_GCM_SHA384"
    assert tls.status_line(fields) == "tls: source TLSv1.3 verified, target NOT encrypted (sql)"


# Every way to open a server connection; only the factories may call them.
CONNECT_CALL = re.compile(
    r"(?<!class )(?:asyncmy\.connect\(|_Connection\(|pymysql\.connect\(|BinLogStreamReader\(|_Reader\()"
)
FACTORIES = {
    # the asyncmy factory, with TLS from tls.build_context
    "db.py": ["_Connection("],
    # the PyMySQL factory the binlog streams use, with TLS from tls.build_context
    "tls.py": ["pymysql.connect(", "pymysql.connect(", "pymysql.connect("],
    # the binlog reader, opened with pymysql_wrapper=tls.pymysql_connector (checked below)
    "stream.py": ["_Reader("],
    # the local test servers and the demo: root over their own unix sockets, never a moved server
    "local/mariadb.py": ["pymysql.connect("],
    "demo.py": ["pymysql.connect("],
}


def test_every_connection_goes_through_the_tls_factory() -> None:
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        calls = CONNECT_CALL.findall(path.read_text())
        if calls:
            found[str(path.relative_to(SRC))] = calls
    assert found == FACTORIES, "a new connection call: route it through db.connect or tls.pymysql_connector"
    stream = (SRC / "stream.py").read_text()
    assert "pymysql_wrapper=tls.pymysql_connector(" in stream
    db = (SRC / "db.py").read_text()
    assert '"ssl": ssl_context' in db and "ssl_context = tls.build_context(server)" in db
    # the demo's connection is to its own local server's unix socket
    assert "unix_socket=self.server.socket" in (SRC / "demo.py").read_text()


def test_the_drivers_have_what_the_login_methods_need() -> None:
    """caching_sha2_password full authentication without TLS encrypts the password with the
    server's RSA key (both drivers need `cryptography`); MariaDB's ed25519 needs PyNaCl."""
    from asyncmy import auth as asyncmy_auth
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from pymysql import _auth as pymysql_auth

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    salt = b"0123456789abcdefghij"
    for encrypt in (asyncmy_auth.sha2_rsa_encrypt, pymysql_auth.sha2_rsa_encrypt):
        sealed = encrypt(b"s3cret", salt, public)
        plain = key.decrypt(
            sealed,
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        )
        # The protocol XORs the NUL-terminated password with the salt before encrypting it.
        assert bytes(a ^ salt[i % len(salt)] for i, a in enumerate(plain)) == b"s3cret\0"
    # The fast path (a cached login) is a SHA-256 scramble: 32 bytes, same in both drivers.
    assert asyncmy_auth.scramble_caching_sha2(b"s3cret", salt) == pymysql_auth.scramble_caching_sha2(
        b"s3cret", salt
    )
    assert len(asyncmy_auth.scramble_caching_sha2(b"s3cret", salt)) == 32
    # ed25519: both drivers sign the scramble (64 bytes) with PyNaCl, identically.
    scramble = b"x" * 32
    assert asyncmy_auth.ed25519_password(b"s3cret", scramble) == pymysql_auth.ed25519_password(
        b"s3cret", scramble
    )
    assert len(pymysql_auth.ed25519_password(b"s3cret", scramble)) == 64


def test_metrics_show_each_connections_tls() -> None:
    from prometheus_client import generate_latest

    from tablemover.http import MetricsSnapshot, build_registry

    snap = MetricsSnapshot(
        "m", "COPYING", {}, {}, 0, 0.0, False, "", 1000, None, {}, "",
        tls_encrypted={("source", "binlog"): True, ("target", "sql"): False},
    )  # fmt: skip
    text = generate_latest(build_registry(lambda: snap)).decode()
    assert 'tablemover_tls_encrypted{connection="binlog",move="m",server="source"} 1.0' in text
    assert 'tablemover_tls_encrypted{connection="sql",move="m",server="target"} 0.0' in text
