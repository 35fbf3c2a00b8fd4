"""Descriptions for `run` and `create` options in `--help`, in Docker's words (`docker run
--help`, Docker 24), so that people who know Docker's help recognise every line (issue 18:
`run --help` listed the flags without a word about any of them).

I/O: none. `describe(parser)` fills the help of every option that has none yet; an option
given its own help where it is declared keeps it.
"""

from __future__ import annotations

import argparse

DOCKER_HELP: dict[str, str] = {
    "--add-host": "Add a custom host-to-IP mapping (host:ip)",
    "--attach": "Attach to STDIN, STDOUT or STDERR",
    "--cap-add": "Add Linux capabilities",
    "--cap-drop": "Drop Linux capabilities",
    "--cgroupns": "Cgroup namespace to use (host|private)",
    "--cidfile": "Write the container ID to the file",
    "--cpu-shares": "CPU shares (relative weight)",
    "--cpus": "Number of CPUs",
    "--cpuset-cpus": "CPUs in which to allow execution (0-3, 0,1)",
    "--detach": "Run container in background and print container ID",
    "--detach-keys": "Override the key sequence for detaching a container",
    "--device": "Add a host device to the container",
    "--dns": "Set custom DNS servers",
    "--dns-option": "Set DNS options",
    "--dns-search": "Set custom DNS search domains",
    "--domainname": "Container NIS domain name",
    "--entrypoint": "Overwrite the default ENTRYPOINT of the image",
    "--env": "Set environment variables",
    "--env-file": "Read in a file of environment variables",
    "--expose": "Expose a port or a range of ports",
    "--group-add": "Add additional groups to join",
    "--health-cmd": "Command to run to check health",
    "--health-interval": "Time between running the check (ms|s|m|h) (default 0s)",
    "--health-retries": "Consecutive failures needed to report unhealthy",
    "--health-start-period": "Start period for the container to initialize before starting "
                             "health-retries countdown (ms|s|m|h) (default 0s)",
    "--health-timeout": "Maximum time to allow one check to run (ms|s|m|h) (default 0s)",
    "--hostname": "Container host name",
    "--init": "Run an init inside the container that forwards signals and reaps processes",
    "--interactive": "Keep STDIN open even if not attached",
    "--ip": "IPv4 address (e.g., 172.30.100.104)",
    "--ip6": "IPv6 address (e.g., 2001:db8::33)",
    "--ipc": "IPC mode to use",
    "--label": "Set meta data on a container",
    "--label-file": "Read in a line delimited file of labels",
    "--link": "Add link to another container",
    "--log-driver": "Logging driver for the container",
    "--log-opt": "Log driver options",
    "--mac-address": "Container MAC address (e.g., 92:d0:c6:0a:29:33)",
    "--memory": "Memory limit",
    "--memory-reservation": "Memory soft limit",
    "--memory-swap": "Swap limit equal to memory plus swap: '-1' to enable unlimited swap",
    "--mount": "Attach a filesystem mount to the container",
    "--name": "Assign a name to the container",
    "--network": "Connect a container to a network",
    "--network-alias": "Add network-scoped alias for the container",
    "--no-healthcheck": "Disable any container-specified HEALTHCHECK",
    "--oom-kill-disable": "Disable OOM Killer",
    "--pid": "PID namespace to use",
    "--pids-limit": "Tune container pids limit (set -1 for unlimited)",
    "--platform": "Set platform if server is multi-platform capable",
    "--privileged": "Give extended privileges to this container",
    "--publish": "Publish a container's port(s) to the host",
    "--publish-all": "Publish all exposed ports to random ports",
    "--pull": "Pull image before running (\"always\", \"missing\", \"never\")",
    "--quiet": "Suppress the pull output",
    "--read-only": "Mount the container's root filesystem as read only",
    "--restart": "Restart policy to apply when a container exits (default \"no\")",
    "--rm": "Automatically remove the container when it exits",
    "--security-opt": "Security Options",
    "--shm-size": "Size of /dev/shm",
    "--sig-proxy": "Proxy received signals to the process (default true)",
    "--stop-signal": "Signal to stop the container",
    "--stop-timeout": "Timeout (in seconds) to stop a container",
    "--sysctl": "Sysctl options",
    "--tmpfs": "Mount a tmpfs directory",
    "--tty": "Allocate a pseudo-TTY",
    "--ulimit": "Ulimit options",
    "--user": "Username or UID (format: <name|uid>[:<group|gid>])",
    "--userns": "User namespace to use",
    "--uts": "UTS namespace to use",
    "--volume": "Bind mount a volume",
    "--volumes-from": "Mount volumes from the specified container(s)",
    "--workdir": "Working directory inside the container",
    "--device-cgroup-rule": "Add a rule to the cgroup allowed devices list",
    "--cgroup-parent": "Optional parent cgroup for the container",
    "--runtime": "Runtime to use for this container",
    "--isolation": "Container isolation technology",
    "--cpuset-mems": "MEMs in which to allow execution (0-3, 0,1)",
    "--memory-swappiness": "Tune container memory swappiness (0 to 100)",
    "--oom-score-adj": "Tune host's OOM preferences (-1000 to 1000)",
    "image": "The image to run: NAME[:TAG], NAME@DIGEST or an image ID",
    "command": "The command and its arguments (default: the image's CMD)",
}


def describe(parser: argparse.ArgumentParser) -> None:
    """Give every option of `parser` without a help text Docker's description of it."""
    actions = getattr(parser, "_actions", None)
    if not isinstance(actions, list):
        return  # the stand-in parser of a verb not being run (engine/cli/main.py `_Only`)
    for action in actions:  # argparse has no public list of them
        if action.help:
            continue
        names = [s for s in action.option_strings if s.startswith("--")] or [action.dest]
        text = next((DOCKER_HELP[n] for n in names if n in DOCKER_HELP), None)
        if text is not None:
            action.help = text
