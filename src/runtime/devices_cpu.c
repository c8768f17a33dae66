/* CPU description for runtime/devices: identity (cpuid on x86-64, /proc/cpuinfo elsewhere), the cores
 * this process may use, and cache sizes from sysfs. ISA features come from backend/cpu/cpu_features. */
#include <ctype.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/devices.h"

static FILE *open_under(const char *root, const char *path) {
    char full[1024];
    snprintf(full, sizeof full, "%s%s", root ? root : "", path);
    return fopen(full, "r");
}

/* Reads the first line of a small file into buf (newline removed). */
static int read_line_under(const char *root, const char *path, char *buf, size_t cap) {
    FILE *f = open_under(root, path);
    if (!f) return -1;
    int ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* "48K", "2048K", "32M" -> bytes (sysfs cache sizes use binary units). */
static uint64_t parse_cache_size(const char *s) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': return (uint64_t)v << 10;
    case 'M': return (uint64_t)v << 20;
    case 'G': return (uint64_t)v << 30;
    default: return (uint64_t)v;
    }
}

static void detect_caches(const char *root, ts_cpu_info *out) {
    for (int i = 0; i < 16; i++) {
        char path[256], level[16], type[32], size[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (read_line_under(root, path, level, sizeof level) != 0) break;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (read_line_under(root, path, type, sizeof type) != 0) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (read_line_under(root, path, size, sizeof size) != 0) continue;
        uint64_t bytes = parse_cache_size(size);
        int lvl = atoi(level);
        if (lvl == 1 && !strcmp(type, "Data")) out->l1d_bytes = bytes;
        else if (lvl == 2 && strcmp(type, "Instruction") != 0) out->l2_bytes = bytes;
        else if (lvl == 3 && strcmp(type, "Instruction") != 0) out->l3_bytes = bytes;
    }
}

static const char *arm_implementer(unsigned id) {
    switch (id) {
    case 0x41: return "ARM";
    case 0x42: return "Broadcom";
    case 0x43: return "Cavium";
    case 0x46: return "Fujitsu";
    case 0x48: return "HiSilicon";
    case 0x4e: return "NVIDIA";
    case 0x51: return "Qualcomm";
    case 0x61: return "Apple";
    case 0xc0: return "Ampere";
    default: return NULL;
    }
}

/* /proc/cpuinfo: "vendor_id"/"model name" on x86, "CPU implementer"/"CPU part" on ARM. */
static void identity_from_cpuinfo(const char *root, ts_cpu_info *out) {
    FILE *f = open_under(root, "/proc/cpuinfo");
    if (!f) return;
    char line[512];
    unsigned implementer = 0, part = 0;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        value[strcspn(value, "\n")] = '\0';
        if (!strncmp(line, "vendor_id", 9) && !out->vendor[0]) snprintf(out->vendor, sizeof out->vendor, "%s", value);
        else if (!strncmp(line, "model name", 10) && !out->model[0])
            snprintf(out->model, sizeof out->model, "%s", value);
        else if (!strncmp(line, "CPU implementer", 15) && !implementer) implementer = (unsigned)strtoul(value, NULL, 0);
        else if (!strncmp(line, "CPU part", 8) && !part) part = (unsigned)strtoul(value, NULL, 0);
    }
    fclose(f);
    if (!out->vendor[0] && implementer) {
        const char *name = arm_implementer(implementer);
        if (name) snprintf(out->vendor, sizeof out->vendor, "%s", name);
        else snprintf(out->vendor, sizeof out->vendor, "implementer 0x%02x", implementer);
    }
    if (!out->model[0] && part) snprintf(out->model, sizeof out->model, "part 0x%03x", part);
}

void ts_devices_detect_cpu(const char *root, ts_cpu_info *out) {
    memset(out, 0, sizeof *out);
#if defined(__x86_64__)
    snprintf(out->arch, sizeof out->arch, "x86_64");
#elif defined(__aarch64__)
    snprintf(out->arch, sizeof out->arch, "aarch64");
#else
    snprintf(out->arch, sizeof out->arch, "other");
#endif
    int from_fake_tree = root && root[0];
    if (from_fake_tree || ts_cpu_identity(out->vendor, sizeof out->vendor, out->model, sizeof out->model) != 0)
        identity_from_cpuinfo(root, out);
    if (!out->vendor[0]) snprintf(out->vendor, sizeof out->vendor, "unknown");
    if (!out->model[0]) snprintf(out->model, sizeof out->model, "unknown");

    long online = sysconf(_SC_NPROCESSORS_ONLN);
    out->cores_online = online > 0 ? (int)online : 1;
    out->cores_usable = out->cores_online;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) out->cores_usable = CPU_COUNT(&set);
#endif
    detect_caches(root, out);
    ts_cpu_features_reload();
    out->features = *ts_cpu_features_get();
}
