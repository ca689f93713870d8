# Shared by the benchmarks; source it after `cd`-ing to the repository root and setting
# REPO_ROOT.

# Sets BIN to the directory holding the binaries under test (picloud and the bench tools):
# PICLOUD_BIN_DIR when set, to compare two builds with one harness in one sitting; else
# this checkout's release build, made now.
bench_binaries() {
    if [ -n "${PICLOUD_BIN_DIR:-}" ]; then
        BIN="$PICLOUD_BIN_DIR"
    else
        printf '\n==> %s\n' "building picloud and the bench tools (release)" >&2
        cargo build --release -q -p picloud -p picloud-bench
        BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
    fi
}

# Installs wrk when it is missing (needs root).
need_wrk() {
    command -v wrk >/dev/null && return
    [ "$(id -u)" -eq 0 ] || { printf 'error: wrk is missing: apt-get install wrk\n' >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

# start_bench_server DIR DATABASE_URL: starts `$BIN/picloud` on a free loopback port with
# its data dir, stdout and stderr in DIR, waits for it, and creates app `bench` with a key
# (scope app:admin). Sets SERVER_PID and BASE (http://127.0.0.1:PORT); exports the key as
# PICLOUD_KEY (what bench/wrk/*.lua send). Extra environment for the server: SERVER_ENV.
SERVER_PID=""
start_bench_server() {
    local dir="$1" url="$2" port admin
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    BASE="http://127.0.0.1:$port"
    mkdir -p "$dir"
    env ${SERVER_ENV:-} "$BIN/picloud" --data-dir "$dir/data" --database-url "$url" serve \
        --bind "127.0.0.1:$port" >"$dir/stdout" 2>"$dir/stderr" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fs "$BASE/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$dir/stdout" | head -1)"
    [ -n "$admin" ] || { printf 'error: no bootstrap key printed (%s)\n' "$dir/stderr" >&2; exit 1; }
    curl -fs -X POST "$BASE/v1/apps" -H "Authorization: Bearer $admin" \
        -H 'content-type: application/json' -d '{"id":"bench"}' >/dev/null
    PICLOUD_KEY="$(curl -fs -X POST "$BASE/v1/apps/bench/keys" -H "Authorization: Bearer $admin" \
        -H 'content-type: application/json' -d '{"name":"bench","scopes":["app:admin"]}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
    export PICLOUD_KEY
}

# Stops the server start_bench_server started, if it runs.
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
