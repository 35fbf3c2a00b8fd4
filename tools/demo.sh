#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine as root: install what is missing,
# build the busybox demo image, start shipslogd (if it is not running), run containers,
# and show what the event log recorded. The daemon keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

ROOT=${SHIPSLOG_ROOT:-/var/lib/shipslog}
EXEC_ROOT=${SHIPSLOG_EXEC_ROOT:-/run/shipslog}
export SHIPSLOG_HOST=unix://$EXEC_ROOT/shipslog.sock
shipslog() { .venv/bin/shipslog "$@"; }
step() { printf '\n\033[1m$ shipslog %s\033[0m\n' "$*"; shipslog "$@"; }

mkdir -p out
[ -s out/busybox.tar ] || .venv/bin/python -m tools.build_busybox_image -o out/busybox.tar

if ! shipslog version >/dev/null 2>&1; then
  echo "starting shipslogd (root $ROOT, log /var/log/shipslogd.log)"
  nohup .venv/bin/shipslogd --root "$ROOT" --exec-root "$EXEC_ROOT" \
    >>/var/log/shipslogd.log 2>&1 &
  for _ in $(seq 100); do shipslog version >/dev/null 2>&1 && break; sleep 0.1; done
fi
since=$(date +%s)

step load -i out/busybox.tar
step images
step run --rm busybox echo "hello from a shipslog container"
shipslog rm -f demo >/dev/null 2>&1 || true
step run -d --name demo -e GREETING=secret-value busybox \
  sh -c 'echo "started as $(id -u) on $(hostname)"; trap "exit 0" TERM; while :; do sleep 1; done'
step ps
sleep 0.3
step logs demo
step exec demo sh -c 'echo "inside: $GREETING"'
step stop -t 2 demo
step ps -a --filter name=demo
step rm demo
printf '\n\033[1mWhat the log recorded (it keeps everything, with who did it):\033[0m\n'
step events --since "$since" --until "$(date +%s)"
echo
echo "shipslogd keeps running (socket $EXEC_ROOT/shipslog.sock). Stop it with:"
echo "  kill \$(cat $ROOT/engine.lock)    # containers keep running; the next start adopts them"
