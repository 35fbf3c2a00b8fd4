"""The codec: canonical payloads, per-type decoding, upcasting, canonical hashed bytes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from events import codec
from events.codec import CodecError, canonical_bytes, decode_event, encode_event
from events.hashing import GENESIS_HASH, chain_hash, verify_chain
from events.vocabulary import EVENT_TYPES, NetworkRemoved, VolumeCreated


def test_payload_is_canonical_whatever_the_dict_order() -> None:
    a = VolumeCreated(name="v", labels={"b": "1", "a": "2"})
    b = VolumeCreated(name="v", labels={"a": "2", "b": "1"})
    assert encode_event(a) == encode_event(b)
    assert encode_event(a) == b'{"type":"VolumeCreated","name":"v","labels":{"a":"2","b":"1"}}'


def test_decode_round_trip_and_wrong_type_refused() -> None:
    event = VolumeCreated(name="v", anonymous=True)
    payload = encode_event(event)
    assert decode_event("VolumeCreated", 1, payload) == event
    with pytest.raises(CodecError):
        decode_event("NetworkRemoved", 1, payload)
    with pytest.raises(CodecError) as info:
        decode_event("NoSuchEvent", 1, payload)
    assert "newer" in info.value.hint
    with pytest.raises(CodecError):
        decode_event("VolumeCreated", 1, b'{"type":"VolumeCreated"')


def test_every_event_type_is_known() -> None:
    assert len(EVENT_TYPES) >= 50
    for name, cls in EVENT_TYPES.items():
        assert cls.__name__ == name
        assert cls.schema_version >= 1


def test_upcasters_run_step_by_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend NetworkRemoved is at schema 3: v1 called the field "id", v2 "net".
    monkeypatch.setattr(NetworkRemoved, "schema_version", 3)
    steps: list[int] = []

    def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
        steps.append(1)
        return {"net": doc["id"]}

    def v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
        steps.append(2)
        return {"network_id": doc["net"]}

    monkeypatch.setitem(codec.UPCASTERS, ("NetworkRemoved", 1), v1_to_v2)
    monkeypatch.setitem(codec.UPCASTERS, ("NetworkRemoved", 2), v2_to_v3)
    old = b'{"type":"NetworkRemoved","id":"n1"}'
    assert decode_event("NetworkRemoved", 1, old) == NetworkRemoved(network_id="n1")
    assert steps == [1, 2]
    assert decode_event("NetworkRemoved", 2, b'{"net":"n2"}') == NetworkRemoved(network_id="n2")
    assert decode_event("NetworkRemoved", 3, encode_event(NetworkRemoved(network_id="x"))) == (
        NetworkRemoved(network_id="x")
    )


def test_missing_upcaster_and_future_schema_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NetworkRemoved, "schema_version", 2)
    with pytest.raises(CodecError, match="no upcaster"):
        decode_event("NetworkRemoved", 1, b'{"network_id":"n"}')
    with pytest.raises(CodecError, match="newer|knows"):
        decode_event("NetworkRemoved", 9, b'{"network_id":"n"}')


def _canon(**over: Any) -> bytes:
    fields: dict[str, Any] = dict(
        seq=1,
        stream="s",
        stream_version=1,
        schema_version=1,
        recorded_at=5,
        actor=b"{}",
        op_id="o",
        command_id=None,
        type_name="T",
        payload=b"{}",
    )
    fields.update(over)
    return canonical_bytes(**fields)


def test_canonical_bytes_cover_every_field_unambiguously() -> None:
    base = _canon()
    variants = [
        _canon(seq=2),
        _canon(stream="t"),
        _canon(stream_version=2),
        _canon(schema_version=2),
        _canon(recorded_at=6),
        _canon(actor=b'{"a":1}'),
        _canon(op_id="p"),
        _canon(command_id=""),
        _canon(command_id="c"),
        _canon(type_name="U"),
        _canon(payload=b"[]"),
        # Shifting bytes between neighbouring fields must change the bytes.
        _canon(stream="s1", stream_version=1),
        _canon(op_id="o~"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert _canon(stream="a", op_id="b") != _canon(stream="ab", op_id="")


def test_canonical_layout_is_pinned() -> None:
    # Changing this layout breaks every recorded hash chain: it is part of the log format.
    assert _canon(command_id=None) == b"1\x1fs\x1f1\x1f1\x1f5\x1f{}\x1fo\x1f\x1e\x1fT\x1f{}"
    assert _canon(command_id="c", stream="é") == (
        b"1\x1f\xc3\xa9\x1f1\x1f1\x1f5\x1f{}\x1fo\x1fc\x1fT\x1f{}"
    )


def test_verify_chain_names_first_bad() -> None:
    rows = []
    prev = GENESIS_HASH
    for seq in range(1, 6):
        canon = _canon(seq=seq)
        prev = chain_hash(prev, canon)
        rows.append((seq, prev, canon))
    assert verify_chain(rows).ok and verify_chain(rows).checked == 5
    altered = list(rows)
    altered[2] = (3, rows[2][1], _canon(seq=3, payload=b'{"x":1}'))
    bad = verify_chain(altered)
    assert (bad.ok, bad.first_bad_seq, bad.checked) == (False, 3, 2)
    missing = rows[:1] + rows[2:]
    assert verify_chain(missing).first_bad_seq == 2
    assert "missing" in verify_chain(missing).reason
    swapped = [rows[0], rows[2], rows[1], *rows[3:]]
    assert verify_chain(swapped).first_bad_seq == 2
    assert verify_chain([]).ok


def test_chain_hash_definition() -> None:
    import hashlib

    assert chain_hash(GENESIS_HASH, b"x") == hashlib.sha256(b"0" * 64 + b"x").hexdigest()
    assert msgspec.json.decode(encode_event(VolumeCreated(name="v")))["type"] == "VolumeCreated"


def test_events_package_stays_pure() -> None:
    # STYLE.md: events/ imports no os, subprocess, socket, pyroute2; sqlite3 only in the
    # store and its SQL backend; trio only in events/writer.py (the bridge to the daemon).
    import ast
    from pathlib import Path

    allowed = {"sqlite3": {"store.py", "sqlite_backend.py"}, "trio": {"writer.py"},
               "outcome": {"writer.py"}}
    banned = {"os", "subprocess", "socket", "pyroute2", "sqlite3", "trio", "outcome"}
    root = Path(__file__).resolve().parents[2] / "events"
    offenders = []
    for module in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in banned and module.name not in allowed.get(top, set()):
                    offenders.append(f"{module.name} imports {name}")
    assert offenders == []
