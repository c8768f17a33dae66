/* Kernel timeline of a tessera process on the GPU machine, where nsys is missing: a CUDA injection library
 * (CUDA_INJECTION64_PATH) that asks CUPTI for an activity record of every kernel run, graph replays
 * included, and writes start,end,grid,stream,name lines to $KTRACE_OUT (default /tmp/ktrace.csv) at exit.
 * Tracing adds host time between decode steps (each launch is recorded), not time inside a step's chain of
 * kernels. Build on a machine with the CUDA toolkit:
 *   gcc -O2 -shared -fPIC -o libktrace.so scripts/gpu/ktrace.c -I/usr/local/cuda/include -L/usr/local/cuda/lib64 -lcupti
 * Use: CUDA_INJECTION64_PATH=$PWD/libktrace.so tessera bench ...; python3 scripts/gpu/ktrace_sum.py /tmp/ktrace.csv */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

static FILE *trace_out;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *size = 16u << 20;
    *buffer = aligned_alloc(8, *size);
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *record = NULL;
    while (trace_out && cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
        if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)record;
        fprintf(trace_out, "%llu,%llu,%u,%u,%u,%u,%s\n", (unsigned long long)k->start, (unsigned long long)k->end,
                k->gridX, k->gridY, k->gridZ, k->streamId, k->name);
    }
    free(buffer);
}

static void flush_at_exit(void) {
    cuptiActivityFlushAll(1);
    if (trace_out) fclose(trace_out);
    trace_out = NULL;
}

int InitializeInjection(void) {
    const char *path = getenv("KTRACE_OUT");
    trace_out = fopen(path ? path : "/tmp/ktrace.csv", "w");
    if (!trace_out) return 0;
    cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    atexit(flush_at_exit);
    return 1;
}
