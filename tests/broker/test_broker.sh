#!/usr/bin/env bash
# test_broker.sh: winnow-broker end to end, with kcat as an independent client.
#
#   tests/broker/test_broker.sh [PATH/TO/winnow-broker]    (default build/winnow-broker)
#
# Starts brokers on ephemeral ports on 127.0.0.1 only, bounds every wait, and
# stops what it started by PID on exit. Exit 0 when every check passes.
set -euo pipefail

BROKER=${1:-build/winnow-broker}
KCAT=${KCAT:-kcat}
WAIT=20            # seconds for any one thing to happen
KCAT_TIMEOUT=60    # seconds for any one kcat run

work=$(mktemp -d "${TMPDIR:-/tmp}/winnow-broker-test.XXXXXX")
pids=()

# Stops whatever is still running (by PID, SIGTERM then SIGKILL), then
# removes the work directory.
cleanup() {
	local pid i
	exec 3>&- 2>/dev/null || true
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || continue
		for ((i = 0; i < 10 * WAIT; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
# A signal from outside (a timeout, a kill by name) would otherwise end the
# script without a word; say so, and let the EXIT trap clean up.
trap 'echo "test_broker.sh: stopped by SIGTERM" >&2; exit 143' TERM
trap 'echo "test_broker.sh: stopped by SIGINT" >&2; exit 130' INT

step() { echo "--- $*"; }

fail() {
	local f
	echo "FAIL: $*" >&2
	for f in "$work"/*.out "$work"/*.err; do
		[ -s "$f" ] || continue
		echo "=== $f" >&2
		tail -n 30 "$f" >&2
	done
	exit 1
}

# wait_file FILE: until FILE exists and is not empty.
wait_file() {
	local i
	for ((i = 0; i < 10 * WAIT; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	fail "no '$1' after ${WAIT}s"
}

# wait_lines FILE N: until FILE has at least N lines.
wait_lines() {
	local i
	for ((i = 0; i < 10 * WAIT; i++)); do
		[ "$(wc -l <"$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "'$1' has fewer than $2 lines after ${WAIT}s"
}

# wait_exit PID: until PID (a child of this shell) exits; its status goes to
# $exit_rc (not printed: `wait` cannot reap from a $(...) subshell).
wait_exit() {
	local i
	for ((i = 0; i < 10 * WAIT; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && fail "process $1 still running after ${WAIT}s"
	exit_rc=0
	wait "$1" || exit_rc=$?
}

# send LINE EXPECTED: sends LINE to broker A through fd 3 (the fifo on its
# stdin) and checks that its answer, the next line of a.out, is EXPECTED
# (a prefix when EXPECTED ends in '*').
answers=1   # a.out starts with the bootstrap line
send() {
	local got
	echo "$1" >&3
	answers=$((answers + 1))
	wait_lines "$work/a.out" "$answers"
	got=$(sed -n "${answers}p" "$work/a.out")
	# shellcheck disable=SC2053 # the glob in $2 is meant
	[[ "$got" == $2 ]] || fail "'$1' answered '$got', expected '$2'"
	echo "'$1' -> $got"
}

produce() {   # produce ADDR TOPIC < lines
	timeout "$KCAT_TIMEOUT" "$KCAT" -b "$1" -t "$2" -P \
		-X message.timeout.ms=30000 || fail "kcat could not produce to '$2' at $1"
}

consume_all() {   # consume_all ADDR TOPIC > lines
	timeout "$KCAT_TIMEOUT" "$KCAT" -b "$1" -t "$2" -C -e -o beginning -q \
		|| fail "kcat could not consume '$2' at $1"
}

# port_open PORT: does 127.0.0.1:PORT accept a TCP connection?
port_open() {
	timeout 5 bash -c "exec 9<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

[ -x "$BROKER" ] || fail "no broker executable at '$BROKER'"
command -v "$KCAT" >/dev/null || fail "kcat not found (apt-get install kcat)"

# --- Broker A: ephemeral port, commands through a fifo -----------------------
step "start broker A (ephemeral port, -f)"
mkfifo "$work/cmd"
# Opened read-write, the fifo never blocks here and has a writer until fd 3 is
# closed; the broker must not inherit fd 3, or it would never see EOF.
exec 3<>"$work/cmd"
"$BROKER" -f "$work/a.addr" docs:4 labels:4 docs.dlq:1 \
	<"$work/cmd" >"$work/a.out" 2>"$work/a.err" 3>&- &
a_pid=$!
pids+=("$a_pid")
wait_file "$work/a.addr"
addr=$(cat "$work/a.addr")
[[ "$addr" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "bad bootstrap address '$addr'"
port=${addr##*:}
wait_lines "$work/a.out" 1
[ "$(head -n 1 "$work/a.out")" = "$addr" ] || fail "stdout does not start with '$addr'"
echo "broker A at $addr (pid $a_pid)"

step "produce 100 messages, consume them back"
seq 1 100 | produce "$addr" docs
consume_all "$addr" docs >"$work/consumed"
[ "$(sort -n "$work/consumed" | tr '\n' ' ')" = "$(seq 1 100 | tr '\n' ' ')" ] ||
	fail "consumed $(wc -l <"$work/consumed") messages, not 1..100"
echo "100 of 100 messages back"

step "-p on a taken port fails clearly"
rc=0
timeout "$WAIT" "$BROKER" -p "$port" docs:1 </dev/null >"$work/taken.out" 2>"$work/taken.err" || rc=$?
[ "$rc" -eq 2 ] || fail "-p $port (taken) exited $rc, expected 2"
grep -q "port $port is in use" "$work/taken.err" || fail "no 'port $port is in use' message"
grep -q . "$work/taken.out" && fail "a broker that did not start printed an address"
echo "exit 2: $(tail -n 1 "$work/taken.err")"

step "fault injection on stdin"
send "broker down 1" ok
port_open "$port" && fail "port $port still accepts connections with broker 1 down"
send "broker up 1" ok
port_open "$port" || fail "port $port refuses connections with broker 1 up"
send "rtt 1 200" ok
send "broker down 7" "error: *"
send "error Bogus 7" "error: *"
send "error Produce REQUEST_TIMED_OUT 2" ok
send "partition-leader docs 1 1" ok
send "coordinator group winnow 1" ok
seq 101 110 | produce "$addr" docs   # through 200 ms RTT and two retried errors
consume_all "$addr" docs >"$work/consumed"
[ "$(wc -l <"$work/consumed")" -eq 110 ] ||
	fail "consumed $(wc -l <"$work/consumed") messages after up, expected 110"
echo "produce after 'broker up': 110 messages in the topic"
send "rtt 1 0" ok

step "EOF on stdin does not stop the broker"
exec 3>&-
wait_file "$work/a.err"
for ((i = 0; i < 10 * WAIT; i++)); do
	grep -q "stdin closed" "$work/a.err" && break
	sleep 0.1
done
grep -q "stdin closed" "$work/a.err" || fail "broker A did not log the end of stdin"
kill -0 "$a_pid" 2>/dev/null || fail "broker A exited at EOF on stdin"
consume_all "$addr" docs >"$work/consumed"
[ "$(wc -l <"$work/consumed")" -eq 110 ] || fail "broker A stopped serving after EOF"
echo "still serving after EOF"

step "SIGTERM stops broker A with exit 0"
kill -TERM "$a_pid"
wait_exit "$a_pid"
[ "$exit_rc" -eq 0 ] || fail "broker A exited $exit_rc on SIGTERM"
[ -e "$work/a.addr" ] && fail "broker A left its address file behind"
grep -q "stopped" "$work/a.err" || fail "broker A did not log its stop"
echo "exit 0"

# --- Broker B: three brokers, the freed port fixed with -p --------------------
step "start broker B (-b 3 -p $port)"
"$BROKER" -b 3 -p "$port" -f "$work/b.addr" docs:4 \
	</dev/null >"$work/b.out" 2>"$work/b.err" &
b_pid=$!
pids+=("$b_pid")
wait_file "$work/b.addr"
addr=$(cat "$work/b.addr")
[[ "$addr" =~ ^127\.0\.0\.1:$port,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]] ||
	fail "bootstrap '$addr' is not three brokers starting at port $port"
echo "broker B at $addr (pid $b_pid)"
timeout "$KCAT_TIMEOUT" "$KCAT" -b "$addr" -L -t docs >"$work/b.meta" ||
	fail "kcat -L failed"
grep -q " 3 brokers:" "$work/b.meta" || fail "metadata does not list 3 brokers"
consume_all "$addr" docs >"$work/consumed"
[ ! -s "$work/consumed" ] || fail "a new broker served old data"
seq 1 5 | produce "127.0.0.1:$port" docs
consume_all "$addr" docs >"$work/consumed"
[ "$(wc -l <"$work/consumed")" -eq 5 ] || fail "broker B returned $(wc -l <"$work/consumed") of 5"
echo "3 brokers, empty at start, 5 of 5 messages back"

step "SIGINT stops broker B with exit 0"
kill -INT "$b_pid"
wait_exit "$b_pid"
[ "$exit_rc" -eq 0 ] || fail "broker B exited $exit_rc on SIGINT"

if grep -E -q "AddressSanitizer|LeakSanitizer|runtime error:" "$work"/*.err; then
	fail "sanitizer report in the broker's log"
fi
echo "PASS"
