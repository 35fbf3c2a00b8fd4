"""`docker run` as Docker runs it, on both engines: the process's supplementary groups hold its
primary group (and `--group-add`'s, and the image's /etc/group memberships), `--env KEY` with
KEY unset in the client's environment sets nothing (and does not fail the start), and a
missing command fails in Docker's words, without a "wait" error for `--rm`."""

from __future__ import annotations

import os

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize(("args", "want"), [
    (("--user", "1234:5678"), "uid=1234 gid=5678 groups=5678"),
    (("--user", "1234", "--group-add", "777"), "uid=1234 gid=0(root) groups=0(root),777"),
    (("--user", "nobody"), "uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)"),
    ((), "uid=0(root) gid=0(root) groups=0(root)"),
])
def test_the_primary_group_is_a_supplementary_group(engine: Engine, args: tuple[str, ...],
                                                    want: str) -> None:
    assert docker(engine, "run", "--rm", *args, "busybox", "id").stdout.strip() == want


def test_memberships_from_the_images_group_file(engine: Engine) -> None:
    dockerfile = ("FROM busybox\n"
                  "RUN echo app:x:1000:1000::/:/bin/sh >> /etc/passwd && "
                  "echo app:x:1000: >> /etc/group && echo crew:x:2900:app >> /etc/group\n")
    docker(engine, "build", "-q", "-t", "groupsimg", "-", input=dockerfile, timeout=120)
    try:
        got = docker(engine, "run", "--rm", "--user", "app", "groupsimg", "id").stdout.strip()
        assert got == "uid=1000(app) gid=1000(app) groups=1000(app),2900(crew)"
    finally:
        docker(engine, "rmi", "-f", "groupsimg", check=False)


def test_an_env_key_without_a_value_sets_nothing(engine: Engine) -> None:
    assert "UNSET_IN_CLIENT" not in os.environ
    p = docker(engine, "run", "--rm", "-e", "X=1", "--env", "UNSET_IN_CLIENT", "busybox", "sh",
               "-c", "echo $X-${UNSET_IN_CLIENT-unset}")
    assert p.stdout.strip() == "1-unset"


def test_a_missing_command_fails_in_dockers_words(engine: Engine) -> None:
    p = docker(engine, "run", "--rm", "busybox", "nosuchcmd", check=False)
    assert p.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
    assert "OCI runtime create failed" in p.stderr
    assert "Error waiting for container" not in p.stderr and "level=" not in p.stderr
