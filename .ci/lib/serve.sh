# Sourced by the CI scripts that need a real server: `start_server WORK`
# starts the debug lanrage-control on an ephemeral port over a SQLite file in
# WORK, logging to WORK/server.log, and sets $server (its pid) and $base
# (its URL). `stop_server` stops it, printing the log's tail if the script
# is failing. Extra environment for the server is passed as usual
# (VAR=value start_server WORK).

start_server() {
    local work="$1"
    server_log="$work/server.log"
    LANRAGE_LOG_FORMAT=json \
        "$CARGO_TARGET_DIR/debug/lanrage-control" serve \
        --listen 127.0.0.1:0 \
        --database-url "sqlite://$work/control.db" \
        --rate-limit off >"$server_log" 2>&1 &
    server=$!
    # The server logs the address it bound.
    local address=""
    for _ in $(seq 1 100); do
        address="$(python3 - "$server_log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("message", "").endswith("listening"):
        print(entry["address"])
        break
PY
)"
        [ -n "$address" ] && break
        kill -0 "$server" 2>/dev/null || { echo "the server exited at start"; return 1; }
        sleep 0.1
    done
    [ -n "$address" ] || { echo "the server did not start listening"; return 1; }
    base="http://$address"
}

stop_server() {
    local status="$1"
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "--- server log"
        tail -n 50 "$server_log" || true
    fi
}
