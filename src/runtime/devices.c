/* runtime/devices: puts the CPU, memory and GPU probes together. Probing is cheap (a few small files
 * and, where present, NVML), so callers detect again whenever they need fresh free-memory figures. */
#include "runtime/devices.h"

#include <stdio.h>
#include <string.h>

int ts_devices_detect_with(const ts_detect_options *opts, ts_device_info *out, ts_error *err) {
    (void)err;
    const char *root = opts && opts->fs_root ? opts->fs_root : "";
    memset(out, 0, sizeof *out);
    ts_devices_detect_cpu(root, &out->cpu);
    ts_devices_detect_memory(root, &out->memory);
    ts_devices_detect_gpus(opts ? opts->nvml_library : NULL, out);
    return 0;
}

int ts_devices_detect(ts_device_info *out, ts_error *err) { return ts_devices_detect_with(NULL, out, err); }

const char *ts_format_bytes(uint64_t bytes, char *buf, size_t cap) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
    snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}
