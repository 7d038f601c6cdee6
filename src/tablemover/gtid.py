"""GTID positions for MariaDB and GTID sets for MySQL, as immutable values.

The mover records how far it has applied the source's binlog and later asks
"has everything up to the source's position at cut-over been applied?". The two
server families answer that with different data models, so each gets its own
type here; ``parse_position``, ``advance`` and ``covers`` let the rest of the
code stay flavour-neutral. Nothing in this module does I/O.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from tablemover.flavor import Flavor

__all__ = [
    "GtidPosition",
    "Interval",
    "MariaDBGtid",
    "MariaDBPosition",
    "MySQLGtidSet",
    "advance",
    "covers",
    "parse_position",
]

# MariaDB stores domain_id and server_id as uint32 and seq_no as uint64.
_MAX_UINT32 = 2**32 - 1
_MAX_UINT64 = 2**64 - 1
# MySQL's parser rejects gno >= GNO_END (INT64_MAX); 0 is never a valid gno.
_MAX_GNO = 2**63 - 2

Interval = tuple[int, int]
"""An inclusive ``(start, end)`` range of MySQL transaction numbers."""

_MARIADB_GTID_RE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_INTERVAL_RE = re.compile(r"([0-9]+)\s*(?:-\s*([0-9]+))?")


# --------------------------------------------------------------------------- MariaDB


@dataclass(frozen=True, slots=True)
class MariaDBGtid:
    """One MariaDB GTID, ``domain-server_id-seq`` (e.g. ``0-1-5``)."""

    domain: int
    server_id: int
    seq: int

    def __post_init__(self) -> None:
        # One comparison chain first: this runs for every transaction the stream sees.
        if (
            0 <= self.domain <= _MAX_UINT32
            and 0 <= self.server_id <= _MAX_UINT32
            and 0 <= self.seq <= _MAX_UINT64
        ):
            return
        for name, value, limit in (
            ("domain", self.domain, _MAX_UINT32),
            ("server_id", self.server_id, _MAX_UINT32),
            ("seq", self.seq, _MAX_UINT64),
        ):
            if not 0 <= value <= limit:
                raise ValueError(f"MariaDB GTID {name} {value} out of range 0..{limit}")

    @classmethod
    def parse(cls, text: str) -> MariaDBGtid:
        """Parse ``"domain-server_id-seq"``; surrounding whitespace is ignored."""
        parts = text.split("-")
        if len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts):
            return cls(int(parts[0]), int(parts[1]), int(parts[2]))  # the stream's hot path
        match = _MARIADB_GTID_RE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"malformed MariaDB GTID {text!r}: expected domain-server_id-seq, e.g. '0-1-5'")
        domain, server_id, seq = (int(g) for g in match.groups())
        return cls(domain, server_id, seq)

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"


@dataclass(frozen=True, slots=True)
class MariaDBPosition:
    """A MariaDB GTID position: at most one GTID per replication domain.

    This is the shape of ``@@gtid_binlog_pos``, ``@@gtid_current_pos`` and
    ``@@last_gtid``. Whatever is passed in is normalised: one entry per domain,
    sorted by domain, never keeping a lower seq over a higher one.
    """

    gtids: tuple[MariaDBGtid, ...] = ()

    def __post_init__(self) -> None:
        latest: dict[int, MariaDBGtid] = {}
        for gtid in self.gtids:
            current = latest.get(gtid.domain)
            # A later entry with an equal seq wins so that a failover (same seq
            # counter, new server_id) is reflected, but a position never moves
            # backwards within a domain.
            if current is None or gtid.seq >= current.seq:
                latest[gtid.domain] = gtid
        object.__setattr__(self, "gtids", tuple(latest[d] for d in sorted(latest)))

    @classmethod
    def parse(cls, text: str) -> MariaDBPosition:
        """Parse a comma-separated GTID list such as ``"0-1-5,1-2-7"``; ``""`` is empty."""
        if not text.strip():
            return cls()
        parts = text.split(",")
        if any(not part.strip() for part in parts):
            raise ValueError(f"malformed MariaDB GTID position {text!r}: empty entry")
        return cls(tuple(MariaDBGtid.parse(part) for part in parts))

    def __str__(self) -> str:
        return ",".join(str(gtid) for gtid in self.gtids)

    @property
    def flavor(self) -> Flavor:
        """Always ``Flavor.MARIADB``."""
        return Flavor.MARIADB

    @property
    def is_empty(self) -> bool:
        """True when the position holds no GTID at all."""
        return not self.gtids

    @property
    def domains(self) -> tuple[int, ...]:
        """The domain ids present, ascending."""
        return tuple(gtid.domain for gtid in self.gtids)

    def get(self, domain: int) -> MariaDBGtid | None:
        """The GTID recorded for ``domain``, or None if the domain is absent."""
        for gtid in self.gtids:
            if gtid.domain == domain:
                return gtid
        return None

    def advance(self, gtid: MariaDBGtid) -> MariaDBPosition:
        """Return a position with ``gtid`` recorded for its domain.

        Within one binlog a domain's seq only grows, so the newest event simply
        replaces the entry; an older seq is ignored rather than moving back.
        """
        gtids = self.gtids
        if len(gtids) == 1 and gtids[0].domain == gtid.domain:
            # One domain, the common case: skip re-normalising (once per streamed transaction).
            if gtid.seq < gtids[0].seq:
                return self
            same = object.__new__(MariaDBPosition)
            object.__setattr__(same, "gtids", (gtid,))
            return same
        return MariaDBPosition((*gtids, gtid))

    def covers(self, other: MariaDBPosition) -> bool:
        """True when every domain of ``other`` is present here with a seq at least as high.

        server_id is deliberately ignored: after a failover the new primary
        keeps counting seq within the domain under its own server_id.
        """
        mine = {gtid.domain: gtid.seq for gtid in self.gtids}
        return all(mine.get(g.domain, -1) >= g.seq for g in other.gtids)


# --------------------------------------------------------------------------- MySQL


def _merge(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge intervals that overlap or touch (1-3 and 4-5 become 1-5)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def _check_interval(start: int, end: int, context: str) -> None:
    if start < 1:
        raise ValueError(f"invalid GTID set {context!r}: transaction number 0 is not allowed")
    if end < start:
        raise ValueError(f"invalid GTID set {context!r}: interval {start}-{end} ends before it starts")
    if end > _MAX_GNO:
        raise ValueError(f"invalid GTID set {context!r}: transaction number {end} exceeds {_MAX_GNO}")


def _parse_uuid(text: str, context: str) -> str:
    uuid = text.strip()
    if _UUID_RE.fullmatch(uuid) is None:
        raise ValueError(f"invalid GTID set {context!r}: {uuid!r} is not a server UUID")
    return uuid.lower()


def _parse_tag(text: str, context: str) -> str:
    if _TAG_RE.fullmatch(text) is None:
        raise ValueError(
            f"invalid GTID set {context!r}: {text!r} is neither an interval nor a tag "
            "(tags are [a-z_][a-z0-9_]{0,31})"
        )
    return text.lower()


def _source(uuid: str, tag: str) -> str:
    return f"{uuid}:{tag}" if tag else uuid


def _parse_single_gtid(text: str) -> tuple[str, int]:
    """Parse ``uuid:gno`` or ``uuid:tag:gno`` into (source id, gno)."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"malformed MySQL GTID {text!r}: expected uuid:gno or uuid:tag:gno")
    uuid = _parse_uuid(parts[0], text)
    tag = _parse_tag(parts[1].strip(), text) if len(parts) == 3 else ""
    gno_text = parts[-1].strip()
    if not gno_text.isascii() or not gno_text.isdigit():
        raise ValueError(f"malformed MySQL GTID {text!r}: {gno_text!r} is not a transaction number")
    gno = int(gno_text)
    _check_interval(gno, gno, text)
    return _source(uuid, tag), gno


@dataclass(frozen=True, slots=True)
class MySQLGtidSet:
    """A MySQL GTID set, as in ``@@global.gtid_executed``.

    ``entries`` maps a source id to its intervals. A source id is the lowercase
    server UUID, or ``uuid:tag`` for MySQL 8.3+ tagged GTIDs. Whatever is passed
    in is normalised: sources sorted (untagged before tags of the same UUID),
    intervals merged, empty sources dropped. Because the stored form is
    canonical, dataclass equality and hashing compare sets, not spellings.
    """

    entries: tuple[tuple[str, tuple[Interval, ...]], ...] = ()

    def __post_init__(self) -> None:
        collected: dict[str, list[Interval]] = {}
        for source, intervals in self.entries:
            # Re-validate here too so a set built directly, not via parse(),
            # cannot smuggle in a malformed source or interval.
            uuid, sep, tag = source.partition(":")
            key = _source(_parse_uuid(uuid, source), _parse_tag(tag, source) if sep else "")
            for start, end in intervals:
                _check_interval(start, end, source)
            collected.setdefault(key, []).extend(intervals)
        # UUIDs have a fixed length, so plain string order puts "uuid" before
        # "uuid:tag" and sorts tags of one UUID together, as MySQL prints them.
        normalised = tuple(
            (source, merged) for source in sorted(collected) if (merged := _merge(collected[source]))
        )
        object.__setattr__(self, "entries", normalised)

    @classmethod
    def parse(cls, text: str) -> MySQLGtidSet:
        """Parse MySQL GTID set text, e.g. ``"uuid:1-5:7-9,uuid2:1"`` or ``""``.

        Within one entry a tag segment applies to the intervals after it, so
        ``uuid:1-3:tag1:5-7`` is untagged 1-3 plus tag1 5-7 (MySQL 8.4 syntax).
        """
        if not text.strip():
            return cls()
        collected: list[tuple[str, tuple[Interval, ...]]] = []
        for entry in text.split(","):
            segments = entry.split(":")
            if not entry.strip():
                raise ValueError(f"invalid GTID set {text!r}: empty entry")
            uuid = _parse_uuid(segments[0], text)
            if len(segments) == 1:
                raise ValueError(f"invalid GTID set {text!r}: {uuid!r} has no intervals")
            tag = ""
            pending_tag = False
            for raw in segments[1:]:
                segment = raw.strip()
                match = _INTERVAL_RE.fullmatch(segment)
                if match is None:
                    if pending_tag:
                        raise ValueError(f"invalid GTID set {text!r}: tag {tag!r} has no intervals")
                    tag = _parse_tag(segment, text)
                    pending_tag = True
                    continue
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) is not None else start
                _check_interval(start, end, text)
                collected.append((_source(uuid, tag), ((start, end),)))
                pending_tag = False
            if pending_tag:
                raise ValueError(f"invalid GTID set {text!r}: tag {tag!r} has no intervals")
        return cls(tuple(collected))

    def __str__(self) -> str:
        out: list[str] = []
        for source, intervals in self.entries:
            uuid, _, tag = source.partition(":")
            text = ":".join(f"{a}-{b}" if a != b else f"{a}" for a, b in intervals)
            # Tagged sources of a UUID follow its untagged one, so they extend
            # the same comma-separated entry instead of starting a new one.
            if out and tag and out[-1].startswith(uuid):
                out[-1] += f":{tag}:{text}"
            else:
                out.append(f"{uuid}:{tag}:{text}" if tag else f"{uuid}:{text}")
        return ",".join(out)

    @property
    def flavor(self) -> Flavor:
        """Always ``Flavor.MYSQL``."""
        return Flavor.MYSQL

    @property
    def is_empty(self) -> bool:
        """True when the set holds no transaction."""
        return not self.entries

    @property
    def tagged(self) -> bool:
        """True when a source id carries a tag (MySQL 8.3+ ``uuid:tag``)."""
        return any(":" in source for source, _ in self.entries)

    def encode(self) -> bytes:
        """The set as the binlog dump (COM_BINLOG_DUMP_GTID) and Previous_gtids carry it.

        MySQL's ``Gtid_set::encode`` (sql/rpl_gtid_set.cc): a u64 header, then per source its
        16 UUID bytes, its tag (tagged format only), a u64 count of intervals and each interval
        as u64 start and u64 end *exclusive*, all little-endian. Without any tag this is the
        format every MySQL version reads (header = number of sources). With a tag, the tagged
        format of MySQL 8.3+ (``encode_nsids_format``): header = ``1 << 56 | n << 8 | 1``, and
        every source, untagged ones too, carries its tag as a length (a serialization-library
        varlen integer: ``length << 1`` in one byte, tags being at most 32 characters) and the
        lowercase tag bytes. Servers before 8.3 have no tags, so they are never sent this.
        """
        tagged = self.tagged
        n = len(self.entries)
        out = [struct.pack("<Q", (1 << 56 | n << 8 | 1) if tagged else n)]
        for source, intervals in self.entries:
            uuid, _, tag = source.partition(":")
            out.append(bytes.fromhex(uuid.replace("-", "")))
            if tagged:
                out.append(bytes([len(tag) << 1]) + tag.encode("ascii"))
            out.append(struct.pack("<Q", len(intervals)))
            out.extend(struct.pack("<QQ", start, end + 1) for start, end in intervals)
        return b"".join(out)

    @property
    def sources(self) -> tuple[str, ...]:
        """Source ids present (``uuid`` or ``uuid:tag``), in canonical order."""
        return tuple(source for source, _ in self.entries)

    def intervals(self, source: str) -> tuple[Interval, ...]:
        """Merged intervals for a source id (``uuid`` or ``uuid:tag``); empty if absent."""
        for known, intervals in self.entries:
            if known == source.lower():
                return intervals
        return ()

    def union(self, other: MySQLGtidSet) -> MySQLGtidSet:
        """All transactions in either set."""
        return MySQLGtidSet(self.entries + other.entries)

    def add(self, gtid_text: str) -> MySQLGtidSet:
        """Return a set that also contains one GTID, ``uuid:gno`` or ``uuid:tag:gno``."""
        source, gno = _parse_single_gtid(gtid_text)
        return MySQLGtidSet((*self.entries, (source, ((gno, gno),))))

    def contains(self, other: MySQLGtidSet) -> bool:
        """True when every transaction of ``other`` is also in this set."""
        mine = dict(self.entries)
        for source, intervals in other.entries:
            have = mine.get(source, ())
            starts = [start for start, _ in have]
            for start, end in intervals:
                # Own intervals are disjoint and non-touching, so a covered
                # interval must sit inside the single one starting at or before it.
                i = bisect.bisect_right(starts, start) - 1
                if i < 0 or have[i][1] < end:
                    return False
        return True

    covers = contains

    def __contains__(self, gtid_text: object) -> bool:
        """``"uuid:5" in gtid_set``: membership of a single GTID string."""
        if not isinstance(gtid_text, str):
            return False
        source, gno = _parse_single_gtid(gtid_text)
        return self.contains(MySQLGtidSet(((source, ((gno, gno),)),)))


# --------------------------------------------------------------------------- flavour-neutral

GtidPosition = MariaDBPosition | MySQLGtidSet
"""Either flavour's notion of "how far the binlog has been applied"."""


def parse_position(flavor: Flavor, text: str) -> GtidPosition:
    """Parse a server's GTID position text according to its flavour."""
    if flavor is Flavor.MARIADB:
        return MariaDBPosition.parse(text)
    return MySQLGtidSet.parse(text)


def advance(position: GtidPosition, gtid_text: str) -> GtidPosition:
    """Record one transaction's GTID (``d-s-n``, ``uuid:n`` or ``uuid:tag:n``) in ``position``.

    A GTID of the other flavour fails to parse and raises ValueError.
    """
    if isinstance(position, MariaDBPosition):
        return position.advance(MariaDBGtid.parse(gtid_text))
    if isinstance(position, MySQLGtidSet):
        return position.add(gtid_text)
    raise TypeError(f"expected a GTID position, got {type(position).__name__}")


def covers(applied: GtidPosition, target: GtidPosition) -> bool:
    """The drain decision: True when every transaction in ``target`` is in ``applied``."""
    if isinstance(applied, MariaDBPosition) and isinstance(target, MariaDBPosition):
        return applied.covers(target)
    if isinstance(applied, MySQLGtidSet) and isinstance(target, MySQLGtidSet):
        return applied.contains(target)
    raise TypeError(f"cannot compare {type(applied).__name__} with {type(target).__name__}")
