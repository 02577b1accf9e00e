#!/bin/busybox sh
# edgeio Xen domU init (template; the builder fills @@MODULES@@).
# Boots once, mounts xvda, then serves cells read from the console (hvc0), one line each:
#   edgeio-cell NONCE ARG,ARG,...   run the probe with these arguments, print one line
#                                   "edgeio-result NONCE {probe JSON + xvda counters}"
#   edgeio-quit                     sync, unmount, power off
# Anything that goes wrong prints an "edgeio-guest:" line; the host shows the console tail.

/bin/busybox mkdir -p /proc /sys /dev /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
dmesg -n 1     # kernel messages would interleave with the result lines

say() { echo "edgeio-guest: $*"; }
finish() {
    sync
    umount /mnt 2>/dev/null
    poweroff -f
}
uptime_s() { read -r up _ < /proc/uptime; echo "$up"; }
@@PROBE_JSON@@

for m in @@MODULES@@; do
    insmod "/modules/$m.ko" || say "insmod $m failed"
done
dev=xvda
i=0
while [ ! -b "/dev/$dev" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b "/dev/$dev" ]; then say "no /dev/$dev after 60 s"; finish; fi
if ! mount -t ext4 "/dev/$dev" /mnt; then say "mount /dev/$dev failed"; finish; fi
stty -echo 2>/dev/null    # the cell lines typed at the console are not echoed back
mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
echo "edgeio-domu-ready $(uname -r) mem_kib=$mem_kib uptime=$(uptime_s)"

run_cell() {   # $1 nonce, $2 comma-separated probe arguments
    nonce=$1
    probe_args=$(echo "$2" | tr ',' ' ')
    case "$probe_args" in
        *[!A-Za-z0-9_./=\ -]*) echo "edgeio-result $nonce {\"probe_exit\": 2, \"error\": \"bad cell line\"}"; return ;;
    esac
    file=$(echo " $probe_args " | sed -n 's/.* --path \([^ ]*\) .*/\1/p')
    warmup=false
    case " $probe_args " in
        *" --op read "*) case " $probe_args " in *" --cold "*) ;; *) warmup=true ;; esac ;;
    esac
    # /sys/block/<dev>/stat: reads, merged, sectors read, ms, writes, merged, sectors written, ...
    read -r a0 am0 as0 rest < "/sys/block/$dev/stat"
    tw=$(uptime_s)
    # A warm read starts with the file in the page cache as far as it fits (as natively).
    if $warmup && [ -n "$file" ]; then cat "$file" > /dev/null; fi
    read -r r0 rm0 rs0 rt0 w0 wm0 ws0 rest < "/sys/block/$dev/stat"
    t0=$(uptime_s)
    out=$(/probe $probe_args)
    rc=$?
    t1=$(uptime_s)
    read -r r1 rm1 rs1 rt1 w1 wm1 ws1 rest < "/sys/block/$dev/stat"
    case "$out" in
        *"}") ;;
        *) say "probe printed no JSON (exit $rc): $out"
           echo "edgeio-result $nonce {\"probe_exit\": $rc, \"error\": \"probe printed no JSON\"}"; return ;;
    esac
    echo "edgeio-result $nonce $(probe_json "$out")"
}

while read -r cmd nonce args; do
    case "$cmd" in
        edgeio-cell) run_cell "$nonce" "$args" ;;
        edgeio-quit) break ;;
        "") ;;
        *) say "unknown command: $cmd" ;;
    esac
done
say "console closed or quit: powering off"
finish
