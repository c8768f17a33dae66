/* Finds and loads the CUDA module at run time. Every reason it can fail (module not built, no driver,
 * no GPU) comes back as an error message suitable for the accelerator fallback log. */
#ifndef TS_BACKEND_CUDA_LOADER_H
#define TS_BACKEND_CUDA_LOADER_H

#include "backend/cuda_module.h"

/* Path of libtessera_cuda.so: $TESSERA_CUDA_MODULE, next to the executable, then the build directory. */
int ts_cuda_module_path(char *out, size_t cap);
ts_backend *ts_cuda_backend_create(const ts_cuda_options *opt, ts_error *err);

#endif
