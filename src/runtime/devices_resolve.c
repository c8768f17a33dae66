/* Resolution of requested execution accelerators against detected devices; see devices_resolve.h for
 * the rules. Everything is checked before anything is chosen, so a typo in the last entry of a list is
 * reported even when an earlier entry would have won. */
#include "runtime/devices_resolve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"

static const char *const g_cpu_names[] = {"amx", "avx512", "avx2", "neon", "generic"};
static const char *const g_gpu_names[] = {"cuda", "mps", "metal"};
static const char *const g_cpu_params[] = {"tile_size", "quantization_support", "threads"};
static const char *const g_gpu_params[] = {"precision", "use_unified_memory"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *ts_cpu_isa_name(ts_cpu_isa isa) {
    switch (isa) {
    case TS_ISA_GENERIC: return "generic";
    case TS_ISA_NEON: return "neon";
    case TS_ISA_AVX2: return "avx2";
    case TS_ISA_AVX512: return "avx512";
    case TS_ISA_AMX: return "amx";
    }
    return "?";
}

const char *ts_device_kind_name(ts_device_kind k) {
    switch (k) {
    case TS_DEVICE_CPU: return "cpu";
    case TS_DEVICE_CUDA: return "cuda";
    case TS_DEVICE_METAL: return "metal";
    }
    return "?";
}

const char *ts_precision_name(ts_precision p) {
    switch (p) {
    case TS_PRECISION_FP32: return "fp32";
    case TS_PRECISION_FP16: return "fp16";
    case TS_PRECISION_BF16: return "bf16";
    }
    return "?";
}

static int in_list(const char *name, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, list[i])) return 1;
    return 0;
}

static void join(const char *const *list, int n, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", list[i]);
}

/* ---- CPU availability ---- */

static int cpu_arch_is_x86(const ts_device_info *dev) { return !strcmp(dev->cpu.arch, "x86_64"); }

/* Reason for a missing x86 feature set: hidden, refused by the OS, or absent. */
static int x86_feature(const ts_device_info *dev, uint32_t mask, const char *label, const char *absent, char *reason,
                       size_t cap) {
    const ts_cpu_features *f = &dev->cpu.features;
    if ((f->present & mask) == mask) return 1;
    if (!cpu_arch_is_x86(dev)) {
        snprintf(reason, cap, "%s is an x86-64 feature; this CPU is %s", label, dev->cpu.arch);
    } else if ((f->hidden & mask) && ((f->present | f->hidden) & mask) == mask) {
        snprintf(reason, cap, "%s is hidden by TESSERA_HIDE_FEATURES", label);
    } else {
        snprintf(reason, cap, "%s", absent);
    }
    return 0;
}

int ts_devices_cpu_accelerator_available(const ts_device_info *dev, const char *name, char *reason, size_t cap) {
    const ts_cpu_features *f = &dev->cpu.features;
    const uint32_t amx = TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16;
    reason[0] = '\0';
    if (!strcmp(name, "generic")) return 1;
    if (!strcmp(name, "avx2"))
        return x86_feature(dev, TS_CPU_AVX2, "AVX2", "this CPU has no AVX2 (with FMA and F16C)", reason, cap);
    if (!strcmp(name, "avx512"))
        return x86_feature(dev, TS_CPU_AVX512F, "AVX-512", "this CPU has no AVX-512 (F, BW, DQ, VL)", reason, cap);
    if (!strcmp(name, "amx")) {
        if ((f->present & (amx | TS_CPU_AVX512F)) == (amx | TS_CPU_AVX512F)) return 1;
        if (!cpu_arch_is_x86(dev)) {
            snprintf(reason, cap,
                     "this CPU has no AMX tiles (Intel AMX is x86-64 only; Apple's matrix unit cannot be "
                     "programmed directly)");
        } else if ((f->hidden & (amx | TS_CPU_AVX512F)) && ((f->present | f->hidden) & amx) == amx) {
            snprintf(reason, cap, "AMX is hidden by TESSERA_HIDE_FEATURES");
        } else if ((f->detected & amx) == amx && f->amx_denied_reason[0]) {
            snprintf(reason, cap, "this CPU has AMX tiles but %s", f->amx_denied_reason);
        } else {
            snprintf(reason, cap, "this CPU has no AMX tiles");
        }
        return 0;
    }
    if (!strcmp(name, "neon")) {
        if (f->present & TS_CPU_NEON) return 1;
        if (cpu_arch_is_x86(dev) || strcmp(dev->cpu.arch, "aarch64") != 0)
            snprintf(reason, cap, "NEON is an ARM feature; this CPU is %s", dev->cpu.arch);
        else if (f->hidden & TS_CPU_NEON) snprintf(reason, cap, "NEON is hidden by TESSERA_HIDE_FEATURES");
        else snprintf(reason, cap, "this CPU has no NEON");
        return 0;
    }
    snprintf(reason, cap, "unknown CPU accelerator");
    return 0;
}

ts_cpu_isa ts_devices_best_isa(const ts_device_info *dev) {
    char reason[256];
    if (ts_devices_cpu_accelerator_available(dev, "amx", reason, sizeof reason)) return TS_ISA_AMX;
    if (ts_devices_cpu_accelerator_available(dev, "avx512", reason, sizeof reason)) return TS_ISA_AVX512;
    if (ts_devices_cpu_accelerator_available(dev, "avx2", reason, sizeof reason)) return TS_ISA_AVX2;
    if (ts_devices_cpu_accelerator_available(dev, "neon", reason, sizeof reason)) return TS_ISA_NEON;
    return TS_ISA_GENERIC;
}

static ts_cpu_isa isa_from_name(const char *name) {
    if (!strcmp(name, "amx")) return TS_ISA_AMX;
    if (!strcmp(name, "avx512")) return TS_ISA_AVX512;
    if (!strcmp(name, "avx2")) return TS_ISA_AVX2;
    if (!strcmp(name, "neon")) return TS_ISA_NEON;
    return TS_ISA_GENERIC;
}

/* ---- GPU availability ---- */

static int gpu_available(const ts_device_info *dev, const ts_resolve_request *req, const char *name, char *reason,
                         size_t cap) {
    if (!strcmp(name, "cuda")) {
        if (dev->num_gpus == 0) {
            snprintf(reason, cap, "%s", dev->gpu_status[0] ? dev->gpu_status : "no NVIDIA GPU found");
            return 0;
        }
        for (int i = 0; i < req->num_gpus; i++) {
            if (req->gpus[i] >= dev->num_gpus) {
                snprintf(reason, cap, "instance_group names GPU %d but %d GPU%s visible", req->gpus[i], dev->num_gpus,
                         dev->num_gpus == 1 ? " is" : "s are");
                return 0;
            }
        }
        return 1;
    }
    /* mps and metal */
    if (dev->metal_available) return 1;
    snprintf(reason, cap, "%s", dev->metal_status[0] ? dev->metal_status : "Metal is not available");
    return 0;
}

/* ---- parameters ---- */

static int fail_at(ts_error *err, const ts_resolve_request *req, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_at(ts_error *err, const ts_resolve_request *req, int line, int col, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (req->source && req->source[0] && line > 0) return ts_fail(err, "%s:%d:%d: %s", req->source, line, col, msg);
    return ts_fail(err, "%s", msg);
}

static int parse_int_value(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

typedef struct {
    int tile_size;
    int threads;
    int has_quantization;
    ts_quant_scheme quantization;
    int has_precision;
    ts_precision precision;
    int unified_memory;
} accel_settings;

static int read_settings(const ts_triton_accelerator *a, int gpu, const ts_resolve_request *req, accel_settings *s,
                         ts_error *err) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < a->num_params; i++) {
        const ts_triton_accel_param *p = &a->params[i];
        const char *const *known = gpu ? g_gpu_params : g_cpu_params;
        int nknown = gpu ? COUNT(g_gpu_params) : COUNT(g_cpu_params);
        if (!in_list(p->key, known, nknown)) {
            char list[128];
            join(known, nknown, list, sizeof list);
            return fail_at(err, req, p->line, p->col, "accelerator %s has no parameter \"%s\" (it takes %s)", a->name,
                           p->key, list);
        }
        long v;
        if (!strcmp(p->key, "tile_size")) {
            if (parse_int_value(p->value, 1, 1024, &v) != 0)
                return fail_at(err, req, p->line, p->col,
                               "%s parameter tile_size is \"%s\"; expected a whole number from 1 to 1024", a->name,
                               p->value);
            s->tile_size = (int)v;
        } else if (!strcmp(p->key, "threads")) {
            if (parse_int_value(p->value, 1, 4096, &v) != 0)
                return fail_at(err, req, p->line, p->col,
                               "%s parameter threads is \"%s\"; expected a whole number from 1 to 4096", a->name,
                               p->value);
            s->threads = (int)v;
        } else if (!strcmp(p->key, "quantization_support")) {
            ts_error qerr;
            if (ts_quant_scheme_parse(p->value, &s->quantization, &qerr) != 0)
                return fail_at(err, req, p->line, p->col, "%s parameter quantization_support: %s", a->name,
                               qerr.message);
            s->has_quantization = 1;
        } else if (!strcmp(p->key, "precision")) {
            s->has_precision = 1;
            if (!strcasecmp(p->value, "fp16")) s->precision = TS_PRECISION_FP16;
            else if (!strcasecmp(p->value, "bf16")) s->precision = TS_PRECISION_BF16;
            else if (!strcasecmp(p->value, "fp32")) s->precision = TS_PRECISION_FP32;
            else
                return fail_at(err, req, p->line, p->col,
                               "%s parameter precision is \"%s\"; expected fp16, bf16 or fp32", a->name, p->value);
        } else if (!strcmp(p->key, "use_unified_memory")) {
            int on = ts_parse_switch(p->value);
            if (on < 0)
                return fail_at(err, req, p->line, p->col,
                               "%s parameter use_unified_memory is \"%s\"; expected true or false", a->name, p->value);
            s->unified_memory = on;
        }
    }
    return 0;
}

static int check_names(const ts_resolve_request *req, ts_error *err) {
    char cpu_list[96], gpu_list[96];
    join(g_cpu_names, COUNT(g_cpu_names), cpu_list, sizeof cpu_list);
    join(g_gpu_names, COUNT(g_gpu_names), gpu_list, sizeof gpu_list);
    for (int i = 0; i < req->num_cpu; i++) {
        const ts_triton_accelerator *a = &req->cpu[i];
        if (in_list(a->name, g_gpu_names, COUNT(g_gpu_names)))
            return fail_at(err, req, a->line, a->col,
                           "%s is a GPU accelerator; list it under gpu_execution_accelerator", a->name);
        if (!in_list(a->name, g_cpu_names, COUNT(g_cpu_names)))
            return fail_at(err, req, a->line, a->col, "unknown CPU execution accelerator \"%s\" (tessera knows %s)",
                           a->name, cpu_list);
        accel_settings s;
        if (read_settings(a, 0, req, &s, err) != 0) return -1;
    }
    for (int i = 0; i < req->num_gpu; i++) {
        const ts_triton_accelerator *a = &req->gpu[i];
        if (in_list(a->name, g_cpu_names, COUNT(g_cpu_names)))
            return fail_at(err, req, a->line, a->col,
                           "%s is a CPU accelerator; list it under cpu_execution_accelerator", a->name);
        if (!in_list(a->name, g_gpu_names, COUNT(g_gpu_names)))
            return fail_at(err, req, a->line, a->col, "unknown GPU execution accelerator \"%s\" (tessera knows %s)",
                           a->name, gpu_list);
        accel_settings s;
        if (read_settings(a, 1, req, &s, err) != 0) return -1;
    }
    return 0;
}

/* ---- resolution ---- */

static void add_message(ts_resolution *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_message(ts_resolution *r, const char *fmt, ...) {
    if (r->num_messages == TS_RESOLVE_MAX_MESSAGES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->messages[r->num_messages++], TS_RESOLVE_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

typedef struct {
    const char *name;
    char reason[256];
} passed_over;

int ts_devices_resolve(const ts_device_info *dev, const ts_resolve_request *req, ts_resolution *out, ts_error *err) {
    memset(out, 0, sizeof *out);
    if (req->num_cpu > TS_TRITON_MAX_ACCELERATORS || req->num_gpu > TS_TRITON_MAX_ACCELERATORS)
        return ts_fail(err, "at most %d accelerators per list are supported", TS_TRITON_MAX_ACCELERATORS);
    if (check_names(req, err) != 0) return -1;

    /* GPU: the first available accelerator in the list decides the device. */
    passed_over skipped[TS_TRITON_MAX_ACCELERATORS + 1];
    int num_skipped = 0, gpu_winner = -1;
    const ts_triton_accelerator implicit_cuda = {.name = "cuda"};
    const ts_triton_accelerator *gpu_list = req->gpu;
    int num_gpu = req->num_gpu;
    if (num_gpu == 0 && (req->kind == TS_TRITON_KIND_GPU || (req->kind != TS_TRITON_KIND_CPU && dev->num_gpus > 0))) {
        gpu_list = &implicit_cuda;
        num_gpu = 1;
    }
    if (req->kind == TS_TRITON_KIND_CPU) {
        for (int i = 0; i < num_gpu; i++)
            add_message(out, "%s: not used because instance_group asks for KIND_CPU", gpu_list[i].name);
    } else {
        for (int i = 0; i < num_gpu && gpu_winner < 0; i++) {
            passed_over *s = &skipped[num_skipped];
            if (gpu_available(dev, req, gpu_list[i].name, s->reason, sizeof s->reason)) gpu_winner = i;
            else s->name = gpu_list[i].name, num_skipped++;
        }
        if (gpu_winner < 0 && req->kind == TS_TRITON_KIND_GPU) {
            char reasons[700];
            size_t o = 0;
            reasons[0] = '\0';
            for (int i = 0; i < num_skipped && o < sizeof reasons; i++)
                o += (size_t)snprintf(reasons + o, sizeof reasons - o, "%s%s: %s", i ? "; " : "", skipped[i].name,
                                      skipped[i].reason);
            const int line = req->num_gpu ? req->gpu[0].line : 0, col = req->num_gpu ? req->gpu[0].col : 0;
            return fail_at(err, req, line, col, "instance_group asks for KIND_GPU but no GPU can be used (%s)",
                           reasons);
        }
        for (int i = 0; i < num_skipped; i++) {
            if (gpu_winner >= 0)
                add_message(out, "%s: %s; using %s", skipped[i].name, skipped[i].reason, gpu_list[gpu_winner].name);
            else add_message(out, "%s: %s; falling back to the CPU", skipped[i].name, skipped[i].reason);
        }
    }

    /* CPU: the first available accelerator decides the instruction set, else the best one present. */
    num_skipped = 0;
    int cpu_winner = -1;
    for (int i = 0; i < req->num_cpu && cpu_winner < 0; i++) {
        passed_over *s = &skipped[num_skipped];
        if (ts_devices_cpu_accelerator_available(dev, req->cpu[i].name, s->reason, sizeof s->reason)) cpu_winner = i;
        else s->name = req->cpu[i].name, num_skipped++;
    }
    out->cpu_isa = cpu_winner >= 0 ? isa_from_name(req->cpu[cpu_winner].name) : ts_devices_best_isa(dev);
    if (cpu_winner >= 0) snprintf(out->cpu_accelerator, sizeof out->cpu_accelerator, "%s", req->cpu[cpu_winner].name);
    for (int i = 0; i < num_skipped; i++)
        add_message(out, "%s: %s; using %s", skipped[i].name, skipped[i].reason, ts_cpu_isa_name(out->cpu_isa));

    accel_settings cpu_settings = {0}, gpu_settings = {0};
    const ts_triton_accelerator *cpu_source = cpu_winner >= 0 ? &req->cpu[cpu_winner]
                                              : req->num_cpu  ? &req->cpu[0]
                                                              : NULL;
    if (cpu_source && read_settings(cpu_source, 0, req, &cpu_settings, err) != 0) return -1;
    out->tile_size = cpu_settings.tile_size;
    out->has_quantization = cpu_settings.has_quantization;
    out->quantization = cpu_settings.quantization;
    out->threads = cpu_settings.threads   ? cpu_settings.threads
                   : req->default_threads ? req->default_threads
                                          : dev->cpu.cores_usable;
    if (out->threads > dev->cpu.cores_usable && dev->cpu.cores_usable > 0)
        add_message(out, "threads: %d requested but this process may run on %d core%s; expect oversubscription",
                    out->threads, dev->cpu.cores_usable, dev->cpu.cores_usable == 1 ? "" : "s");

    if (gpu_winner >= 0) {
        const ts_triton_accelerator *g = &gpu_list[gpu_winner];
        if (read_settings(g, 1, req, &gpu_settings, err) != 0) return -1;
        snprintf(out->gpu_accelerator, sizeof out->gpu_accelerator, "%s", g->name);
        out->device = !strcmp(g->name, "cuda") ? TS_DEVICE_CUDA : TS_DEVICE_METAL;
        out->gpu_index = req->num_gpus > 0 ? req->gpus[0] : 0;
        out->unified_memory = gpu_settings.unified_memory;
        if (gpu_settings.has_precision) {
            out->precision = gpu_settings.precision;
        } else {
            /* bf16 keeps fp32's range; GPUs before compute capability 8.0 lack fast bf16 */
            const ts_gpu_info *info =
                out->device == TS_DEVICE_CUDA && out->gpu_index < dev->num_gpus ? &dev->gpus[out->gpu_index] : NULL;
            out->precision = info && info->cc_major > 0 && info->cc_major < 8 ? TS_PRECISION_FP16 : TS_PRECISION_BF16;
        }
    } else {
        out->device = TS_DEVICE_CPU;
        out->precision = TS_PRECISION_FP32;
    }
    return 0;
}

void ts_resolve_request_from_config(const ts_triton_config *cfg, ts_resolve_request *req) {
    memset(req, 0, sizeof *req);
    req->cpu = cfg->cpu_accelerators;
    req->num_cpu = cfg->num_cpu_accelerators;
    req->gpu = cfg->gpu_accelerators;
    req->num_gpu = cfg->num_gpu_accelerators;
    req->kind = ts_triton_config_kind(cfg);
    for (int i = 0; i < cfg->num_groups; i++) {
        if (cfg->groups[i].num_gpus > 0) {
            req->gpus = cfg->groups[i].gpus;
            req->num_gpus = cfg->groups[i].num_gpus;
            break;
        }
    }
    req->default_threads = cfg->threads;
    req->source = cfg->source;
}

const char *ts_resolution_summary(const ts_resolution *r, const ts_device_info *dev, char *buf, size_t cap) {
    if (r->device == TS_DEVICE_CPU) {
        snprintf(buf, cap, "cpu (isa %s, %d thread%s, %s)", ts_cpu_isa_name(r->cpu_isa), r->threads,
                 r->threads == 1 ? "" : "s", ts_precision_name(r->precision));
    } else if (r->device == TS_DEVICE_CUDA) {
        const char *name = dev && r->gpu_index < dev->num_gpus ? dev->gpus[r->gpu_index].name : "GPU";
        snprintf(buf, cap, "cuda:%d %s (%s; cpu isa %s, %d thread%s)", r->gpu_index, name,
                 ts_precision_name(r->precision), ts_cpu_isa_name(r->cpu_isa), r->threads, r->threads == 1 ? "" : "s");
    } else {
        snprintf(buf, cap, "metal (%s%s; cpu isa %s, %d thread%s)", ts_precision_name(r->precision),
                 r->unified_memory ? ", unified memory" : "", ts_cpu_isa_name(r->cpu_isa), r->threads,
                 r->threads == 1 ? "" : "s");
    }
    return buf;
}

void ts_resolution_log(const ts_resolution *r) {
    for (int i = 0; i < r->num_messages; i++) ts_log_warn("accelerator %s", r->messages[i]);
    char summary[256];
    ts_log_info("accelerators resolved: %s", ts_resolution_summary(r, NULL, summary, sizeof summary));
}
