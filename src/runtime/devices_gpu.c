/* GPUs for runtime/devices. NVIDIA GPUs are found through NVML, opened with dlopen at run time so that
 * neither building nor running tessera needs CUDA; a machine without the driver simply reports no
 * GPU and why. The NVML declarations below are the few this file calls, as the NVML API defines them.
 * Metal exists only on macOS; tessera has no Metal backend yet, which the status says. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/devices.h"

typedef int nvml_return;
typedef struct nvml_device_opaque *nvml_device;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;
typedef struct {
    unsigned int gpu, memory;
} nvml_utilization;

typedef struct {
    void *lib;
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*count)(unsigned int *);
    nvml_return (*handle)(unsigned int, nvml_device *);
    nvml_return (*name)(nvml_device, char *, unsigned int);
    nvml_return (*memory)(nvml_device, nvml_memory *);
    nvml_return (*utilization)(nvml_device, nvml_utilization *);
    nvml_return (*uuid)(nvml_device, char *, unsigned int);
    nvml_return (*compute_capability)(nvml_device, int *, int *);
    nvml_return (*driver_version)(char *, unsigned int);
    const char *(*error_string)(nvml_return);
} nvml_api;

/* dlsym returns an object pointer; POSIX guarantees it converts to a function pointer. */
static void *sym(void *lib, const char *a, const char *b) {
    void *p = dlsym(lib, a);
    if (!p && b) p = dlsym(lib, b);
    return p;
}

#define BIND(field, a, b) memcpy(&api->field, &(void *){sym(api->lib, a, b)}, sizeof(void *))

static int bind_nvml(nvml_api *api) {
    BIND(init, "nvmlInit_v2", "nvmlInit");
    BIND(shutdown, "nvmlShutdown", NULL);
    BIND(count, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    BIND(handle, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    BIND(name, "nvmlDeviceGetName", NULL);
    BIND(memory, "nvmlDeviceGetMemoryInfo", NULL);
    BIND(utilization, "nvmlDeviceGetUtilizationRates", NULL);
    BIND(uuid, "nvmlDeviceGetUUID", NULL);
    BIND(compute_capability, "nvmlDeviceGetCudaComputeCapability", NULL);
    BIND(driver_version, "nvmlSystemGetDriverVersion", NULL);
    BIND(error_string, "nvmlErrorString", NULL);
    return api->init && api->shutdown && api->count && api->handle && api->name && api->memory ? 0 : -1;
}

static int hidden_by_env(const char *const *names, int n) {
    const char *env = getenv("TESSERA_HIDE_FEATURES");
    if (!env || !*env) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        for (int i = 0; i < n; i++)
            if (!strcasecmp(tok, names[i])) return 1;
    return 0;
}

int ts_devices_hide_cuda(void) {
    static const char *const names[] = {"cuda", "nvidia", "gpu"};
    return hidden_by_env(names, 3);
}

int ts_devices_hide_metal(void) {
    static const char *const names[] = {"metal", "mps", "gpu"};
    return hidden_by_env(names, 3);
}

/* CUDA numbers only the devices in CUDA_VISIBLE_DEVICES (indices or GPU-UUID prefixes), in that
 * order; NVML sees them all. Returns the NVML index of CUDA device `cuda_index`, or -1. */
static int visible_device(const nvml_api *api, unsigned nvml_count, int cuda_index) {
    const char *env = getenv("CUDA_VISIBLE_DEVICES");
    if (!env) return cuda_index < (int)nvml_count ? cuda_index : -1;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    int position = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), position++) {
        while (*tok == ' ') tok++;
        int nvml_index = -1;
        if (!strncmp(tok, "GPU-", 4) || !strncmp(tok, "MIG-", 4)) {
            for (unsigned i = 0; api->uuid && i < nvml_count && nvml_index < 0; i++) {
                nvml_device d;
                char uuid[96];
                if (api->handle(i, &d) == 0 && api->uuid(d, uuid, sizeof uuid) == 0 && !strncmp(uuid, tok, strlen(tok)))
                    nvml_index = (int)i;
            }
        } else {
            char *end = NULL;
            long v = strtol(tok, &end, 10);
            if (end != tok && *end == '\0' && v >= 0 && v < (long)nvml_count) nvml_index = (int)v;
        }
        if (nvml_index < 0) return -1; /* CUDA stops at the first invalid entry */
        if (position == cuda_index) return nvml_index;
    }
    return -1;
}

static void detect_nvidia(const char *library, ts_device_info *out) {
    if (ts_devices_hide_cuda()) {
        out->gpus_hidden = 1;
        snprintf(out->gpu_status, sizeof out->gpu_status, "NVIDIA GPUs are hidden by TESSERA_HIDE_FEATURES");
        return;
    }
#if defined(__APPLE__)
    (void)library;
    snprintf(out->gpu_status, sizeof out->gpu_status, "CUDA is not available on macOS");
#else
    if (!library) library = getenv("TESSERA_NVML_LIBRARY");
    if (!library || !*library) library = "libnvidia-ml.so.1";
    nvml_api api;
    memset(&api, 0, sizeof api);
    api.lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!api.lib) {
        snprintf(out->gpu_status, sizeof out->gpu_status, "no NVIDIA GPU found (%s not loadable)", library);
        return;
    }
    if (bind_nvml(&api) != 0) {
        snprintf(out->gpu_status, sizeof out->gpu_status,
                 "no NVIDIA GPU found (%s lacks the NVML functions tessera calls)", library);
        dlclose(api.lib);
        return;
    }
    nvml_return rc = api.init();
    if (rc != 0) {
        snprintf(out->gpu_status, sizeof out->gpu_status, "no NVIDIA GPU found (NVML initialisation failed: %s)",
                 api.error_string ? api.error_string(rc) : "unknown error");
        dlclose(api.lib);
        return;
    }
    if (api.driver_version) api.driver_version(out->nvidia_driver, sizeof out->nvidia_driver);
    unsigned count = 0;
    if (api.count(&count) != 0) count = 0;
    for (int cuda_index = 0; out->num_gpus < TS_DEVICES_MAX_GPUS; cuda_index++) {
        int idx = visible_device(&api, count, cuda_index);
        if (idx < 0) break;
        nvml_device d;
        if (api.handle((unsigned)idx, &d) != 0) continue;
        ts_gpu_info *g = &out->gpus[out->num_gpus++];
        memset(g, 0, sizeof *g);
        g->index = cuda_index;
        if (api.name(d, g->name, sizeof g->name) != 0) snprintf(g->name, sizeof g->name, "NVIDIA GPU %d", idx);
        nvml_memory mem;
        if (api.memory(d, &mem) == 0) {
            g->total_bytes = mem.total;
            g->free_bytes = mem.free;
        }
        nvml_utilization u;
        g->utilization_gpu = g->utilization_memory = -1;
        if (api.utilization && api.utilization(d, &u) == 0) {
            g->utilization_gpu = (int)u.gpu;
            g->utilization_memory = (int)u.memory;
        }
        if (api.compute_capability) api.compute_capability(d, &g->cc_major, &g->cc_minor);
    }
    if (out->num_gpus == 0)
        snprintf(out->gpu_status, sizeof out->gpu_status, "no NVIDIA GPU found (NVML reports %u device%s%s)", count,
                 count == 1 ? "" : "s", getenv("CUDA_VISIBLE_DEVICES") ? ", none of them in CUDA_VISIBLE_DEVICES" : "");
    api.shutdown();
    dlclose(api.lib);
#endif
}

static void detect_metal(ts_device_info *out) {
    out->metal_available = 0;
    if (ts_devices_hide_metal()) {
        snprintf(out->metal_status, sizeof out->metal_status, "Metal is hidden by TESSERA_HIDE_FEATURES");
        return;
    }
#if defined(__APPLE__)
    snprintf(out->metal_status, sizeof out->metal_status, "this build of tessera has no Metal backend yet");
#elif defined(__linux__)
    snprintf(out->metal_status, sizeof out->metal_status, "Metal is not available on Linux");
#else
    snprintf(out->metal_status, sizeof out->metal_status, "Metal is only available on macOS");
#endif
}

void ts_devices_detect_gpus(const char *nvml_library, ts_device_info *out) {
    out->num_gpus = 0;
    out->gpus_hidden = 0;
    out->gpu_status[0] = '\0';
    out->nvidia_driver[0] = '\0';
    detect_nvidia(nvml_library, out);
    detect_metal(out);
}
