#!/bin/busybox sh
# edgeio testbed: dom0's init (Xen 4.17 from Debian packages, busybox userland).
# Loads the Xen backends, starts xenstored, xen-init-dom0 and xenconsoled (in that
# order: each needs the one before), mounts the scratch disk (/dev/vda) on /var/tmp,
# brings up the user-mode network, runs the layers' start scripts (sshd...), says
# "edgeio-dom0-ready" on the console and leaves a shell there.
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /var/tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts          # xenconsoled hands each guest console a pty
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -s /run /var/run
mkdir -p /run/xenstored /run/xen /var/lib/xen /var/log/xen /var/lock /run/lock
dmesg -n 1

say() { echo "edgeio-dom0: $*"; }
for m in $(cat /etc/edgeio/modules); do
    insmod "/modules/$m.ko" 2>/dev/null || say "insmod $m failed"
done
mount -t xenfs xenfs /proc/xen || say "mount xenfs failed"
xenstored --pid-file /run/xenstored.pid || say "xenstored failed"
xen-init-dom0 >/var/log/xen/xen-init-dom0.log 2>&1 || say "xen-init-dom0 failed"
xenconsoled --pid-file=/run/xenconsoled.pid || say "xenconsoled failed"

# The scratch disk by its label: virtio-mmio devices enumerate in no promised order.
i=0
scratch=$(findfs LABEL=dom0-scratch 2>/dev/null)
while [ -z "$scratch" ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i + 1)); scratch=$(findfs LABEL=dom0-scratch 2>/dev/null)
done
if [ -n "$scratch" ]; then
    mount -t ext4 "$scratch" /var/tmp || say "mount $scratch on /var/tmp failed"
fi
hostname edgeio-xen
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
fi
for s in /etc/edgeio/start.d/*.sh; do
    [ -f "$s" ] && . "$s"
done
say "$(cat /proc/xen/capabilities 2>/dev/null) $(xl info 2>/dev/null | sed -n 's/^xen_version *: //p')"
echo "edgeio-dom0-ready"
# The console reads commands line by line (no line editing: it would query the
# terminal and wait for an answer a program driving the serial port does not give).
exec setsid cttyhack sh -c 'while IFS= read -r line; do eval "$line"; done' 
