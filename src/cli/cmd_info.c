/* tessera info: what this machine offers (CPU, caches, ISA features, memory available to us, GPUs,
 * Metal) and what each accelerator name, or a config.pbtxt's accelerator lists, resolves to here. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "format/model_repo_config.h"
#include "runtime/devices.h"
#include "runtime/devices_resolve.h"

static const ts_opt_spec g_specs[] = {
    {"config", 1, "a config.pbtxt whose execution accelerators to resolve"},
    {"json", 0, "print as JSON"},
};
#define NUM_SPECS ((int)(sizeof g_specs / sizeof g_specs[0]))
static const char g_usage[] = "tessera info [--config config.pbtxt] [--json]";

static const char *const g_cpu_names[] = {"amx", "avx512", "avx2", "neon", "generic"};
static const char *const g_gpu_names[] = {"cuda", "mps", "metal"};

static void feature_list(uint32_t mask, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = '\0';
    for (int bit = 0; bit < 32 && o < cap; bit++)
        if (mask & (1u << bit))
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? " " : "",
                                  ts_cpu_feature_name((ts_cpu_feature)(1u << bit)));
    if (!buf[0]) snprintf(buf, cap, "(none)");
}

/* Resolves one accelerator name alone, as if a configuration listed only it. */
static int resolve_one(const ts_device_info *dev, const char *name, int gpu, ts_resolution *r, ts_error *err) {
    ts_triton_accelerator a;
    memset(&a, 0, sizeof a);
    snprintf(a.name, sizeof a.name, "%s", name);
    ts_resolve_request req = {.kind = TS_TRITON_KIND_AUTO};
    if (gpu) req.gpu = &a, req.num_gpu = 1;
    else req.cpu = &a, req.num_cpu = 1;
    return ts_devices_resolve(dev, &req, r, err);
}

static json_t *resolution_json(const ts_resolution *r, const ts_device_info *dev) {
    char summary[256];
    json_t *j = json_object();
    json_object_set_new(j, "device", json_string(ts_device_kind_name(r->device)));
    if (r->device == TS_DEVICE_CUDA) json_object_set_new(j, "gpu_index", json_integer(r->gpu_index));
    json_object_set_new(j, "cpu_isa", json_string(ts_cpu_isa_name(r->cpu_isa)));
    json_object_set_new(j, "threads", json_integer(r->threads));
    json_object_set_new(j, "precision", json_string(ts_precision_name(r->precision)));
    json_object_set_new(j, "unified_memory", json_boolean(r->unified_memory));
    if (r->tile_size) json_object_set_new(j, "tile_size", json_integer(r->tile_size));
    if (r->has_quantization) {
        char q[32];
        json_object_set_new(j, "quantization", json_string(ts_quant_scheme_name(&r->quantization, q, sizeof q)));
    }
    json_t *msgs = json_array();
    for (int i = 0; i < r->num_messages; i++) json_array_append_new(msgs, json_string(r->messages[i]));
    json_object_set_new(j, "fallbacks", msgs);
    json_object_set_new(j, "summary", json_string(ts_resolution_summary(r, dev, summary, sizeof summary)));
    return j;
}

static json_t *devices_json(const ts_device_info *dev) {
    char list[512];
    json_t *root = json_object(), *cpu = json_object(), *mem = json_object(), *gpus = json_array();
    json_object_set_new(cpu, "arch", json_string(dev->cpu.arch));
    json_object_set_new(cpu, "vendor", json_string(dev->cpu.vendor));
    json_object_set_new(cpu, "model", json_string(dev->cpu.model));
    json_object_set_new(cpu, "cores_online", json_integer(dev->cpu.cores_online));
    json_object_set_new(cpu, "cores_usable", json_integer(dev->cpu.cores_usable));
    json_object_set_new(cpu, "l1d_bytes", json_integer((json_int_t)dev->cpu.l1d_bytes));
    json_object_set_new(cpu, "l2_bytes", json_integer((json_int_t)dev->cpu.l2_bytes));
    json_object_set_new(cpu, "l3_bytes", json_integer((json_int_t)dev->cpu.l3_bytes));
    feature_list(dev->cpu.features.present, list, sizeof list);
    json_object_set_new(cpu, "features", json_string(list));
    feature_list(dev->cpu.features.hidden, list, sizeof list);
    json_object_set_new(cpu, "hidden_features", json_string(list));
    if (dev->cpu.features.amx_denied_reason[0])
        json_object_set_new(cpu, "amx_denied", json_string(dev->cpu.features.amx_denied_reason));
    json_object_set_new(mem, "total_bytes", json_integer((json_int_t)dev->memory.total_bytes));
    json_object_set_new(mem, "available_bytes", json_integer((json_int_t)dev->memory.available_bytes));
    json_object_set_new(mem, "cgroup_limit_bytes", json_integer((json_int_t)dev->memory.cgroup_limit_bytes));
    json_object_set_new(mem, "cgroup_usage_bytes", json_integer((json_int_t)dev->memory.cgroup_usage_bytes));
    json_object_set_new(mem, "usable_bytes", json_integer((json_int_t)dev->memory.usable_bytes));
    for (int i = 0; i < dev->num_gpus; i++) {
        const ts_gpu_info *g = &dev->gpus[i];
        json_t *gj = json_object();
        json_object_set_new(gj, "index", json_integer(g->index));
        json_object_set_new(gj, "name", json_string(g->name));
        json_object_set_new(gj, "total_bytes", json_integer((json_int_t)g->total_bytes));
        json_object_set_new(gj, "free_bytes", json_integer((json_int_t)g->free_bytes));
        json_object_set_new(gj, "utilization_gpu", json_integer(g->utilization_gpu));
        json_object_set_new(gj, "utilization_memory", json_integer(g->utilization_memory));
        char cc[16];
        snprintf(cc, sizeof cc, "%d.%d", g->cc_major, g->cc_minor);
        json_object_set_new(gj, "compute_capability", json_string(cc));
        json_array_append_new(gpus, gj);
    }
    json_object_set_new(root, "cpu", cpu);
    json_object_set_new(root, "memory", mem);
    json_object_set_new(root, "gpus", gpus);
    if (dev->num_gpus == 0) json_object_set_new(root, "gpu_status", json_string(dev->gpu_status));
    json_object_set_new(root, "metal", json_string(dev->metal_available ? "available" : dev->metal_status));
    return root;
}

static void print_devices(const ts_device_info *dev) {
    char a[32], b[32], c[32], list[512];
    printf("cpu         %s %s (%s)\n", dev->cpu.vendor, dev->cpu.model, dev->cpu.arch);
    printf("cores       %d online, %d usable by this process\n", dev->cpu.cores_online, dev->cpu.cores_usable);
    printf("caches      L1d %s, L2 %s, L3 %s\n", ts_format_bytes(dev->cpu.l1d_bytes, a, sizeof a),
           ts_format_bytes(dev->cpu.l2_bytes, b, sizeof b), ts_format_bytes(dev->cpu.l3_bytes, c, sizeof c));
    feature_list(dev->cpu.features.present, list, sizeof list);
    printf("features    %s\n", list);
    if (dev->cpu.features.hidden) {
        feature_list(dev->cpu.features.hidden, list, sizeof list);
        printf("hidden      %s (TESSERA_HIDE_FEATURES)\n", list);
    }
    if (dev->cpu.features.amx_denied_reason[0]) printf("amx         %s\n", dev->cpu.features.amx_denied_reason);
    printf("memory      %s total, %s available", ts_format_bytes(dev->memory.total_bytes, a, sizeof a),
           ts_format_bytes(dev->memory.available_bytes, b, sizeof b));
    if (dev->memory.cgroup_limit_bytes)
        printf("; cgroup limit %s (%s), %s used", ts_format_bytes(dev->memory.cgroup_limit_bytes, c, sizeof c),
               dev->memory.cgroup_limit_file, ts_format_bytes(dev->memory.cgroup_usage_bytes, a, sizeof a));
    else printf("; no cgroup limit");
    printf("; usable %s\n", ts_format_bytes(dev->memory.usable_bytes, a, sizeof a));
    if (dev->num_gpus == 0) printf("gpus        none: %s\n", dev->gpu_status);
    for (int i = 0; i < dev->num_gpus; i++) {
        const ts_gpu_info *g = &dev->gpus[i];
        printf("%-11s cuda:%d %s, %s total, %s free", i ? "" : "gpus", g->index, g->name,
               ts_format_bytes(g->total_bytes, a, sizeof a), ts_format_bytes(g->free_bytes, b, sizeof b));
        if (g->utilization_gpu >= 0) printf(", %d%% busy", g->utilization_gpu);
        if (g->cc_major) printf(", compute capability %d.%d", g->cc_major, g->cc_minor);
        printf("\n");
    }
    if (dev->nvidia_driver[0]) printf("driver      NVIDIA %s\n", dev->nvidia_driver);
    printf("metal       %s\n", dev->metal_available ? "available" : dev->metal_status);
}

int ts_cmd_info(int argc, char **argv) {
    ts_args a;
    if (ts_args_parse(&a, g_specs, NUM_SPECS, argc, argv, g_usage) != 0) return 2;
    ts_error err = {{0}};
    ts_device_info *dev = calloc(1, sizeof *dev);
    ts_triton_config *cfg = NULL;
    int status = 1, json = ts_args_has(&a, "json");
    json_t *root = NULL, *names = NULL;
    if (!dev) return 1;
    ts_devices_detect(dev, &err);
    if (json) {
        root = devices_json(dev);
        names = json_object();
    } else {
        print_devices(dev);
        printf("\naccelerators, each listed alone (what it resolves to here)\n");
    }
    for (int gpu = 0; gpu < 2; gpu++) {
        const char *const *list = gpu ? g_gpu_names : g_cpu_names;
        int n = gpu ? 3 : 5;
        for (int i = 0; i < n; i++) {
            ts_resolution r;
            if (resolve_one(dev, list[i], gpu, &r, &err) != 0) {
                fprintf(stderr, "tessera info: %s\n", err.message);
                goto done;
            }
            const char *to =
                gpu ? (r.device == TS_DEVICE_CPU ? "cpu" : ts_device_kind_name(r.device)) : ts_cpu_isa_name(r.cpu_isa);
            if (json) {
                json_object_set_new(names, list[i], resolution_json(&r, dev));
            } else {
                printf("  %s %-8s -> %-8s%s%s\n", gpu ? "gpu" : "cpu", list[i], to, r.num_messages ? " " : "",
                       r.num_messages ? r.messages[0] : "");
            }
        }
    }
    if (json) json_object_set_new(root, "accelerators", names), names = NULL;

    const char *config = ts_args_get(&a, "config");
    if (config) {
        cfg = calloc(1, sizeof *cfg);
        ts_resolution r;
        ts_resolve_request req;
        if (!cfg || ts_triton_config_load(config, cfg, &err) != 0) {
            fprintf(stderr, "tessera info: %s\n", cfg ? err.message : "out of memory");
            goto done;
        }
        ts_resolve_request_from_config(cfg, &req);
        if (ts_devices_resolve(dev, &req, &r, &err) != 0) {
            fprintf(stderr, "tessera info: %s\n", err.message);
            goto done;
        }
        if (json) {
            json_object_set_new(root, "config", resolution_json(&r, dev));
        } else {
            char summary[256];
            printf("\n%s resolves to %s\n", config, ts_resolution_summary(&r, dev, summary, sizeof summary));
            for (int i = 0; i < r.num_messages; i++) printf("  %s\n", r.messages[i]);
        }
    }
    if (json) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) printf("%s\n", text);
        free(text);
    }
    status = 0;
done:
    json_decref(root);
    json_decref(names);
    free(cfg);
    free(dev);
    return status;
}
