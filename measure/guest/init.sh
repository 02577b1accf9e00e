#!/bin/busybox sh
# edgeio guest init (template; the builder fills the @@...@@ module lists).
# Loads the disk driver named by edgeio.disk=, mounts the ext4 disk, runs the probe
# with the arguments in edgeio.probe= (comma-separated), prints the probe's JSON line
# extended with the disk's /sys/block/<dev>/stat deltas, and powers off.
# Anything that goes wrong leaves no JSON line: the host reports the serial log's tail.

/bin/busybox mkdir -p /proc /sys /dev /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "edgeio-guest: $*"; }
finish() {
    sync
    umount /mnt 2>/dev/null
    poweroff -f    # no init system to ask: power off now (QEMU exits)
}
arg() {   # the value of edgeio.$1= on the kernel command line
    for word in $(cat /proc/cmdline); do
        case "$word" in edgeio.$1=*) echo "${word#*=}" ;; esac
    done
}
uptime_s() { read -r up _ < /proc/uptime; echo "$up"; }
@@PROBE_JSON@@

disk=$(arg disk)
probe_args=$(arg probe | tr ',' ' ')
say "init started (disk=$disk)"
case "$disk" in
    virtio) modules="@@MODULES_virtio@@"; dev=vda ;;
    ide) modules="@@MODULES_ide@@"; dev=sda ;;
    ahci) modules="@@MODULES_ahci@@"; dev=sda ;;
    *) say "unknown edgeio.disk=$disk"; finish ;;
esac
for m in $modules; do
    insmod "/modules/$m.ko" || say "insmod $m failed"
done

i=0
while [ ! -b "/dev/$dev" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b "/dev/$dev" ]; then say "no /dev/$dev after 60 s (disk=$disk)"; finish; fi
if ! mount -t ext4 "/dev/$dev" /mnt; then say "mount /dev/$dev failed"; finish; fi

mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
# A warm read starts, as on the native host where the probe has just written its file,
# with the file in the page cache as far as it fits: read it once, untimed.
warmup=false
case " $probe_args " in
    *" --op read "*) case " $probe_args " in *" --cold "*) ;; *) warmup=true ;; esac ;;
esac
# /sys/block/<dev>/stat: reads, reads merged, sectors read, ms, writes, writes merged, sectors written, ...
read -r a0 am0 as0 rest < "/sys/block/$dev/stat"
tw=$(uptime_s)
if $warmup; then cat /mnt/data > /dev/null; fi
read -r r0 rm0 rs0 rt0 w0 wm0 ws0 rest < "/sys/block/$dev/stat"
say "running /probe $probe_args"
t0=$(uptime_s)
out=$(/probe $probe_args)
rc=$?
t1=$(uptime_s)
read -r r1 rm1 rs1 rt1 w1 wm1 ws1 rest < "/sys/block/$dev/stat"

case "$out" in
    *"}") ;;
    *) say "probe printed no JSON (exit $rc): $out"; finish ;;
esac
echo "$(probe_json "$out")"
finish
