#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_args_usage(const ts_opt_spec *specs, int num_specs, const char *usage) {
    fprintf(stderr, "usage: %s\n\noptions:\n", usage);
    for (int i = 0; i < num_specs; i++)
        fprintf(stderr, "  --%-18s %s\n", specs[i].name, specs[i].help);
}

int ts_args_parse(ts_args *a, const ts_opt_spec *specs, int num_specs, int argc, char **argv, const char *usage) {
    memset(a, 0, sizeof *a);
    a->specs = specs;
    a->num_specs = num_specs;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            ts_args_usage(specs, num_specs, usage);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (a->num_positional == 8) {
                fprintf(stderr, "tessera: too many arguments\n");
                return 2;
            }
            a->positional[a->num_positional++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int found = -1;
        for (int s = 0; s < num_specs; s++)
            if (strlen(specs[s].name) == len && !strncmp(specs[s].name, name, len)) found = s;
        if (found < 0) {
            fprintf(stderr, "tessera: unknown option '%s'\n", arg);
            ts_args_usage(specs, num_specs, usage);
            return 2;
        }
        a->present[found] = 1;
        if (!specs[found].takes_value) {
            if (eq) {
                fprintf(stderr, "tessera: option '--%s' takes no value\n", specs[found].name);
                return 2;
            }
            continue;
        }
        if (eq) {
            a->values[found] = eq + 1;
        } else if (i + 1 < argc) {
            a->values[found] = argv[++i];
        } else {
            fprintf(stderr, "tessera: option '--%s' needs a value\n", specs[found].name);
            return 2;
        }
    }
    return 0;
}

static int index_of(const ts_args *a, const char *name) {
    for (int s = 0; s < a->num_specs; s++)
        if (!strcmp(a->specs[s].name, name)) return s;
    return -1;
}

const char *ts_args_get(const ts_args *a, const char *name) {
    int i = index_of(a, name);
    return i >= 0 ? a->values[i] : NULL;
}

int ts_args_has(const ts_args *a, const char *name) {
    int i = index_of(a, name);
    return i >= 0 && a->present[i];
}

int ts_args_int(const ts_args *a, const char *name, long long def, long long lo, long long hi, long long *out) {
    const char *v = ts_args_get(a, name);
    *out = def;
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "tessera: --%s expects an integer from %lld to %lld, got '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int ts_args_double(const ts_args *a, const char *name, double def, double lo, double hi, double *out) {
    const char *v = ts_args_get(a, name);
    *out = def;
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || !*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "tessera: --%s expects a number from %g to %g, got '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int ts_parse_id_list(const char *s, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    int cap = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff) {
            free(*ids);
            *ids = NULL;
            return -1;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            int *ni = realloc(*ids, (size_t)cap * sizeof(int));
            if (!ni) {
                free(*ids);
                *ids = NULL;
                return -1;
            }
            *ids = ni;
        }
        (*ids)[(*n)++] = (int)v;
        p = end;
        if (*p && *p != ' ' && *p != ',' && *p != '\t' && *p != '\n') {
            free(*ids);
            *ids = NULL;
            return -1;
        }
    }
    return 0;
}
