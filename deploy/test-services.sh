#!/usr/bin/env bash
# Start throwaway Redis and PostgreSQL servers on loopback for the judge's fleet tests, and
# print the environment that points the tests at them:
#   eval "$(bash deploy/test-services.sh start /tmp/judge-services)"
#   bash deploy/test-services.sh stop /tmp/judge-services
# Uses the Debian packages redis-server and postgresql (installed when missing and apt-get is
# usable). Prints nothing (and exits 0) when they cannot be had: the fleet tests then skip.
set -uo pipefail
cmd=${1:-start}
dir=${2:-/tmp/judge-services}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

if [ "$cmd" = stop ]; then
    [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null
    # a test may have restarted Redis on the same port (a broker crash test): stop that one too
    [ -f "$dir/redis.port" ] && redis-cli -p "$(cat "$dir/redis.port")" shutdown nosave >/dev/null 2>&1
    [ -n "$pg_bin" ] && [ -d "$dir/pg" ] && as_pg "$pg_bin/pg_ctl -D $dir/pg -m immediate stop" >/dev/null 2>&1
    exit 0
fi

if ! command -v redis-server >/dev/null || [ -z "$pg_bin" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
            apt-get install -y -qq redis-server postgresql; } >&2 || true
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    fi
fi
mkdir -p "$dir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if command -v redis-server >/dev/null; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >&2 && {
        for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
        echo "$rport" > "$dir/redis.port"
        echo "export JUDGE_TEST_REDIS_URL=redis://127.0.0.1:$rport/0"
        echo "export JUDGE_TEST_REDIS_PORT=$rport"
    }
fi

if [ -n "$pg_bin" ]; then
    pport=$(free_port)
    rm -rf "$dir/pg"; mkdir -p "$dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" "$dir/pg"
    chmod 755 "$dir"
    if as_pg "$pg_bin/initdb -D $dir/pg -U judge --auth=trust" >"$dir/initdb.log" 2>&1 &&
       as_pg "$pg_bin/pg_ctl -D $dir/pg -l $dir/pg/log -w -o '-k $dir/pg -p $pport -c listen_addresses=127.0.0.1 -c fsync=off' start >$dir/pg/pg_ctl.log 2>&1" </dev/null >&2 2>&1; then
        echo "export JUDGE_TEST_POSTGRES_URL=postgresql://judge@127.0.0.1:$pport/postgres"
    fi
fi
exit 0
