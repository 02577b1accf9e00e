#!/bin/sh
# edgeio xen testbed: dom0's Xen services (an rc.d hook of the testbed's boot script).
# xenstored first, then xen-init-dom0 (writes dom0 into the store), then xenconsoled
# (each guest console gets a pty from it). The Xen driver modules are loaded by the
# boot initramfs.
bin=/usr/lib/xen-@@XEN@@/bin
# /var/run is a directory of its own here, not a link to /run: libxl locks under /var/run/xen
mkdir -p /proc/xen /run/xenstored /run/xen /var/run/xen /var/run/xenstored /var/lib/xen /var/log/xen /var/lock
mountpoint -q /proc/xen || mount -t xenfs xenfs /proc/xen || exit 1
"$bin/xenstored" --pid-file /run/xenstored.pid || exit 1
"$bin/xen-init-dom0" > /var/log/xen/xen-init-dom0.log 2>&1 || exit 1
"$bin/xenconsoled" --pid-file=/run/xenconsoled.pid || exit 1
echo "edgeio-testbed: xen $(cat /proc/xen/capabilities) ready"
