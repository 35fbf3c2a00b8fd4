"""The classic builder's shell: runs a planned Dockerfile step by step through the engine.

I/O: the build context indexed as it is read (ctxindex.py), and only the sources of a COPY/ADD
that misses the cache unpacked, into a temp dir under the state root; RUN steps as short-lived
containers created, started, waited for and removed through the engine service (so they are
recorded, networked and cleaned up like any `run`); their overlay upper dir diffed into a gzip
layer in the content store and unpacked by the layer driver, as a pulled layer is; the journal
for the build's events (request, every step, every image, the outcome).

The build cache is the projection of `BuildStepCompleted` events (engine/core/build.py
`cache_key`, projections/build_record.py `fold_cache`): a key maps to the image its step made,
if that image is still there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import trio

from engine.core import build as cb
from engine.core.errors import ShipslogError, user_error
from engine.core.image_documents import parse_image_config
from engine.core.lookup import find_image
from engine.core.units import rfc3339
from engine.drivers.runtime.logs import follow_logs
from engine.shell.build import context as bctx
from engine.shell.build.ctxindex import ContextIndex, index_context
from engine.shell.build.layer import copy_layer, diff_upper, gzip_file, parse_chmod
from engine.shell.build.parse import parse_dockerfile
from engine.shell.build.sources import SourceFinder
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.redact import keyed_digest
from events.values import ContainerConfig
from projections.build_record import CacheIndex, fold_cache

log = logging.getLogger("shipslog.build")
_CACHE: dict[int, CacheIndex] = {}  # per event store (one per daemon)
_CACHE_LOCK = threading.Lock()
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = "bridge"
    quiet: bool = False
    source_date_epoch: int | None = None
    pull: bool = False  # pull every FROM image, even one that is here (`build --pull`)
    platform: str = ""  # normalized OS/ARCH[/VARIANT]; "" = the host's


@dataclass
class Prepared:
    workdir: Path
    context: ContextIndex
    context_digest: str
    dockerfile: str
    plan: cb.Plan
    stages: tuple[cb.Stage, ...]
    opts: BuildOptions


class StepFailed(ShipslogError):
    """A RUN step exited non-zero (Docker's message, a build error rather than a 4xx); `code`
    is the step's exit code, which the build's error message carries (the docker CLI exits
    with it)."""

    def __init__(self, message: str, hint: str = "", code: int = 0) -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass
class _Stage:
    image_id: str  # "" for scratch before any step
    doc: dict[str, Any]
    layers: tuple[str, ...]
    digests: tuple[str, ...]
    st: cb.StageState


class Builder:
    def __init__(self, engine: Any, content: Any, layers: Any, store: Any, root: Path) -> None:
        self.engine = engine
        self.journal = engine.journal
        self.content = content
        self.layers = layers
        self.store = store
        self.root = root
        self.tmp = root / "tmp"
        self._new_layers: dict[str, tuple[str, int]] = {}
        self._epoch: int | None = None
        self.sources = SourceFinder(engine, layers)
        # `--pull`: set by the API route (which owns the registry service); image id of REF
        self.pull_image: Callable[[str, Emit], Awaitable[str]] | None = None

    # -- the operation ----------------------------------------------------------------------

    async def prepare(self, context_tar: BinaryIO, opts: BuildOptions) -> Prepared:
        """Everything the user can get wrong, checked before any event or output: the context
        (confined), the Dockerfile (parsed), the target. Raises BuildError (a 400)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="build-", dir=self.tmp))
        index: ContextIndex | None = None
        try:
            # Indexed, not unpacked: a step that hits the cache needs only checksums, and a
            # cached rebuild of a 50 MB context spent ~2 s unpacking it (tools/bench/build.py).
            index = await trio.to_thread.run_sync(index_context, context_tar, workdir)
            dockerfile = self._read_dockerfile(index, opts.dockerfile)
            ignore = index.read_file(".dockerignore")
            rules = bctx.dockerignore_rules(ignore.decode(errors="replace") if ignore else "")
            await trio.to_thread.run_sync(index.apply_dockerignore, rules)
            plan = cb.plan_stages(parse_dockerfile(dockerfile))
            stages = cb.select_stages(plan, opts.target)
        except BaseException:
            if index is not None:
                index.close()
            await trio.to_thread.run_sync(shutil.rmtree, workdir, True)
            raise
        return Prepared(workdir, index, index.digest, dockerfile, plan, stages, opts)

    async def execute(self, p: Prepared, actor: Actor, emit: Emit) -> str:
        """Run a prepared build as one operation: request, steps, outcome in the log."""
        self._epoch = p.opts.source_date_epoch
        failed = True
        try:
            op_id = await self._begin(p.opts, actor, p.context_digest, p.dockerfile)
            try:
                image_id = await self._run(op_id, p.plan, p.stages, p.opts, p, actor, emit)
            except BaseException as exc:
                # A full disk (or any host error) is the user's to fix: one line, in the log
                # and in the answer, never "OSError: [Errno 28] …" (RELIABILITY F-07).
                mine = None if _cancelled(exc) else user_error(exc, "build")
                with trio.CancelScope(shield=True):
                    await self._append(op_id, actor, v.OperationFailed(
                        op_id=op_id, step="build",
                        error=mine.message if mine is not None else _message(exc)))
                if mine is not None and mine is not exc:
                    raise mine from None
                raise
            await self._append(op_id, actor, v.OperationCompleted(op_id=op_id))
            failed = False
            return image_id
        finally:
            p.context.close()
            if failed:  # nothing half-done may be left once the error is answered
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(shutil.rmtree, p.workdir, True)
            else:
                self.discard(p.workdir)

    def discard(self, workdir: Path) -> None:
        """Rename the context dir away now and delete it in the background: removing 50 MB of
        small files took seconds under load, and the client waited for it (tools/bench/build.py).
        A crash leaves only `tmp/del-build-*`, which the next build's discard sweeps."""
        doomed = workdir.with_name("del-" + workdir.name)
        try:
            os.rename(workdir, doomed)
        except OSError:
            doomed = workdir

        async def remove() -> None:
            stale = [p for p in self.tmp.glob("del-build-*") if p != doomed]
            for path in [doomed, *stale]:
                await trio.to_thread.run_sync(shutil.rmtree, path, True)

        self.engine.supervisor.spawn(remove)

    def _read_dockerfile(self, index: ContextIndex, name: str) -> str:
        raw = index.read_file(name or "Dockerfile")
        if raw is None:
            raise cb.BuildError(f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}",
                                hint="give its path inside the context with -f")
        return raw.decode(errors="replace")

    async def _append(self, op_id: str, actor: Actor, *events: v.Event,
                      extra: tuple[Pending, ...] = ()) -> None:
        await self.journal.append(
            [Pending(stream=stream_of("op", op_id), event=e) for e in events] + list(extra),
            actor=actor, op_id=op_id)

    async def _begin(self, opts: BuildOptions, actor: Actor, ctx_digest: str,
                     dockerfile: str) -> str:
        op_id = self.journal.new_id()
        key = self.engine.secrets.key()
        args = {k: keyed_digest(key, val) for k, val in sorted(opts.build_args.items())}
        df_digest = "sha256:" + hashlib.sha256(dockerfile.encode()).hexdigest()
        await self.journal.append([
            Pending(stream=stream_of("op", op_id), expected_version=0,
                    event=v.OperationRequested(op_id=op_id, kind="image.build",
                                               target="images")),
            Pending(stream=stream_of("op", op_id), event=v.BuildRequested(
                op_id=op_id, context_digest=ctx_digest, dockerfile_digest=df_digest,
                dockerfile=opts.dockerfile, build_args=args, target=opts.target,
                tags=tuple(opts.tags), no_cache=opts.no_cache, network_mode=opts.network_mode,
                labels=opts.labels)),
        ], actor=actor, op_id=op_id)
        return op_id

    # -- stages and steps -------------------------------------------------------------------

    async def _run(self, op_id: str, plan: cb.Plan, stages: tuple[cb.Stage, ...],
                   opts: BuildOptions, ctx: Prepared, actor: Actor, emit: Emit) -> str:
        total = len(plan.meta_args) + sum(1 + len(s.steps) for s in stages) + len(opts.labels)
        n = 0
        meta: dict[str, str] = {}
        for ins in plan.meta_args:
            n += 1
            await emit({"stream": f"Step {n}/{total} : {ins.original}\n"})
            for k, default in cb.pairs(ins, ins.value):
                if k in opts.build_args:
                    meta[k] = opts.build_args[k]
                elif default != "\0":
                    meta[k] = cb.expand(default, meta)
        results: dict[str, str] = {}
        image_id = ""
        for stage in stages:
            n += 1
            await emit({"stream": f"Step {n}/{total} : FROM "
                                  f"{cb.expand(stage.base, meta)}"
                                  f"{' AS ' + stage.name if stage.name else ''}\n"})
            s = await self._from(stage, meta, results, opts, emit)
            await self.journal.append([Pending(stream=stream_of("op", op_id), event=(
                v.BuildStepCompleted(op_id=op_id, step=n, total=total, stage=stage.index,
                                     instruction=f"FROM {cb.expand(stage.base, meta)}",
                                     cache_key="", cached=False, image_id=s.image_id,
                                     # an earlier stage is not a dependency of the build
                                     base_digest="" if cb.expand(stage.base, meta).lower()
                                     in results else s.image_id)))],
                                     actor=actor, op_id=op_id)
            await emit({"stream": f" ---> {_short(s.image_id) or '[scratch]'}\n"})
            steps = list(stage.steps)
            triggers = s.doc.get("config", {}).get("OnBuild") or []
            if triggers:
                steps = [*_triggers(triggers, stage.line), *steps]
                s.doc["config"]["OnBuild"] = None
                s.st.config["OnBuild"] = None
            for ins in steps:
                n += 1
                await emit({"stream": f"Step {n}/{total} : {ins.original}\n"})
                began = time.monotonic()
                s = await self._step(op_id, s, ins, opts, ctx, results, actor, emit,
                                     n, total, stage.index, began)
            if stage is stages[-1]:
                for label in sorted(opts.labels.items()):
                    n += 1
                    s = await self._label(op_id, s, label, opts, actor, emit, (n, total,
                                          stage.index, time.monotonic()))
            if not s.image_id:
                s = await self._commit(op_id, s, cb.nop("FROM scratch"), "", "", actor)
            results[str(stage.index)] = s.image_id
            if stage.name:
                results[stage.name] = s.image_id
            image_id = s.image_id
        img = self.journal.state.images[image_id]
        await self._append(op_id, actor, extra=(Pending(
            stream=stream_of("image", image_id), event=v.ImageBuilt(
                op_id=op_id, image_id=image_id, repo_tags=tuple(_tags(opts.tags)),
                layers=img.layers, config=img.config, size=img.size,
                layer_digests=img.layer_digests)),))
        await emit({"stream": f"Successfully built {_short(image_id)}\n"})
        for t in _tags(opts.tags):
            await emit({"stream": f"Successfully tagged {t}\n"})
        await emit({"aux": {"ID": image_id}})
        return image_id

    async def _from(self, stage: cb.Stage, meta: dict[str, str], results: dict[str, str],
                    opts: BuildOptions, emit: Emit) -> _Stage:
        ref = cb.expand(stage.base, meta)
        if ref.lower() == "scratch":
            doc = cb.scratch_doc(opts.platform.split("/")[1] if opts.platform else _arch())
            return _Stage("", doc, (), (), cb.StageState(dict(doc["config"])))
        image_id = results.get(ref.lower())
        if image_id is None and opts.pull and self.pull_image is not None:
            # moby PullParent: the registry's image even when one of that name is here
            image_id = await self.pull_image(ref, emit)
        if image_id is None:
            try:
                image_id = find_image(self.journal.state, ref).id
            except ShipslogError:
                raise cb.BuildError(f"pull access denied for {ref}: the image is not here "
                                    f"(line {stage.line})",
                                    hint=f"shipslog pull {ref}, then build again") from None
        img = self.journal.state.images[image_id]
        raw = await trio.to_thread.run_sync(
            lambda: self.content.read_bytes(image_id, max_size=8 << 20))
        doc = msgspec.json.decode(raw)
        wanted = cb.normalize_platform(cb.expand(stage.platform, meta), stage.line) \
            if cb.expand(stage.platform, meta) else opts.platform
        if wanted and ref.lower() not in results:
            cb.check_platform(ref, wanted, doc)
        config = dict(doc.get("config") or {})
        return _Stage(image_id, doc, img.layers, img.layer_digests or img.layers,
                      cb.StageState(config))

    async def _step(self, op_id: str, s: _Stage, ins: cb.Instruction, opts: BuildOptions,
                    ctx: Prepared, results: dict[str, str], actor: Actor, emit: Emit,
                    n: int, total: int, stage: int, began: float) -> _Stage:
        if ins.cmd in cb.LAYER_STEPS:
            return await self._layer_step(op_id, s, ins, opts, ctx, results, actor, emit,
                                          (n, total, stage, began))
        created_by = cb.apply_metadata(s.st, ins, opts.build_args, {})
        return await self._metadata_step(op_id, s, ins, created_by, opts, actor, emit,
                                         (n, total, stage, began))

    async def _layer_step(self, op_id: str, s: _Stage, ins: cb.Instruction, opts: BuildOptions,
                          ctx: Prepared, results: dict[str, str], actor: Actor, emit: Emit,
                          where: tuple[int, int, int, float]) -> _Stage:
        scope = s.st.scope()
        if ins.cmd == "run":
            argv = cb.run_argv(s.st, ins)
            created_by = " ".join(argv) if not ins.json else "/bin/sh -c #(nop) RUN " + \
                msgspec.json.encode(argv).decode()
            used = {k: keyed_digest(self.engine.secrets.key(), val)
                    for k, val in sorted(s.st.args.items())}
            key = cb.cache_key(s.image_id, created_by, config=s.st.config,
                               run_env_digest=msgspec.json.encode(used).decode())
            files = ""
        else:
            src = await self.sources.find(s.st, ins, scope, ctx.context, ctx.workdir, results)
            files, dest = src.files, src.dest
            created_by = cb.nop(f"{ins.cmd.upper()} {files} in {dest} ")
            chown_spec = cb.expand(ins.flag("chown") or "", scope)
            chmod_spec = ins.flag("chmod") or ""
            # --chown/--chmod change the layer, so they are in the key (a changed owner must
            # miss); created_by stays Docker's history text.
            flags = f"\0chown={chown_spec}\0chmod={chmod_spec}" if chown_spec or chmod_spec \
                else ""
            key = cb.cache_key(s.image_id, created_by, config=s.st.config, files=files + flags)
        hit = None if opts.no_cache else self._cached(key)
        exit_code = 0
        if hit:
            if ins.cmd != "run":
                await src.cleanup()
            await emit({"stream": " ---> Using cache\n"})
            s = await self._reuse(s, hit)
            layer = s.layers[-1] if s.layers else ""
        elif ins.cmd == "run":
            if not s.image_id:
                s = await self._commit(op_id, s, cb.nop("FROM scratch"), "", "", actor)
            layer, digest, exit_code = await self._run_step(s, ins, argv, opts, actor, emit)
            if exit_code != 0:
                await self._record_step(op_id, actor, ins, key, False, s, "", exit_code, where)
                raise StepFailed(f"The command '{' '.join(argv)}' returned a non-zero code: "
                                 f"{exit_code}", hint=f"step {where[0]}: {ins.original}",
                                 code=exit_code)
            s = await self._commit(op_id, s, created_by, layer, digest, actor)
        else:
            try:
                chown: tuple[int | None, int | None] = (None, None)
                if chown_spec:
                    chown = await self.sources.chown_ids(s.layers, chown_spec, ins.line)
                chmod = parse_chmod(chmod_spec or None, ins.line)
                src_root, sources = await self.sources.on_disk(src, ctx.context, ctx.workdir,
                                                               where[0])

                def write(out: BinaryIO) -> None:
                    copy_layer(sources, src_root, dest, out, epoch=opts.source_date_epoch,
                               chown=chown, chmod=chmod, add=ins.cmd == "add", line=ins.line,
                               raw=set(src.fetched))

                layer, digest = await self._store_layer(write)
            finally:
                await src.cleanup()
            s = await self._commit(op_id, s, created_by, layer, digest, actor)
        await self._record_step(op_id, actor, ins, key, hit is not None, s, layer, exit_code,
                                where)
        await emit({"stream": f" ---> {_short(s.image_id)}\n"})
        return s

    async def _run_step(self, s: _Stage, ins: cb.Instruction, argv: list[str],
                        opts: BuildOptions, actor: Actor, emit: Emit
                        ) -> tuple[str, str, int]:
        """RUN as a short-lived container on the step's parent: (diff_id, digest, exit code).
        The upper dir is diffed before the container is removed; it is removed in any case."""
        cfg = s.st.config
        config = ContainerConfig(
            image=s.image_id, image_id=s.image_id, cmd=tuple(argv), entrypoint=(),
            working_dir=cfg.get("WorkingDir") or "", user=cfg.get("User") or "",
            network_mode=opts.network_mode or "bridge", labels={"shipslog.build": "step"})
        env = cb.run_env(s.st, opts.build_args)
        # Shielded: a client leaving between the record of the container and our `try` would
        # otherwise leave it behind (found by test_a_client_that_goes_away_cancels_the_build).
        with trio.CancelScope(shield=True):
            cid, _ = await self.engine.create_container(name="", config=config, env=env,
                                                        actor=actor)
        try:
            await emit({"stream": f" ---> Running in {cid[:12]}\n"})
            await self.engine.start(cid, actor)
            exited = trio.Event()
            async with trio.open_nursery() as nursery:
                async def waiter() -> None:
                    await self.engine.wait(cid)
                    exited.set()

                nursery.start_soon(waiter)
                path = self.engine.supervisor.d.files.log_path(cid)
                async for _stream, _ts, data in follow_logs(path, stop=exited):
                    if not opts.quiet:
                        await emit({"stream": data.decode(errors="replace")})
            code = self.journal.state.containers[cid].exit_code
            await emit({"stream": f"Removing intermediate container {cid[:12]}\n"})
            if code != 0:
                return "", "", code
            upper = self.root / "containers" / cid / "upper"
            layer, digest = await self._store_layer(
                lambda out: diff_upper(upper, out, opts.source_date_epoch))
            return layer, digest, 0
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.engine.remove(cid, actor, force=True)
                except ShipslogError as exc:
                    log.warning("build step container %s not removed: %s", cid[:12], exc)

    async def _store_layer(self, write: Callable[[BinaryIO], None]) -> tuple[str, str]:
        def store() -> tuple[str, str, int, bool]:
            with tempfile.TemporaryFile(dir=self.tmp) as raw, \
                    tempfile.TemporaryFile(dir=self.tmp) as gz:
                write(raw)
                raw.flush()
                diff_id = gzip_file(raw, gz)
                digest, _ = self.content.ingest(gz)
            fresh = not self.layers.has(diff_id)
            size = 0
            if fresh:
                try:
                    size = int(self.layers.unpack(self.content.path(digest), media_type=GZIP,
                                                  expected_diff_id=diff_id).size)
                except BaseException:
                    # No event will own this blob (LayerUnpacked comes after): drop it unless
                    # an image already has it, so a full disk leaves no layer behind.
                    if not any(digest in (img.layer_digests or ()) for img in
                               list(self.journal.state.images.values())):
                        self.content.delete(digest)
                    raise
            return diff_id, digest, size, fresh

        diff_id, digest, size, fresh = await trio.to_thread.run_sync(store)
        self._new_layers[diff_id] = (digest, size)
        return diff_id, digest

    async def _commit(self, op_id: str, s: _Stage, created_by: str, layer: str, digest: str,
                      actor: Actor, *, comment: str = "",
                      author: str = "") -> _Stage:
        created = rfc3339(self._epoch * 1_000_000_000 if self._epoch is not None
                          else self.journal.clock())
        hist = cb.history_entry(created, created_by, empty_layer=not layer, comment=comment)
        doc = cb.next_config_doc(s.doc, s.st.config, created=created, history=hist,
                                 diff_id=layer)
        if author:
            doc["author"] = author
            hist["author"] = author
        raw = cb.encode_doc(doc)
        image_id, _ = await trio.to_thread.run_sync(self.content.ingest_bytes, raw)
        cfg, _ = parse_image_config(raw)
        layers = s.layers + ((layer,) if layer else ())
        digests = s.digests + ((digest,) if layer else ())
        pending: list[Pending] = []
        if layer and layer not in self.journal.state.layers:
            _, size = self._new_layers.get(layer, (digest, 0))
            pending.append(Pending(stream=stream_of("layer", layer), event=v.LayerUnpacked(
                digest=digest, diff_id=layer, size=size)))
        if image_id not in self.journal.state.images:
            size = sum(self.journal.state.layers.get(d, 0) for d in s.layers) + \
                sum(self._new_layers.get(d, ("", 0))[1] for d in layers[len(s.layers):])
            pending.append(Pending(stream=stream_of("image", image_id), event=v.ImageBuilt(
                op_id=op_id, image_id=image_id, repo_tags=(), layers=layers, config=cfg,
                size=size, layer_digests=digests, parent=s.image_id)))
        if pending:
            await self.journal.append(pending, actor=actor, op_id=op_id)
        return _Stage(image_id, doc, layers, digests, s.st)

    async def _label(self, op_id: str, s: _Stage, label: tuple[str, str], opts: BuildOptions,
                     actor: Actor, emit: Emit, where: tuple[int, int, int, float]) -> _Stage:
        """A `labels` build option, as moby's buildLabelOptions adds it: one LABEL step per
        label (sorted, never expanded) at the end of the last stage, cached like any step,
        so a rebuild with nothing changed (Compose labels every image it builds) is the same
        image, not a new one each time."""
        k, val = label
        ins = cb.Instruction(cmd="label", value=(k, val), original=f"LABEL {k}={val}",
                             line=0)
        await emit({"stream": f"Step {where[0]}/{where[1]} : {ins.original}\n"})
        s.st.config["Labels"] = {**(s.st.config.get("Labels") or {}), k: val}
        return await self._metadata_step(op_id, s, ins, cb.nop(ins.original), opts, actor,
                                         emit, where)

    async def _metadata_step(self, op_id: str, s: _Stage, ins: cb.Instruction,
                             created_by: str, opts: BuildOptions, actor: Actor, emit: Emit,
                             where: tuple[int, int, int, float]) -> _Stage:
        """A step that changes only the image config (no layer): taken from the cache when
        its key is there, else committed; recorded either way."""
        key = cb.cache_key(s.image_id, created_by, config=s.st.config)
        hit = None if opts.no_cache else self._cached(key)
        if hit:
            await emit({"stream": " ---> Using cache\n"})
            s = await self._reuse(s, hit)
        else:
            s = await self._commit(op_id, s, created_by, "", "", actor)
        await self._record_step(op_id, actor, ins, key, hit is not None, s, "", 0, where)
        await emit({"stream": f" ---> {_short(s.image_id)}\n"})
        return s

    def _cached(self, key: str) -> str | None:
        """The build cache, a projection of the log: the newest image made under `key`, if it
        is still here. Folded incrementally (only the step events since the last lookup)."""
        index = _CACHE.setdefault(id(self.store), CacheIndex())
        with _CACHE_LOCK:
            envs = list(self.store.read(index.seq, types=["BuildStepCompleted"]))
            fold_cache(index, envs)
        found = index.entries.get(key)
        return found if found in self.journal.state.images else None

    async def _reuse(self, s: _Stage, image_id: str) -> _Stage:
        img = self.journal.state.images[image_id]
        raw = await trio.to_thread.run_sync(
            lambda: self.content.read_bytes(image_id, max_size=8 << 20))
        doc = msgspec.json.decode(raw)
        s.st.config = dict(doc.get("config") or {})
        return _Stage(image_id, doc, img.layers, img.layer_digests or img.layers, s.st)

    async def _record_step(self, op_id: str, actor: Actor, ins: cb.Instruction, key: str,
                           cached: bool, s: _Stage, layer: str, exit_code: int,
                           where: tuple[int, int, int, float]) -> None:
        n, total, stage, began = where
        ev = v.BuildStepCompleted(
            op_id=op_id, step=n, total=total, stage=stage, instruction=ins.original[:4096],
            cache_key=key, cached=cached, image_id=s.image_id, layer=layer, exit_code=exit_code,
            duration_ms=int((time.monotonic() - began) * 1000))
        # On the op stream, so `history IMAGE` and the provenance show every step.
        await self._append(op_id, actor, ev)


def _triggers(triggers: list[str], line: int) -> list[cb.Instruction]:
    out = []
    for t in triggers:
        for ins in parse_dockerfile(t):
            out.append(cb.Instruction(cmd=ins.cmd, value=ins.value, original=ins.original,
                                      line=line, json=ins.json, flags=ins.flags))
    return out


def _tags(tags: list[str]) -> list[str]:
    out = []
    for t in tags:
        last = t.rsplit("/", 1)[-1]
        out.append(t if ":" in last or "@" in last else t + ":latest")
    return out


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def _cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _message(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):  # a nursery's: name what is inside, not the group
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        return _message(leaves[0] if leaves else exc.exceptions[0])
    if isinstance(exc, ShipslogError):
        return exc.message
    if isinstance(exc, trio.Cancelled):
        return "the build was cancelled (the client went away)"
    return f"{type(exc).__name__}: {exc}"
