# probe_json OUT: the probe's JSON object OUT extended with the disk's /sys/block/<dev>/stat
# deltas and the guest's facts (shared by init.sh and xen_init.sh; the builder pastes it in).
# Reads the caller's variables: dev, r0 rm0 rs0 w0 wm0 ws0 (before the probe), r1 ... ws1
# (after), as0 (sectors read before the warm-up), warmup, mem_kib, tw t0 t1 (uptimes), rc.
# guest_cached_bytes: the page cache after the probe (/proc/meminfo Cached): what the
# guest's cache holds of a file read beyond its memory is its capacity for that memory.
probe_json() {
    cached_kib=$(sed -n 's/^Cached: *\([0-9]*\) kB/\1/p' /proc/meminfo)
    extra="\"guest_block_device\": \"$dev\", \"guest_block_reads_bytes\": $(( (rs1 - rs0) * 512 ))"
    extra="$extra, \"guest_block_read_ops\": $((r1 - r0)), \"guest_block_writes_bytes\": $(( (ws1 - ws0) * 512 ))"
    extra="$extra, \"guest_block_write_ops\": $((w1 - w0)), \"guest_warmup\": $warmup"
    extra="$extra, \"guest_warmup_reads_bytes\": $(( (rs0 - as0) * 512 ))"
    extra="$extra, \"guest_block_stat_before\": [$r0, $rm0, $rs0, $w0, $wm0, $ws0]"
    extra="$extra, \"guest_block_stat_after\": [$r1, $rm1, $rs1, $w1, $wm1, $ws1]"
    extra="$extra, \"guest_mem_total_bytes\": $((mem_kib * 1024)), \"guest_kernel\": \"$(uname -r)\""
    extra="$extra, \"guest_cached_bytes\": $((${cached_kib:-0} * 1024))"
    extra="$extra, \"guest_uptime_warmup_start_s\": $tw, \"guest_uptime_probe_start_s\": $t0, \"guest_uptime_probe_end_s\": $t1, \"probe_exit\": $rc"
    echo "${1%\}}, $extra}"
}
