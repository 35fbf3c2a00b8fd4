"""What a `decide_*` function returns: the events to append and the plan to carry out.

I/O: none. A `Decision` is data: `pending` goes to the store in one transaction; `plan` is a
list of `Step`s the supervisor runs through the kernel drivers afterwards, each keyed by the
operation id so that running it again after a crash is safe. `not_modified` mirrors Docker's
304 (start of a running container, stop of a stopped one): nothing to append, nothing to do.
"""

from __future__ import annotations

import msgspec

from events.envelope import Pending


class Step(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One unit of kernel work: `name` selects the supervisor's handler, `args` its input."""

    name: str
    args: dict[str, str] = {}


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    op_id: str
    pending: tuple[Pending, ...] = ()
    plan: tuple[Step, ...] = ()
    target: str = ""  # the object id the command acted on (container id, image id, …)
    not_modified: bool = False
    warnings: tuple[str, ...] = ()
