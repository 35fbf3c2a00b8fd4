"""The builder's pure core (engine/core/build.py) and the parser wrapper: stage planning,
targets, variable expansion, config changes, cache keys (issue 12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core import build as cb
from engine.shell.build.parse import parse_dockerfile


def _plan(text: str) -> cb.Plan:
    return cb.plan_stages(parse_dockerfile(text))


def test_stages_targets_and_meta_args() -> None:
    plan = _plan("ARG V=1\nFROM busybox AS one\nRUN true\nFROM one\nCOPY a b\n")
    assert [a.original for a in plan.meta_args] == ["ARG V=1"]
    assert [(s.base, s.name, len(s.steps)) for s in plan.stages] == [("busybox", "one", 1),
                                                                     ("one", "", 1)]
    assert plan.total_steps == 5
    assert cb.select_stages(plan, "ONE") == plan.stages[:1]
    with pytest.raises(cb.BuildError, match="failed to reach build target nope"):
        cb.select_stages(plan, "nope")


@pytest.mark.parametrize("text,message", [
    ("FROM busybox\nFOO bar\n", "line 2: unknown instruction: FOO"),
    ("RUN true\n", "no build stage"),
    ("# just a comment\n", "file with no instructions"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a\nENV\n", "line 2: ENV requires at least one argument"),
    ("FROM a\nCOPY x\n", "line 2: COPY requires at least two arguments"),
    ("FROM a\nWORKDIR\n", "line 2: WORKDIR requires exactly one argument"),
    ("FROM a\nHEALTHCHECK --interval=x CMD true\n", "line 2: invalid duration"),
])
def test_bad_dockerfiles_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(cb.BuildError, match=message):
        _plan(text)


def test_expansion() -> None:
    env = {"A": "1", "E": ""}
    assert cb.expand("$A ${A} ${B:-d} ${A:+x} ${E:-z} \\$A", env) == "1 1 d x z $A"


def _apply(cfg: dict, line: str, args: dict | None = None) -> str:
    st_ = cb.StageState(cfg)
    ins = parse_dockerfile("FROM x\n" + line)[1]
    return cb.apply_metadata(st_, ins, args or {}, {})


def test_metadata_instructions_change_the_config_as_docker_does() -> None:
    cfg: dict = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    _apply(cfg, 'ENV A=1 B="two words"')
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two words"]
    _apply(cfg, "ENTRYPOINT top")
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "top"] and cfg["Cmd"] is None
    _apply(cfg, "WORKDIR app")
    _apply(cfg, "WORKDIR ../srv/$A")
    assert cfg["WorkingDir"] == "/srv/1"
    assert _apply(cfg, 'LABEL a=1 b="x y"') == '/bin/sh -c #(nop)  LABEL a=1 b=x y'
    _apply(cfg, "EXPOSE 80 53/udp")
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    _apply(cfg, "HEALTHCHECK --interval=1m30s --retries=2 CMD curl -f x")
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * 10**9,
                                  "Retries": 2}
    _apply(cfg, 'SHELL ["/bin/bash", "-c"]')
    assert cfg["Shell"] == ["/bin/bash", "-c"]
    _apply(cfg, "ONBUILD RUN echo hi")
    assert cfg["OnBuild"] == ["RUN echo hi"]
    with pytest.raises(cb.BuildError, match="isn't allowed as an ONBUILD trigger"):
        _apply(cfg, "ONBUILD FROM x")


def test_args_take_build_arg_values_and_defaults() -> None:
    st_ = cb.StageState({"Env": ["E=env"]})
    for line in ("ARG A=default", "ARG B", "ARG E=argdefault"):
        cb.apply_metadata(st_, parse_dockerfile("FROM x\n" + line)[1], {"B": "given"}, {})
    assert st_.args == {"A": "default", "B": "given", "E": "argdefault"}
    assert st_.scope()["E"] == "env"  # ENV wins over ARG, as in Docker
    env = cb.run_env(st_, {"HTTP_PROXY": "http://p", "UNDECLARED": "x"})
    assert "HTTP_PROXY=http://p" in env and not any(e.startswith("UNDECLARED") for e in env)


def test_heredoc_run_is_the_script() -> None:
    ins = parse_dockerfile("FROM x\nRUN <<EOF\necho one\necho two\nEOF\n")[1]
    assert cb.run_argv(cb.StageState({}), ins) == ["/bin/sh", "-c", "echo one\necho two\n"]


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=10))
def test_cache_key_depends_on_each_input(parent: str, step: str, files: str) -> None:
    base = cb.cache_key(parent, step, config={}, files=files)
    assert base == cb.cache_key(parent, step, config={}, files=files)
    assert base != cb.cache_key(parent + "x", step, config={}, files=files)
    assert base != cb.cache_key(parent, step + "x", config={}, files=files)
    assert base != cb.cache_key(parent, step, config={}, files=files + "x")
    assert base != cb.cache_key(parent, step, config={"Env": ["A=1"]}, files=files)


def test_config_doc_gets_history_and_diff_ids() -> None:
    parent = cb.scratch_doc("amd64")
    hist = cb.history_entry("2020-01-01T00:00:00Z", "RUN x", empty_layer=False)
    doc = cb.next_config_doc(parent, {"Cmd": ["sh"], "Env": []}, created="2020-01-01T00:00:00Z",
                             history=hist, diff_id="sha256:" + "a" * 64)
    assert doc["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert doc["history"] == [hist] and doc["config"] == {"Cmd": ["sh"]}
    assert cb.encode_doc(doc) == cb.encode_doc(dict(reversed(list(doc.items()))))


def test_step_images_are_hidden_like_images_with_children() -> None:
    from types import SimpleNamespace as NS
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    imgs = [NS(id="base", source="loaded", repo_tags=("busybox:latest",), layers=(a,),
               created_at=1),
            NS(id="step1", source="built", repo_tags=(), layers=(a,), created_at=2),
            NS(id="step2", source="built", repo_tags=(), layers=(a, b), created_at=3),
            NS(id="final", source="built", repo_tags=("x:1",), layers=(a, b), created_at=4),
            NS(id="dangling", source="built", repo_tags=(), layers=(b,), created_at=5)]
    assert cb.intermediate_images(imgs) == {"step1", "step2"}


PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1234:5678::/home/app:/bin/sh\n"
GROUP = b"root:x:0:\nstaff:x:4321:app\napp:x:5678:\n"


@pytest.mark.parametrize("spec,ids", [
    ("app:staff", (1234, 4321)), ("app", (1234, 5678)), ("1000", (1000, 1000)),
    ("1000:staff", (1000, 4321)), ("root", (0, 0)), ("app:0", (1234, 0)),
])
def test_chown_names_are_looked_up_in_the_image(spec: str, ids: tuple[int, int]) -> None:
    assert cb.chown_ids(spec, PASSWD, GROUP, 3) == ids


@pytest.mark.parametrize("spec,passwd,message", [
    ("ghost", PASSWD, "line 3: can't find uid for user ghost: no such user: ghost"),
    ("app:ghosts", PASSWD, "can't find gid for group ghosts: no such group: ghosts"),
    ("staff", PASSWD, "can't find uid for user staff: no such user: staff"),
    ("app", None, "can't find uid for user app: open /etc/passwd: no such file or directory"),
    ("a:b:c", PASSWD, "invalid chown string format: a:b:c"),
])
def test_chown_errors_are_dockers(spec: str, passwd: bytes | None, message: str) -> None:
    with pytest.raises(cb.BuildError, match=message):
        cb.chown_ids(spec, passwd, GROUP, 3)
    assert cb.chown_needs_names("1:2") is False and cb.chown_needs_names("app:2") is True


def test_platform_check_uses_dockers_words() -> None:
    doc = {"os": "linux", "architecture": "x86_64"}
    assert cb.image_platform(doc) == "linux/amd64"
    assert cb.image_platform({"architecture": "arm64", "variant": "v8"}) == "linux/arm64"
    cb.check_platform("busybox", "linux/amd64", doc)
    with pytest.raises(cb.BuildError, match="image with reference busybox was found but does "
                       "not match the specified platform: wanted linux/arm64, actual: "
                       "linux/amd64"):
        cb.check_platform("busybox", "linux/arm64", doc)


def test_from_platform_is_kept_and_normalized() -> None:
    plan = _plan("FROM --platform=linux/x86_64 busybox AS a\nRUN true\n")
    assert plan.stages[0].platform == "linux/x86_64"
    assert cb.normalize_platform("linux/x86_64", 1) == "linux/amd64"
    assert cb.normalize_platform("aarch64", 1) == "linux/arm64"
    with pytest.raises(cb.BuildError, match="invalid platform"):
        cb.normalize_platform("a/b/c/d", 1)
