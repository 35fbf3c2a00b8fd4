#!/usr/bin/env bash
# Installs what shipslog needs on Debian 12, idempotently: the Debian packages it drives
# (runc, conmon, busybox-static for the demo image, tini for --init, nftables, iproute2) and
# a virtualenv in .venv with the Python dependencies. `--test` adds what the tests use
# (the docker CLI from docker.io, to prove the API works with Docker's own client, and
# Debian's docker-registry for pull/push tests against a real registry on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(runc conmon busybox-static tini nftables iproute2 python3-venv)
if [ "${1:-}" = "--test" ]; then
  command -v docker >/dev/null 2>&1 || packages+=(docker.io)
  packages+=(docker-registry skopeo)  # a real registry on loopback; skopeo reads our archives
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
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
