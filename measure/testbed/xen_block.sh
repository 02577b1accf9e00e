#!/bin/sh
# Xen's block hotplug script for an initramfs dom0 without bash: libxl runs it as
# `block add|remove` with XENBUS_PATH set. A regular file gets a loop device; blkback
# is told the device (major:minor in hex) through xenstore.
params=$(xenstore-read "$XENBUS_PATH/params")
case "$1" in
add)
    dev=$params
    if [ -f "$params" ]; then
        dev=$(losetup -f) && losetup "$dev" "$params" || {
            xenstore-write "$XENBUS_PATH/hotplug-error" "losetup $params failed"
            xenstore-write "$XENBUS_PATH/hotplug-status" error; exit 1; }
    fi
    if [ ! -b "$dev" ]; then
        xenstore-write "$XENBUS_PATH/hotplug-error" "$dev is not a block device"
        xenstore-write "$XENBUS_PATH/hotplug-status" error; exit 1
    fi
    mm=$(stat -L -c '%t:%T' "$dev")
    xenstore-write "$XENBUS_PATH/physical-device" "$mm"
    xenstore-write "$XENBUS_PATH/physical-device-path" "$dev"
    xenstore-write "$XENBUS_PATH/hotplug-status" connected
    ;;
remove)
    dev=$(xenstore-read "$XENBUS_PATH/physical-device-path" 2>/dev/null)
    case "$dev" in /dev/loop*) losetup -d "$dev" 2>/dev/null ;; esac
    ;;
esac
exit 0
