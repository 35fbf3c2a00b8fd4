"""The bytes of generated /etc/hosts, /etc/hostname and /etc/resolv.conf (RELIABILITY I-03):
every test checks the exact bytes, and no input may add a line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.errors import InvalidArgument
from engine.core.hostfiles import (
    ResolvConf,
    container_resolv_conf,
    dns_upstreams,
    hostname_file,
    hosts_file,
    parse_extra_host,
    parse_resolv_conf,
    upstream_servers,
)
from engine.drivers.network.hostfiles import read_host_resolv_conf, rewrite, write_container_files

DEFAULT = (b"127.0.0.1\tlocalhost\n"
           b"::1\tlocalhost ip6-localhost ip6-loopback\n"
           b"fe00::0\tip6-localnet\n"
           b"ff00::0\tip6-mcastprefix\n"
           b"ff02::1\tip6-allnodes\n"
           b"ff02::2\tip6-allrouters\n")


def test_hosts_file_bytes() -> None:
    data = hosts_file("abc123", addresses=["10.211.4.7"], aliases=["web", "abc123"],
                      extra_hosts=[parse_extra_host("db:10.1.2.3"),
                                   parse_extra_host("v6=[fe80::1]")])
    assert data == DEFAULT + (b"10.1.2.3\tdb\n"
                              b"fe80::1\tv6\n"
                              b"10.211.4.7\tabc123 web\n")


def test_hosts_file_with_domain_and_no_address() -> None:
    assert hosts_file("h", domainname="example.org") == DEFAULT
    assert hosts_file("h", domainname="example.org", addresses=["10.0.0.2"]) == (
        DEFAULT + b"10.0.0.2\th.example.org h\n")


def test_hostname_file_bytes() -> None:
    assert hostname_file("abc123") == b"abc123\n"


BREAKS = ["a\nb", "a\rb", "a\x00b", "a\n", "\n127.0.0.1 evil", "a\r\n"]


@pytest.mark.parametrize("bad", BREAKS)
def test_line_breaks_and_nul_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="line break or NUL"):
        hostname_file(bad)
    with pytest.raises(InvalidArgument, match="line break or NUL"):
        hosts_file("ok", aliases=[bad])
    with pytest.raises(InvalidArgument, match="line break or NUL"):
        parse_extra_host(f"{bad}:10.0.0.1")
    with pytest.raises(InvalidArgument, match="line break or NUL"):
        parse_extra_host(f"name:10.0.0.1{bad}")
    with pytest.raises(InvalidArgument):
        hosts_file("ok", extra_hosts=[(bad, "10.0.0.1")])
    with pytest.raises(InvalidArgument):
        container_resolv_conf(ResolvConf(), dns_search=[bad])
    with pytest.raises(InvalidArgument):
        container_resolv_conf(ResolvConf(), dns_options=[bad])
    with pytest.raises(InvalidArgument):
        container_resolv_conf(ResolvConf(), dns=[bad])


def test_the_two_character_escape_is_just_an_invalid_name_not_a_line() -> None:
    with pytest.raises(InvalidArgument):
        hostname_file("a\\nb")


@pytest.mark.parametrize("bad", ["", "a b", "a\tb", "a#b", "-a", "a..b", "x" * 300, "é"])
def test_hostnames_are_plain_dns_names(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        hostname_file(bad)


def test_extra_host_needs_an_ip() -> None:
    with pytest.raises(InvalidArgument):
        parse_extra_host("db")
    with pytest.raises(InvalidArgument):
        parse_extra_host("db:not-an-ip")


HOST_RESOLV = """# generated
nameserver 127.0.0.53
nameserver 10.0.0.2 # corp
nameserver fe80::1%eth0
search corp.example lab.example
options edns0 trust-ad
garbage line
"""


def test_parse_host_resolv_conf() -> None:
    conf = parse_resolv_conf(HOST_RESOLV)
    assert conf == ResolvConf(nameservers=("127.0.0.53", "10.0.0.2", "fe80::1"),
                              search=("corp.example", "lab.example"),
                              options=("edns0", "trust-ad"))
    assert upstream_servers(conf)[0] == ("127.0.0.53", 53)


def test_container_resolv_conf_bytes() -> None:
    host = parse_resolv_conf(HOST_RESOLV)
    assert container_resolv_conf(host, embedded_dns="10.211.4.1") == (
        b"nameserver 10.211.4.1\n"
        b"search corp.example lab.example\n"
        b"options edns0 trust-ad ndots:0\n")
    # a user network keeps its embedded server with --dns (those become its upstreams), and
    # a user's ndots wins over Docker's ndots:0
    assert container_resolv_conf(host, embedded_dns="10.211.4.1", dns=["10.0.0.53"],
                                 dns_options=["ndots:3"]) == (
        b"nameserver 10.211.4.1\nsearch corp.example lab.example\noptions ndots:3\n")
    assert dns_upstreams(host, ["10.0.0.53"]) == [("10.0.0.53", 53)]
    assert dns_upstreams(host) == upstream_servers(host)
    # default bridge: the host's resolvers minus loopback ones
    assert container_resolv_conf(host) == (
        b"nameserver 10.0.0.2\n"
        b"nameserver fe80::1\n"
        b"search corp.example lab.example\n"
        b"options edns0 trust-ad\n")
    only_local = parse_resolv_conf("nameserver 127.0.0.53\n")
    assert container_resolv_conf(only_local) == b"nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert container_resolv_conf(host, dns=["1.1.1.1"], dns_search=["x.example"],
                                 dns_options=["ndots:2"]) == (
        b"nameserver 1.1.1.1\nsearch x.example\noptions ndots:2\n")


def test_driver_writes_the_bytes_and_rewrites_in_place(tmp_path: Path) -> None:
    files = write_container_files(tmp_path / "c", hosts=b"h\n", hostname=b"n\n",
                                  resolv_conf=b"r\n")
    assert files.hosts.read_bytes() == b"h\n"
    assert files.hostname.read_bytes() == b"n\n"
    assert files.resolv_conf.read_bytes() == b"r\n"
    assert oct(files.hosts.stat().st_mode & 0o777) == "0o644"
    assert [d for _, d in files.mounts()] == ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    inode = files.hosts.stat().st_ino
    rewrite(files.hosts, b"longer\ncontent\n")
    assert files.hosts.read_bytes() == b"longer\ncontent\n"
    rewrite(files.hosts, b"x\n")
    assert files.hosts.read_bytes() == b"x\n" and files.hosts.stat().st_ino == inode
    again = write_container_files(tmp_path / "c", hosts=b"h\n", hostname=b"n\n",
                                  resolv_conf=b"r\n")
    assert again == files and files.hosts.read_bytes() == b"h\n"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "hostname", "hosts", "resolv.conf"]


def test_read_host_resolv_conf(tmp_path: Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_text(HOST_RESOLV)
    assert read_host_resolv_conf(p).nameservers[1] == "10.0.0.2"
    assert read_host_resolv_conf(tmp_path / "missing") == ResolvConf()
