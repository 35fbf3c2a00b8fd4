"""Docker's words for common mistakes, on both engines (scripts match on them), and `ps -s`'s
two sizes."""

from __future__ import annotations

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize(("args", "said"), [
    (("rmi", "nosuch"), "No such image: nosuch:latest"),
    (("history", "nosuch"), "No such image: nosuch:latest"),
    (("tag", "nosuch:v1", "x"), "No such image: nosuch:v1"),
    (("save", "nosuch"), "No such image: nosuch\n"),
    (("kill", "-s", "NOSUCH", "nosuchc"), "Invalid signal: NOSUCH"),
    (("create", "--stop-signal", "NOSUCH", "busybox"), "Invalid signal: NOSUCH"),
    (("create", "--name", "x y", "busybox"),
     "Invalid container name (x y), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
])
def test_a_mistake_is_told_in_dockers_words(engine: Engine, args: tuple[str, ...],
                                            said: str) -> None:
    p = docker(engine, *args, check=False)
    assert p.returncode != 0 and said in p.stderr


def test_a_taken_name_and_ps_sizes(engine: Engine) -> None:
    docker(engine, "create", "--name", "taken", "busybox", "true")
    try:
        p = docker(engine, "create", "--name", "taken", "busybox", check=False)
        assert p.returncode != 0
        assert "You have to remove (or rename) that container to be able to reuse that name." \
            in p.stderr
        [size] = docker(engine, "ps", "-a", "-s", "--filter", "name=taken", "--format",
                        "{{.Size}}").stdout.splitlines()
        assert size.startswith("0B (virtual ") and size.endswith("MB)"), size
    finally:
        docker(engine, "rm", "-f", "taken", check=False)


def test_a_failed_run_step_exits_with_its_code_and_shows_its_steps(engine: Engine) -> None:
    # The docker CLI exits with a failed RUN's code (moby sends it in errorDetail), and with
    # -q prints the output the daemon held back, once the build failed.
    dockerfile = "FROM busybox\nRUN echo before-failing && exit 7\n"
    p = docker(engine, "build", "-q", "-", input=dockerfile, check=False, timeout=120)
    assert p.returncode == 7, p.stderr
    assert "returned a non-zero code: 7" in p.stderr
    assert "Step 2/2 : RUN echo before-failing && exit 7" in p.stderr
