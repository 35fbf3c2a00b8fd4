"""Which containers `container prune` takes: stopped ones only, through Docker's filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.routes.prune import check_filters, prunable, until_of
from engine.core.errors import InvalidArgument
from events.values import ContainerConfig
from projections.state import ContainerView

NOW = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9


def view(status: str, age_ns: int, labels: dict[str, str]) -> ContainerView:
    return ContainerView(id="c" * 64, name="x", status=status, created_at=NOW - age_ns,
                         config=ContainerConfig(image="busybox", image_id="", labels=labels))


@given(st.sampled_from(["created", "exited", "dead", "running", "paused", "restarting",
                        "creating", "removing"]),
       st.integers(0, 10 * HOUR), st.dictionaries(st.sampled_from("ab"), st.sampled_from("xy")))
def test_only_stopped_containers_are_taken(status: str, age: int,
                                           labels: dict[str, str]) -> None:
    taken = prunable(view(status, age, labels), {}, NOW)
    assert taken == (status in ("created", "exited", "dead"))
    if taken:
        assert prunable(view(status, age, labels), {"until": ["2h"]}, NOW) == (age > 2 * HOUR)
        has_a = "a" in labels
        assert prunable(view(status, age, labels), {"label": ["a"]}, NOW) == has_a
        assert prunable(view(status, age, labels), {"label!": ["a"]}, NOW) == (not has_a)


def test_until_forms_and_bad_filters() -> None:
    assert until_of("90m", NOW) == NOW - 90 * 60 * 10**9
    assert until_of("1700000000", NOW) == 1_700_000_000 * 10**9
    assert until_of("2023-11-14T22:13:20Z", NOW) == 1_700_000_000 * 10**9
    with pytest.raises(InvalidArgument):
        check_filters({"name": ["x"]}, NOW)
    with pytest.raises(InvalidArgument):
        check_filters({"until": ["yesterday"]}, NOW)
