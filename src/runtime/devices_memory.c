/* Memory available to this process: MemAvailable from /proc/meminfo, bounded by the memory cgroup
 * (v2 memory.max or v1 memory.limit_in_bytes, the smallest along the path to the hierarchy's root),
 * because a container's limit is what gets a process killed long before the machine runs out.
 * The cgroup headroom is limit - usage + inactive file cache (the part the kernel reclaims first). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/devices.h"

int ts_devices_parse_meminfo(const char *text, size_t len, uint64_t *total, uint64_t *available) {
    int have_total = 0, have_available = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && text[end] != '\n') end++;
        char line[256];
        size_t n = end - i < sizeof line - 1 ? end - i : sizeof line - 1;
        memcpy(line, text + i, n);
        line[n] = '\0';
        unsigned long long kb;
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) *total = (uint64_t)kb * 1024, have_total = 1;
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) *available = (uint64_t)kb * 1024, have_available = 1;
        i = end + 1;
    }
    if (!have_total) return -1;
    if (!have_available) *available = *total;
    return 0;
}

/* Joins up to three pieces into buf; -1 (and an empty buf) when the result would not fit. */
static int join_path(char *buf, size_t cap, const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    buf[0] = '\0';
    if (la + lb + lc + 1 > cap) return -1;
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    memcpy(buf + la + lb, c, lc + 1);
    return 0;
}

static int read_small(const char *root, const char *path, char *buf, size_t cap) {
    char full[2048];
    if (join_path(full, sizeof full, root, path, "") != 0) return -1;
    FILE *f = fopen(full, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

/* Reads one number from a cgroup file; "max" (v2) means unlimited and reads as 0. */
static int read_limit(const char *root, const char *path, uint64_t *out) {
    char buf[64];
    if (read_small(root, path, buf, sizeof buf) != 0) return -1;
    if (!strncmp(buf, "max", 3)) {
        *out = 0;
        return 0;
    }
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return -1;
    /* cgroup v1 writes "no limit" as a page-rounded LLONG_MAX */
    *out = v >= (1ull << 62) ? 0 : (uint64_t)v;
    return 0;
}

static uint64_t read_stat_key(const char *root, const char *path, const char *key) {
    char buf[8192];
    if (read_small(root, path, buf, sizeof buf) != 0) return 0;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, key, klen) && line[klen] == ' ') return strtoull(line + klen + 1, NULL, 10);
    }
    return 0;
}

typedef struct {
    char mount[512]; /* where the hierarchy is mounted */
    char root[512];  /* which cgroup the mount shows at its top (non-"/" inside some containers) */
} cgroup_mount;

/* Finds the cgroup2 mount, or the v1 mount that carries the memory controller, in mountinfo. */
static int find_mount(const char *fs_root, int v2, cgroup_mount *m) {
    char path[1024];
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", fs_root);
    FILE *f = fopen(path, "r");
    int found = 0;
    if (f) {
        char line[2048];
        while (!found && fgets(line, sizeof line, f)) {
            char root[512], mount[512], fstype[64], super[512];
            const char *dash = strstr(line, " - ");
            if (!dash || sscanf(line, "%*s %*s %*s %511s %511s", root, mount) != 2) continue;
            if (sscanf(dash + 3, "%63s %*s %511s", fstype, super) < 1) continue;
            if (v2 ? !strcmp(fstype, "cgroup2") : (!strcmp(fstype, "cgroup") && strstr(super, "memory"))) {
                snprintf(m->mount, sizeof m->mount, "%s", mount);
                snprintf(m->root, sizeof m->root, "%s", root);
                found = 1;
            }
        }
        fclose(f);
    }
    if (!found) {
        snprintf(m->mount, sizeof m->mount, v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory");
        snprintf(m->root, sizeof m->root, "/");
    }
    return 0;
}

/* This process's cgroup path in the v2 hierarchy ("0::/path") or the v1 memory hierarchy. */
static int own_cgroup(const char *fs_root, int v2, char *out, size_t cap) {
    char buf[4096];
    if (read_small(fs_root, "/proc/self/cgroup", buf, sizeof buf) != 0) return -1;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = '\0';
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        int match = 0;
        if (v2) {
            match = !strcmp(line, "0") && !*controllers;
        } else {
            char list[256];
            snprintf(list, sizeof list, "%s", controllers);
            for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
                match |= !strcmp(t, "memory");
        }
        if (match) {
            snprintf(out, cap, "%s", path);
            return 0;
        }
    }
    return -1;
}

/* Walks from this process's cgroup up to the mount's top and keeps the smallest limit; usage and the
 * reclaimable cache come from the deepest cgroup that has them. */
static int probe_hierarchy(const char *fs_root, int v2, ts_memory_info *out) {
    char cg[1024];
    if (own_cgroup(fs_root, v2, cg, sizeof cg) != 0) return -1;
    cgroup_mount m;
    find_mount(fs_root, v2, &m);
    const char *rel = cg;
    size_t rlen = strlen(m.root);
    if (strcmp(m.root, "/") != 0 && !strncmp(cg, m.root, rlen) && (cg[rlen] == '/' || !cg[rlen])) rel = cg + rlen;
    const char *limit_name = v2 ? "memory.max" : "memory.limit_in_bytes";
    const char *usage_name = v2 ? "memory.current" : "memory.usage_in_bytes";
    const char *cache_key = v2 ? "inactive_file" : "total_inactive_file";
    char dir[1200];
    if (join_path(dir, sizeof dir, m.mount, strcmp(rel, "/") ? rel : "", "") != 0) return -1;
    int any = 0, have_usage = 0;
    for (;;) {
        char path[1400];
        uint64_t v;
        if (join_path(path, sizeof path, dir, "/", limit_name) == 0 && read_limit(fs_root, path, &v) == 0) {
            any = 1;
            if (v && (!out->cgroup_limit_bytes || v < out->cgroup_limit_bytes)) {
                out->cgroup_limit_bytes = v;
                join_path(out->cgroup_limit_file, sizeof out->cgroup_limit_file, path, "", "");
            }
            if (!have_usage) {
                if (join_path(path, sizeof path, dir, "/", usage_name) == 0 && read_limit(fs_root, path, &v) == 0) {
                    out->cgroup_usage_bytes = v;
                    have_usage = 1;
                    if (join_path(path, sizeof path, dir, "/memory.stat", "") == 0)
                        out->cgroup_reclaimable_bytes = read_stat_key(fs_root, path, cache_key);
                }
            }
        }
        if (strlen(dir) <= strlen(m.mount)) break;
        char *slash = strrchr(dir, '/');
        if (!slash || slash - dir < (ptrdiff_t)strlen(m.mount)) break;
        *slash = '\0';
    }
    return any ? 0 : -1;
}

void ts_devices_detect_memory(const char *fs_root, ts_memory_info *out) {
    memset(out, 0, sizeof *out);
    const char *root = fs_root ? fs_root : "";
    char buf[8192];
    if (read_small(root, "/proc/meminfo", buf, sizeof buf) == 0)
        ts_devices_parse_meminfo(buf, strlen(buf), &out->total_bytes, &out->available_bytes);
    if (probe_hierarchy(root, 1, out) != 0) {
        out->cgroup_limit_bytes = out->cgroup_usage_bytes = out->cgroup_reclaimable_bytes = 0;
        out->cgroup_limit_file[0] = '\0';
        probe_hierarchy(root, 0, out);
    }
    out->usable_bytes = out->available_bytes;
    if (out->cgroup_limit_bytes) {
        uint64_t used = out->cgroup_usage_bytes > out->cgroup_reclaimable_bytes
                            ? out->cgroup_usage_bytes - out->cgroup_reclaimable_bytes
                            : 0;
        uint64_t headroom = out->cgroup_limit_bytes > used ? out->cgroup_limit_bytes - used : 0;
        if (!out->available_bytes || headroom < out->usable_bytes) out->usable_bytes = headroom;
    }
}
