#!/usr/bin/env bash
# Make sure Redis answers on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432; start (and if need
# be install) them when they do not. Make sure `prometheus` and `promtool` are installed (Debian's
# `prometheus` package): the tests start their own instances on free loopback ports, so the
# package's own service is kept from starting. Idempotent; prints what it did.
set -uo pipefail
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
apt_install() {
  command -v apt-get >/dev/null || { echo "[services] no apt-get to install $*" >&2; return 1; }
  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
install_prometheus() {
  # policy-rc.d 101: the package's service is not started (nor left running on :9090)
  local policy=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1; fi
  apt_install --no-install-recommends prometheus
  local rc=$?
  [ -n "$created" ] && rm -f "$policy"
  return $rc
}
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if install_prometheus && command -v promtool >/dev/null; then
    echo "[services] installed prometheus + promtool ($(prometheus --version 2>/dev/null | head -1))"
  else
    echo "[services] could not install prometheus; the rules and monitoring tests will fail" >&2
  fi
fi
if ! answers 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/checkout-recs-redis.log
  for _ in $(seq 50); do answers 6379 && break; sleep 0.1; done
  answers 6379 && echo "[services] started redis-server on 127.0.0.1:6379" || echo "[services] Redis did not start" >&2
fi
if ! answers 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql || true; fi
  if command -v pg_ctlcluster >/dev/null; then
    ver=$(ls /etc/postgresql | sort -V | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start || true
    for _ in $(seq 50); do answers 5432 && break; sleep 0.2; done
  fi
  answers 5432 && echo "[services] started PostgreSQL on 127.0.0.1:5432" || echo "[services] PostgreSQL not answering; tests that need it will say so" >&2
fi
exit 0
