"""The throwaway servers the tests, the demo, the drill and the bench start (tablemover.local).

Installs side by side must not disturb each other: every mariadbd, mariadb-install-db's bootstrap
one included, deletes the ``#sql*`` files of its tmpdir when it starts, so with a shared /tmp one
install deleted another's temporary tables ("Unknown table 'mysql.tmp_user_sys'"; the demo with
--replica installs two replicas at once). Each install now has a tmpdir of its own.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tablemover.local.mariadb import LocalMariaDB


def test_installs_side_by_side_all_succeed(tmp_path: Path) -> None:
    failures: list[str] = []

    def install(root: Path) -> None:
        try:
            LocalMariaDB(root, server_id=9).install()
        except Exception as exc:  # collected: the assertion below names them
            failures.append(str(exc)[-400:])

    # Without private tmpdirs, two runs of four such rounds lost 1 and 3 of their 16 installs here.
    for round_no in range(3):
        threads = [
            threading.Thread(target=install, args=(tmp_path / f"r{round_no}" / f"s{i}",)) for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[0]
    assert all((tmp_path / f"r{r}" / f"s{i}" / "data" / "mysql").is_dir() for r in range(3) for i in range(4))
