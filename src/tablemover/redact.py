"""Statement digests: SQL text with every literal replaced, safe to publish.

Other sessions' statements reach us in two places: the cutover's blocker check (PROCESSLIST /
INNODB_TRX) and a binlog Query event that stops the move. Both end up where people without database
access read them (``/status``, ``status``, the log, the journal, ``TABLEMOVER_ERROR``). A statement
can carry a secret in any literal (``SET api_token='sk_live_...'``, a password hash, a card number),
so only its shape is published: strings, numbers, hex and bit literals and comments become ``?``,
the way MySQL's ``performance_schema`` digests do. Identifiers stay, since the operator needs the
table and the kind of statement to find the session.

Written by hand: the server's own digest (``DIGEST_TEXT``) exists only in performance_schema event
tables on MySQL, not for PROCESSLIST or a binlog event, and no Python package does this without
parsing the statement fully (sqlglot regenerates SQL and drops statements it cannot parse).
"""

from __future__ import annotations

import re

__all__ = ["digest"]

# One alternation, tried left to right at each position; identifiers are matched so that a digit
# inside a name (`t1`, `2fa_codes`) is never taken for a number.
_TOKEN = re.compile(
    r"""
    (?P<ident>`(?:[^`]|``)*(?:`|\Z))                                   # `quoted identifier`
    | (?P<comment>/\*.*?(?:\*/|\Z) | (?:--(?=[\s]|\Z)|\#)[^\n]*)         # comments, all kinds
    | (?P<string>(?:_[A-Za-z0-9]+\s*|[nNxXbB](?='))?                    # introducer, x'', b'', N''
        (?:'(?:[^'\\]|\\.|'')*(?:'|\Z) | "(?:[^"\\]|\\.|"")*(?:"|\Z)))
    | (?P<number>0[xX][0-9A-Fa-f]+ | 0[bB][01]+
        | (?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w$])
    | (?P<word>[\w$]+)                                                  # names, keywords
    """,
    re.VERBOSE | re.DOTALL,
)
_SPACES = re.compile(r"\s+")
_LISTS = re.compile(r"\?(?:\s*,\s*\?)+")


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind in ("string", "number", "comment"):
        return "?"
    return match.group(0)


def digest(statement: str, limit: int = 200) -> str:
    """``statement`` with every literal and comment replaced by ``?``, whitespace collapsed.

    Lists of literals fold into one ``?, ...`` so a long ``IN (...)`` does not push the table name
    out of the first ``limit`` characters. Never raises; an unterminated literal (a statement cut
    short by the server's column width) is replaced up to the end.
    """
    text = _TOKEN.sub(_replace, statement)
    text = _SPACES.sub(" ", text).strip()
    text = _LISTS.sub("?, ...", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
