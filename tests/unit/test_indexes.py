"""Which indexes ``defer_secondary_indexes`` leaves out of the target's CREATE TABLE, and the ALTER
that adds them back (the pure half of ``tablemover.indexes``)."""

from __future__ import annotations

import pytest

from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import parse_config
from tablemover.controls import Controls
from tablemover.indexes import (
    ALTER_LOCKS,
    DeferredIndex,
    add_indexes_statement,
    alter_tag,
    key_lines,
    mismatched,
    missing,
    plan_table,
    remaining_locks,
    split_create,
)
from tablemover.machine import State
from tablemover.schema import Index, TableSchema
from tablemover.status import Board, status_document

# As MariaDB 10.11 prints it: one definition a line, the keys after the columns.
SOURCE = """CREATE TABLE `orders` (
  `a` int(11) NOT NULL,
  `b` varchar(40) NOT NULL,
  `c` int(11) DEFAULT NULL,
  `d` varchar(200) DEFAULT NULL COMMENT 'KEY `fake` (`d`), in a comment',
  `body` text DEFAULT NULL,
  PRIMARY KEY (`a`,`b`),
  UNIQUE KEY `uk_c` (`c`),
  KEY `ix_cd` (`c`,`d`(20) DESC) COMMENT 'for reports',
  KEY `odd``name` (`d`(10)) IGNORED,
  FULLTEXT KEY `ft_body` (`body`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""

REDUCED = """CREATE TABLE `orders` (
  `a` int(11) NOT NULL,
  `b` varchar(40) NOT NULL,
  `c` int(11) DEFAULT NULL,
  `d` varchar(200) DEFAULT NULL COMMENT 'KEY `fake` (`d`), in a comment',
  `body` text DEFAULT NULL,
  PRIMARY KEY (`a`,`b`),
  UNIQUE KEY `uk_c` (`c`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""

DEFERRED = (
    DeferredIndex("ix_cd", "KEY `ix_cd` (`c`,`d`(20) DESC) COMMENT 'for reports'"),
    DeferredIndex("odd`name", "KEY `odd``name` (`d`(10)) IGNORED"),
    DeferredIndex("ft_body", "FULLTEXT KEY `ft_body` (`body`)"),
)


def schema(create: str, indexes: tuple[Index, ...]) -> TableSchema:
    return TableSchema("app", "orders", (), indexes, create, (), ())


SOURCE_INDEXES = (
    Index("PRIMARY", ("a", "b"), True, False),
    Index("uk_c", ("c",), True, False),
    Index("ix_cd", ("c", "d"), False, True),
    Index("odd`name", ("d",), False, True),
    Index("ft_body", ("body",), False, False),
)


def test_plain_fulltext_and_prefix_indexes_are_deferred_primary_and_unique_stay() -> None:
    split = split_create(SOURCE)
    assert split.create_statement == REDUCED
    assert split.deferred == DEFERRED


def test_a_key_last_before_the_closing_parenthesis_leaves_no_dangling_comma() -> None:
    head = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) NOT NULL,\n"
    split = split_create(head + "  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB")
    assert split.create_statement == head + "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
    assert split.deferred == (DeferredIndex("k", "KEY `k` (`k`)"),)


@pytest.mark.parametrize(
    "line",
    [
        "  SPATIAL KEY `g` (`g`)",
        "  KEY `f` ((lower(`name`)))",  # a MySQL functional key part
        "  KEY `inv` (`k`) /*!80000 INVISIBLE */",
        "  FULLTEXT KEY `ng` (`body`) /*!50100 WITH PARSER `ngram` */ ",
    ],
)
def test_spatial_functional_invisible_and_parser_keys_are_deferred_verbatim(line: str) -> None:
    create = f"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`),\n{line}\n) ENGINE=InnoDB"
    split = split_create(create)
    assert [d.definition for d in split.deferred] == [line.strip()]
    assert split.create_statement.endswith("  PRIMARY KEY (`id`)\n) ENGINE=InnoDB")


def test_nothing_to_defer_keeps_the_statement() -> None:
    create = (
        "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `u` int NOT NULL,\n  PRIMARY KEY (`id`),\n"
        "  UNIQUE KEY `u` (`u`)\n) ENGINE=InnoDB"
    )
    assert split_create(create).create_statement == create
    assert split_create(create).deferred == ()


def test_a_table_with_a_foreign_key_defers_nothing() -> None:
    create = (
        "CREATE TABLE `c` (\n  `id` int NOT NULL,\n  `p` int NOT NULL,\n  PRIMARY KEY (`id`),\n"
        "  KEY `p` (`p`),\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `parent` (`id`)\n) ENGINE=InnoDB"
    )
    assert split_create(create).deferred == ()
    assert split_create(create).create_statement == create


def test_an_unrecognised_text_defers_nothing() -> None:
    assert split_create("CREATE VIEW `v` AS select 1").deferred == ()


def test_plan_checks_the_names_against_information_schema() -> None:
    assert plan_table(schema(SOURCE, SOURCE_INDEXES)).deferred == DEFERRED
    # information_schema knows a secondary index the text parse did not find: defer nothing.
    extra = (*SOURCE_INDEXES, Index("hidden", ("c",), False, False))
    plan = plan_table(schema(SOURCE, extra))
    assert plan.deferred == ()
    assert plan.create_statement == SOURCE


def test_one_alter_adds_them_all_with_the_lock_clause() -> None:
    statement = add_indexes_statement("app_dst", "orders", DEFERRED, ALTER_LOCKS[0], alter_tag("m1"))
    assert statement == (
        "ALTER /* tablemover move=m1 deferred indexes */ TABLE `app_dst`.`orders` "
        "ADD KEY `ix_cd` (`c`,`d`(20) DESC) COMMENT 'for reports', "
        "ADD KEY `odd``name` (`d`(10)) IGNORED, "
        "ADD FULLTEXT KEY `ft_body` (`body`), "
        "ALGORITHM=INPLACE, LOCK=NONE"
    )
    # The last resort is the server's default locking: no clause at all.
    assert add_indexes_statement("d", "t", DEFERRED[:1], ALTER_LOCKS[-1], "x").endswith(
        "COMMENT 'for reports'"
    )
    with pytest.raises(ValueError):
        add_indexes_statement("d", "t", (), ALTER_LOCKS[0], "x")


def test_the_tag_cannot_close_its_comment() -> None:
    statement = add_indexes_statement("d", "t", DEFERRED[:1], "", "a */ DROP TABLE x /*")
    assert "/* a * / DROP TABLE x /* */" in statement


def test_resume_adds_only_what_the_target_lacks() -> None:
    assert missing(DEFERRED, key_lines(REDUCED)) == list(DEFERRED)
    assert missing(DEFERRED, key_lines(SOURCE)) == []
    # Killed after an ALTER that added the first one (by hand, say): the others are still missing.
    partial = REDUCED.replace(
        "  UNIQUE KEY `uk_c` (`c`)\n",
        "  UNIQUE KEY `uk_c` (`c`),\n  KEY `IX_CD` (`c`,`d`(20) DESC) COMMENT 'for reports'\n",
    )
    assert missing(DEFERRED, key_lines(partial)) == list(DEFERRED[1:])


def test_key_lines_ignore_text_inside_column_definitions() -> None:
    lines = key_lines(SOURCE)
    assert set(lines) == {"PRIMARY", "uk_c", "ix_cd", "odd`name", "ft_body"}
    assert lines["PRIMARY"] == "PRIMARY KEY (`a`,`b`)"


def test_an_index_of_a_deferred_name_defined_otherwise_is_reported() -> None:
    assert mismatched(DEFERRED, key_lines(SOURCE)) == []
    assert mismatched(DEFERRED, key_lines(REDUCED)) == []  # missing is not mismatched
    other = SOURCE.replace("`d`(20) DESC", "`d`(20)")
    problems = mismatched(DEFERRED, key_lines(other))
    assert len(problems) == 1 and "ix_cd" in problems[0] and "DESC" in problems[0]


def test_a_versioned_comment_compares_as_its_content() -> None:
    source = (DeferredIndex("inv", "KEY `inv` (`k`) /*!80000 INVISIBLE */"),)
    assert mismatched(source, {"inv": "KEY `inv` (`k`) INVISIBLE"}) == []
    assert mismatched(source, {"inv": "KEY `inv` (`k`)"}) != []


def test_partition_clauses_after_the_table_options_are_kept() -> None:
    tail = (
        ") ENGINE=InnoDB DEFAULT CHARSET=latin1\n PARTITION BY RANGE (`id`)\n"
        "(PARTITION `p0` VALUES LESS THAN (10) ENGINE = InnoDB,\n"
        " PARTITION `p1` VALUES LESS THAN MAXVALUE ENGINE = InnoDB)"
    )
    head = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) NOT NULL,\n  PRIMARY KEY (`id`)"
    split = split_create(head + ",\n  KEY `k` (`k`)\n" + tail)
    assert split.create_statement == head + "\n" + tail
    assert [d.name for d in split.deferred] == ["k"]


def test_the_status_document_shows_the_alter_seconds_of_a_table_that_had_one() -> None:
    config = parse_config(
        '[move]\nname = "orders"\ndatabase = "app"\ntables = ["a", "b"]\ndefer_secondary_indexes = true\n',
        env={},
    )
    assert config.move.defer_secondary_indexes
    board = Board()
    progress = {"a": TableProgress(rows_copied=5, done=True), "b": TableProgress(rows_copied=7, done=True)}
    board.committed.store(Checkpoint("orders", State.COPYING, "0-1-5", progress=progress))
    board.index_build_s["a"] = 1.25
    tables = status_document(config, board, Controls(config.throttle))["tables"]
    assert tables["a"]["indexes_added_s"] == 1.25
    assert "indexes_added_s" not in tables["b"]
    default = parse_config('[move]\nname = "o"\ndatabase = "app"\ntables = ["a"]\n', env={})
    assert default.move.defer_secondary_indexes is False


def test_the_lock_fallbacks() -> None:
    online, any_online, shared, default = ALTER_LOCKS
    # Refused up front (FULLTEXT cannot be built online): the next, less concurrent form.
    assert remaining_locks(online, 1846) == (any_online, shared, default)
    assert remaining_locks(shared, 1845) == (default,)
    assert remaining_locks(default, 1846) is None  # nothing left: the error stands
    # The online log overflowed: not online again, the writes wait instead.
    assert remaining_locks(online, 1799) == (shared, default)
    assert remaining_locks(any_online, 1799) == (shared, default)
    assert remaining_locks(shared, 1799) is None
    # Anything else is not about locking.
    assert remaining_locks(online, 1061) is None
    assert remaining_locks(online, None) is None
