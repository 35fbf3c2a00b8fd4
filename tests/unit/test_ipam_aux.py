"""`shipslog network create --aux-address/--ipam-opt/--ipam-driver` (issue 13): the body the
CLI sends pairs each auxiliary address with the --subnet that holds it, as the docker CLI's
consolidateIpam does, and refuses one no subnet holds.

I/O: none (argument parsing only)."""

from __future__ import annotations

import pytest

from engine.cli.errors import UsageError
from engine.cli.networks import add_aux_addresses, ipam_configs


def test_aux_address_goes_with_its_subnet() -> None:
    configs = ipam_configs(["10.1.0.0/24", "fd00::/64"], [], [])
    add_aux_addresses(configs, ["r=10.1.0.9", "r6=fd00::9"])
    assert configs == [{"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"r": "10.1.0.9"}},
                       {"Subnet": "fd00::/64", "AuxiliaryAddresses": {"r6": "fd00::9"}}]


@pytest.mark.parametrize("value", ["r=10.2.0.1", "r=nonsense"])
def test_aux_address_outside_every_subnet_is_refused(value: str) -> None:
    configs = ipam_configs(["10.1.0.0/24"], [], [])
    with pytest.raises(UsageError, match=f"no matching subnet for aux-address {value[2:]}"):
        add_aux_addresses(configs, [value])


def test_aux_address_without_subnet_is_refused() -> None:
    with pytest.raises(UsageError, match="no matching subnet for aux-address 10.1.0.9"):
        add_aux_addresses([], ["r=10.1.0.9"])
