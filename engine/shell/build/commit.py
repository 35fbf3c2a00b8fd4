"""`docker commit`: a container's writes (its overlay upper dir) become a layer on top of its
image, with Docker's `--change` instruction subset applied to the config.

I/O: reads the container's upper dir; the content and layer stores (through the builder's
helpers); the journal (an `image.commit` operation: request, the image, the outcome).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import trio

from engine.core import build as cb
from engine.core.errors import InvalidArgument, NotFound
from engine.core.image_documents import parse_image_config
from engine.core.lookup import find_container
from engine.shell.build.builder import Builder, _Stage, _tags
from engine.shell.build.layer import diff_upper
from engine.shell.build.parse import parse_dockerfile
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.values import ImageConfig

# moby daemon/commit.go validCommitCommands
COMMIT_CHANGES = frozenset({"cmd", "entrypoint", "env", "expose", "label", "onbuild", "user",
                            "volume", "workdir", "stopsignal"})


def _expand(changes: list[str]) -> list[str]:
    """The docker CLI repeats `changes=`; shipslog's client sends one JSON array. Both count."""
    out: list[str] = []
    for c in changes:
        if c.startswith("["):
            try:
                items = json.loads(c)
            except ValueError:
                items = None
            if isinstance(items, list) and all(isinstance(i, str) for i in items):
                out += items
                continue
        out.append(c)
    return out


def parse_changes(changes: list[str]) -> list[cb.Instruction]:
    out: list[cb.Instruction] = []
    for change in _expand(changes):
        if not change.strip():
            continue
        ins = parse_dockerfile("FROM scratch\n" + change)[1:]
        for i in ins:
            if i.cmd not in COMMIT_CHANGES:
                raise InvalidArgument(f"{i.cmd.upper()} is not a valid change command",
                                      hint="--change takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                                      "ONBUILD, USER, VOLUME, WORKDIR or STOPSIGNAL")
            out.append(i)
    return out


def config_from_changes(changes: list[str], arch: str) -> ImageConfig | None:
    """`import -c`: the image config Docker's change subset describes (None: no changes)."""
    instructions = parse_changes(changes)
    if not instructions:
        return None
    st = cb.StageState({})
    for ins in instructions:
        cb.apply_metadata(st, ins, {}, {})
    doc = cb.scratch_doc(arch)
    doc["config"] = {k: val for k, val in st.config.items() if val not in (None, [], {}, "")}
    cfg, _ = parse_image_config(cb.encode_doc(doc))
    return cfg


def _secret_env(secrets: Any, cid: str) -> list[str]:
    try:
        return list(secrets.get(cid))
    except NotFound:
        return []


def _container_config(base: dict[str, Any], c: Any, env: list[str]) -> dict[str, Any]:
    cfg = dict(base)
    cc = c.config
    cfg["Cmd"] = list(cc.cmd) or cfg.get("Cmd")
    cfg["Entrypoint"] = list(cc.entrypoint) or cfg.get("Entrypoint")
    cfg["WorkingDir"] = cc.working_dir or cfg.get("WorkingDir", "")
    cfg["User"] = cc.user or cfg.get("User", "")
    cfg["Labels"] = {**(cfg.get("Labels") or {}), **cc.labels} or None
    if env:
        cfg["Env"] = env
    return cfg


async def commit(builder: Builder, ref: str, actor: Actor, *, repo_tags: list[str],
                 changes: list[str], comment: str, author: str, pause: bool) -> str:
    engine = builder.engine
    c = find_container(engine.state, ref)
    instructions = parse_changes(changes)  # before anything is recorded: a 400
    op_id = builder.journal.new_id()
    await builder.journal.append([Pending(
        stream=stream_of("op", op_id), expected_version=0, event=v.OperationRequested(
            op_id=op_id, kind="image.commit", target="images", args={"container": c.id}))],
        actor=actor, op_id=op_id)
    paused = False
    try:
        if pause and c.status == "running":
            await engine.pause(c.id, actor)
            paused = True
        img = engine.state.images[c.config.image_id]
        raw = await trio.to_thread.run_sync(
            lambda: builder.content.read_bytes(img.id, max_size=8 << 20))
        doc = msgspec.json.decode(raw)
        # The container's env values live in the secret store (never in the log); Docker's
        # commit writes them into the image config, so it does here too.
        env = await trio.to_thread.run_sync(_secret_env, engine.secrets, c.id)
        st = cb.StageState(_container_config(dict(doc.get("config") or {}), c, env))
        for ins in instructions:
            cb.apply_metadata(st, ins, {}, {})
        upper = builder.root / "containers" / c.id / "upper"
        layer, digest = await builder._store_layer(lambda out: diff_upper(upper, out, None))
        s = _Stage(img.id, doc, img.layers, img.layer_digests or img.layers, st)
        history_comment = comment
        doc_author = author
        s = await builder._commit(op_id, s, "", layer, digest, actor,
                                  comment=history_comment, author=doc_author)
        await builder.journal.append([Pending(
            stream=stream_of("image", s.image_id), event=v.ImageBuilt(
                op_id=op_id, image_id=s.image_id, repo_tags=tuple(_tags(repo_tags)),
                layers=s.layers, config=engine.state.images[s.image_id].config,
                size=engine.state.images[s.image_id].size, layer_digests=s.digests)),
            Pending(stream=stream_of("op", op_id), event=v.OperationCompleted(op_id=op_id))],
            actor=actor, op_id=op_id)
        return s.image_id
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            await builder.journal.append([Pending(stream=stream_of("op", op_id),
                                                  event=v.OperationFailed(
                                                      op_id=op_id, step="commit",
                                                      error=str(exc)[:500]))],
                                         actor=actor, op_id=op_id)
        raise
    finally:
        if paused:
            with trio.CancelScope(shield=True):
                await engine.pause(c.id, actor, pause=False)
