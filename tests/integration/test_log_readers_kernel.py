"""Issue 18's loose ends on the real kernel: `exec -u NAME` resolves the name in the
container's own /etc/passwd (as `run -u` does) instead of refusing every non-numeric user;
an unknown name is Docker's one-line error.

I/O: a daemon (subprocess) and our CLI against its socket; one busybox container, removed.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from engine.cli.main import run
from engine.testing import oracle

pytestmark = [pytest.mark.kernel]


def shipslog(daemon: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
               stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_exec_user_by_name_from_the_containers_passwd(daemon: Any) -> None:
    code, _, err = shipslog(daemon, "run", "-d", "--name", "who", "busybox", "sleep", "600")
    assert code == 0, err
    try:
        code, out, err = shipslog(daemon, "exec", "-u", "nobody", "who", "id", "-u")
        assert (code, out) == (0, "65534\n"), err
        code, out, err = shipslog(daemon, "exec", "-u", "nobody:root", "who", "id", "-g")
        assert (code, out) == (0, "0\n"), err
        code, out, err = shipslog(daemon, "exec", "-u", "alice", "who", "id", "-u")
        assert code != 0 and "unable to find user alice" in err, (code, out, err)
        assert "Traceback" not in err and "numeric" not in err
    finally:
        assert shipslog(daemon, "rm", "-f", "who")[0] == 0
    oracle.check(daemon)
