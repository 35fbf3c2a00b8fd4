"""Hypothesis strategies for any msgspec Struct, built from `msgspec.inspect` type info.

Why not `st.from_type`: it builds every event, but with ints beyond 64 bits and lone
surrogates, which JSON cannot carry (JSON text is UTF-8, msgspec ints are 64-bit). The
property tests differ in what they want from text (noise, or ids that hit real objects) and
in how big a collection may grow, so those are parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import strategies as st


@dataclass(frozen=True)
class StructStrategies:
    """`text_for(field name)` gives the strategy of a str field; `defaults` also draws each
    optional field's default (exercising omit_defaults)."""

    text_for: Callable[[str], st.SearchStrategy[str]]
    ints: st.SearchStrategy[int]
    max_items: int
    defaults: bool = False

    def of(self, info: Any, name: str = "") -> st.SearchStrategy[Any]:
        mi = msgspec.inspect
        if isinstance(info, mi.StrType):
            return self.text_for(name)
        if isinstance(info, mi.BoolType):
            return st.booleans()
        if isinstance(info, mi.IntType):
            return self.ints
        if isinstance(info, mi.NoneType):
            return st.none()
        if isinstance(info, mi.UnionType):
            return st.one_of(*[self.of(t) for t in info.types])
        if isinstance(info, mi.VarTupleType):
            return st.lists(self.of(info.item_type), max_size=self.max_items).map(tuple)
        if isinstance(info, mi.DictType):
            return st.dictionaries(self.of(info.key_type), self.of(info.value_type),
                                   max_size=self.max_items)
        if isinstance(info, mi.StructType):
            return self.struct(info)
        raise NotImplementedError(f"no strategy for {info!r}: add one here")

    def struct(self, info: Any) -> st.SearchStrategy[Any]:
        fields = {}
        for field in info.fields:
            strategy = self.of(field.type, field.name)
            if self.defaults and not field.required and field.default is not msgspec.NODEFAULT:
                strategy = st.one_of(st.just(field.default), strategy)
            fields[field.name] = strategy
        return st.fixed_dictionaries(fields).map(lambda kw: info.cls(**kw))

    def for_type(self, cls: type) -> st.SearchStrategy[Any]:
        return self.struct(msgspec.inspect.type_info(cls))
