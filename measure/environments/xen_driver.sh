#!/bin/sh
# edgeio xen driver, run on the dom0 (shipped by measure/environments/xen.py).
#   xen_driver.sh start DIR NAME TIMEOUT        xl create the domU paused, attach a reader to its
#                                               console pty (DIR/console.log), unpause, wait for
#                                               "edgeio-domu-ready"
#   xen_driver.sh cell DIR NAME NONCE TIMEOUT LINE   type LINE at the domU console, wait for
#                                               "edgeio-result NONCE ..." and print it
#   xen_driver.sh stop DIR NAME                 ask the domU to power off, else xl destroy
# Exit 0 ok; 3 the domain is gone (crashed, or never built); 124 timed out (domain
# destroyed). On failure the console's tail follows an "edgeio-console-tail" line.
cmd=$1 dir=$2 name=$3
log=$dir/console.log
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Alive: the domain exists and is neither shut down, crashed nor dying (xl list's State).
alive() {
    [ -s "$dir/domid" ] || return 1
    state=$(xl list "$(cat "$dir/domid")" 2>/dev/null | sed -n '2s/.*[[:space:]]\([-rbpscd]\{6\}\)[[:space:]].*/\1/p')
    case "$state" in ""|*s*|*c*|*d*) return 1 ;; esac
}
destroy() { [ -s "$dir/domid" ] && xl destroy "$(cat "$dir/domid")" >/dev/null 2>&1; }
tail_out() {   # the panic or init's complaint (if any, it may be above the tail), then the tail
    echo "edgeio-console-tail"
    grep -E "Kernel panic|edgeio-guest:" "$log" 2>/dev/null | tail -n 3 | tr -d '\r'
    tail -n 25 "$log" 2>/dev/null | tr -d '\r'
}
# wait_for PATTERN SECONDS: 0 found, 3 domain gone, 124 timed out
wait_for() {
    end=$(( $(date +%s) + $2 ))
    while :; do
        grep -q -- "$1" "$log" 2>/dev/null && return 0
        alive || { grep -q -- "$1" "$log" 2>/dev/null && return 0; return 3; }
        [ "$(date +%s)" -ge "$end" ] && return 124
        sleep 0.2
    done
}
fail() {   # $1 status
    destroy       # hung, crashed or shut down: none is left behind holding memory
    tail_out
    exit "$1"
}
tty_of() { xenstore-read "/local/domain/$(cat "$dir/domid")/console/tty"; }

case "$cmd" in
start)
    : > "$log"
    rm -f "$dir/domid"
    xl create -p "$dir/domu.cfg" > "$dir/xl-create.log" 2>&1 < /dev/null || {
        cat "$dir/xl-create.log"; echo "edgeio-console-tail"; exit 3; }
    xl domid "$name" > "$dir/domid"
    tty=$(tty_of) || { destroy; echo "no console pty"; exit 3; }
    stty -F "$tty" raw -echo
    # The reader outlives this command; its output goes only to the log.
    setsid cat "$tty" >> "$log" 2>/dev/null < /dev/null &
    echo $! > "$dir/reader.pid"
    xl unpause "$name"
    wait_for "^edgeio-domu-ready" "$4" || fail $?
    grep -- "^edgeio-domu-ready" "$log" | tr -d '\r' | tail -n 1
    ;;
cell)
    nonce=$4 timeout=$5 line=$6
    alive || fail 3
    printf '%s\n' "$line" > "$(tty_of)"
    wait_for "^edgeio-result $nonce " "$timeout" || fail $?
    grep -- "^edgeio-result $nonce " "$log" | tr -d '\r' | tail -n 1
    ;;
stop)
    if alive; then
        printf 'edgeio-quit\n' > "$(tty_of)" 2>/dev/null
        i=0
        while alive && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
    fi
    destroy       # powered off (shut down) or still up after 30 s: gone either way
    [ -f "$dir/reader.pid" ] && kill "$(cat "$dir/reader.pid")" 2>/dev/null
    rm -f "$dir/reader.pid"
    ;;
*) echo "usage: xen_driver.sh start|cell|stop DIR NAME ..."; exit 2 ;;
esac
