"""Properties of the macvlan/ipvlan plans (issue 20): VLAN parents parse both ways, and every
endpoint plan is one `configure_peer` can carry out for its driver and mode.

I/O: none.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.errors import InvalidArgument
from engine.core.net_plan import (
    IPVLAN_MODES,
    MACVLAN_MODES,
    plan_parent,
    plan_sub_endpoint,
    split_vlan_parent,
)

NID = "ab" * 32
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=9)


@given(names, st.integers(1, 4094))
def test_vlan_parent_round_trips_and_is_ours_to_make(base: str, vlan: int) -> None:
    parent = f"{base}.{vlan}"
    assert split_vlan_parent(parent) == (base, vlan)
    plan = plan_parent("macvlan", NID, parent, "bridge", owned=True)
    assert (plan.make, plan.base, plan.vlan_id) == ("vlan", base, vlan)
    assert plan_parent("macvlan", NID, parent, "bridge", owned=False).make == ""


@given(names, st.one_of(st.integers(4095, 99999), st.just(0)))
def test_vlan_id_out_of_range_is_refused(base: str, vlan: int) -> None:
    with pytest.raises(InvalidArgument, match="vlan id must be between 1-4094, received"):
        split_vlan_parent(f"{base}.{vlan}")


@given(st.sampled_from([("macvlan", m) for m in MACVLAN_MODES]
                       + [("ipvlan", m) for m in IPVLAN_MODES]),
       st.integers(2, 254), st.booleans())
def test_endpoint_plans_fit_their_driver(kind_mode: tuple[str, str], host: int,
                                         first: bool) -> None:
    kind, mode = kind_mode
    plan = plan_sub_endpoint("1" * 64, NID, driver=kind, mode=mode, parent="eth0",
                             subnet="192.0.2.0/24", gateway="192.0.2.1", ip=f"192.0.2.{host}",
                             netns_path="/run/x", ifname="eth0" if first else "eth1",
                             default_route=first)
    assert (plan.kind, plan.mode, plan.bridge, plan.ip_cidr) == (kind, mode, "eth0",
                                                                 f"192.0.2.{host}/24")
    # ipvlan endpoints share the parent's MAC; a macvlan one has Docker's MAC of its address
    assert (plan.mac == "") == (kind == "ipvlan")
    # in l3/l3s the parent routes: the default route leaves the device with no gateway
    assert (plan.gateway == "") == (kind == "ipvlan" and mode in ("l3", "l3s"))
    assert plan.host_ifname.startswith("slg") and len(plan.host_ifname) <= 15
