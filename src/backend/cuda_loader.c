#include "backend/cuda_loader.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/files.h"
#include "base/log.h"

static void log_bridge(int level, const char *message) { ts_log((ts_log_level)level, "%s", message); }

int ts_cuda_module_path(char *out, size_t cap) {
    const char *env = getenv("TESSERA_CUDA_MODULE");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return ts_file_exists(out) ? 0 : -1;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, cap, "%s/libtessera_cuda.so", exe);
            if (ts_file_exists(out)) return 0;
        }
    }
    snprintf(out, cap, "%s/libtessera_cuda.so", TESSERA_CUDA_MODULE_DIR);
    return ts_file_exists(out) ? 0 : -1;
}

ts_backend *ts_cuda_backend_create(const ts_cuda_options *opt, ts_error *err) {
    char path[PATH_MAX];
    if (ts_cuda_module_path(path, sizeof path) != 0) {
        ts_fail(err, "the CUDA module (libtessera_cuda.so) was not built or is not installed next to tessera");
        return NULL;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        ts_fail(err, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    ts_cuda_create_fn create = (ts_cuda_create_fn)dlsym(handle, TS_CUDA_CREATE_SYMBOL);
    if (!create) {
        ts_fail(err, "%s has no %s", path, TS_CUDA_CREATE_SYMBOL);
        dlclose(handle);
        return NULL;
    }
    ts_cuda_options o = *opt;
    o.abi = TS_CUDA_MODULE_ABI;
    if (!o.log) o.log = log_bridge;
    /* The module stays loaded for the life of the process: backends it made may outlive this call. */
    return create(&o, err);
}
