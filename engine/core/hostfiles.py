"""The bytes of a container's /etc/hosts, /etc/hostname and /etc/resolv.conf.

I/O: none. Inputs are the recorded hostname, addresses, `--add-host` entries and DNS options,
plus the host's resolv.conf *text* (read by the driver); outputs are bytes for
`engine/drivers/network/hostfiles.py` to write. Every value that reaches a line is checked first:
a real CR, LF or NUL byte (RELIABILITY I-03; CVE-2022-4318) — or any other control character
or whitespace inside a name — is rejected with InvalidArgument, so no caller can add a line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engine.core.errors import InvalidArgument

# Docker's default pair when the host has only loopback resolvers (they are unreachable
# from a container's own network namespace).
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,253}")
_OPTION = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DEFAULT_HOSTS = (
    b"127.0.0.1\tlocalhost\n"
    b"::1\tlocalhost ip6-localhost ip6-loopback\n"
    b"fe00::0\tip6-localnet\n"
    b"ff00::0\tip6-mcastprefix\n"
    b"ff02::1\tip6-allnodes\n"
    b"ff02::2\tip6-allrouters\n"
)


def _no_line_breaks(value: str, what: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise InvalidArgument(f"invalid {what} {value!r}: it contains a line break or NUL",
                              hint=f"remove CR, LF and NUL characters from the {what}")
    return value


def check_hostname(name: str, what: str = "hostname") -> str:
    """A host name or alias: letters, digits, '-', '_', '.', at most 254 characters."""
    _no_line_breaks(name, what)
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(f"invalid {what} {name!r}",
                              hint="use letters, digits, '-', '_' and '.' only")
    return name


def _ip(value: str, what: str) -> str:
    _no_line_breaks(value, what)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidArgument(f"invalid IP address {value!r} in {what}",
                              hint="give an address like 10.0.0.5") from exc


def parse_extra_host(spec: str) -> tuple[str, str]:
    """`--add-host name:ip` (or name=ip; the IP may be IPv6) -> (name, ip)."""
    _no_line_breaks(spec, "extra host")
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if not ip:
        raise InvalidArgument(f"invalid extra host {spec!r}", hint="use --add-host name:ip")
    return check_hostname(name, "extra host name"), _ip(ip.strip("[]"), "extra host")


def hostname_file(hostname: str) -> bytes:
    return check_hostname(hostname).encode() + b"\n"


def hosts_file(hostname: str, *, addresses: Sequence[str] = (), domainname: str = "",
               aliases: Sequence[str] = (),
               extra_hosts: Sequence[tuple[str, str]] = ()) -> bytes:
    """Docker's layout: the fixed localhost lines, the extra hosts, then this container's
    addresses with its hostname (fully qualified first when there is a domain) and aliases."""
    names = [check_hostname(hostname)]
    if domainname:
        names.insert(0, f"{hostname}.{check_hostname(domainname, 'domain name')}")
    names += [check_hostname(a, "alias") for a in aliases if a not in names]
    out = bytearray(_DEFAULT_HOSTS)
    for name, ip in extra_hosts:
        out += f"{_ip(ip, 'extra host')}\t{check_hostname(name, 'extra host name')}\n".encode()
    for ip in addresses:
        out += f"{_ip(ip, 'address')}\t{' '.join(names)}\n".encode()
    return bytes(out)


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = field(default_factory=tuple)


def parse_resolv_conf(text: str) -> ResolvConf:
    """The parts of resolv.conf(5) a container inherits; unknown lines are ignored."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            try:
                servers.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return ResolvConf(tuple(servers), tuple(search), tuple(options))


def _not_loopback(servers: Iterable[str]) -> list[str]:
    return [s for s in servers if not ipaddress.ip_address(s).is_loopback]


def resolv_conf(conf: ResolvConf) -> bytes:
    out = bytearray()
    for s in conf.nameservers:
        out += f"nameserver {_ip(s, 'nameserver')}\n".encode()
    if conf.search:
        out += ("search " + " ".join(check_hostname(d, "search domain")
                                     for d in conf.search) + "\n").encode()
    if conf.options:
        for o in conf.options:
            _no_line_breaks(o, "DNS option")
            if not _OPTION.fullmatch(o):
                raise InvalidArgument(f"invalid DNS option {o!r}")
        out += ("options " + " ".join(conf.options) + "\n").encode()
    return bytes(out)


def container_resolv_conf(host: ResolvConf, *, embedded_dns: str = "", dns: Sequence[str] = (),
                          dns_search: Sequence[str] = (),
                          dns_options: Sequence[str] = ()) -> bytes:
    """What the container sees. On a user-defined network `embedded_dns` is the network's
    gateway, where shipslog's DNS server answers container names and forwards the rest; as
    with Docker's 127.0.0.11 it is always the nameserver there, `--dns` servers become what it
    forwards to for this container (`dns_upstreams`), and `ndots:0` is added unless an ndots
    option is given. Elsewhere `--dns` or the host's non-loopback resolvers (or Docker's
    fallback). `--dns-search` and `--dns-option` override the host's, as in Docker."""
    dns = [_ip(s, "--dns") for s in dns]
    if embedded_dns:
        servers = [_ip(embedded_dns, "embedded DNS address")]
    elif dns:
        servers = dns
    else:
        servers = _not_loopback(host.nameservers) or list(FALLBACK_NAMESERVERS)
    search = tuple(dns_search) if dns_search else host.search
    options = tuple(dns_options) if dns_options else host.options
    if embedded_dns and not any(o.startswith("ndots:") for o in options):
        options += ("ndots:0",)  # moby's sandbox_dns_unix.go: names are tried as given first
    return resolv_conf(ResolvConf(tuple(servers), search, options))


def dns_upstreams(host: ResolvConf, dns: Sequence[str] = ()) -> list[tuple[str, int]]:
    """Where the embedded DNS server forwards a container's questions about names it does not
    own: the container's `--dns` servers when it has some, else the host's resolvers."""
    return [(s, 53) for s in dns] or upstream_servers(host)


def upstream_servers(host: ResolvConf) -> list[tuple[str, int]]:
    """Where the DNS server (in the host's namespace) forwards names it does not own.
    Loopback resolvers such as systemd-resolved's 127.0.0.53 work from there."""
    return [(s, 53) for s in host.nameservers] or [(s, 53) for s in FALLBACK_NAMESERVERS]
