/* Shared by the fuzz targets: the check that a rejected input came with an error message, quiet logging,
 * and an optional trace of each verdict (TESSERA_FUZZ_VERBOSE=1) for looking at what the seeds reach. */
#ifndef TS_FUZZ_COMMON_H
#define TS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "base/error.h"
#include "base/log.h"

static inline int fuzz_verbose(void) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("TESSERA_FUZZ_VERBOSE") != NULL;
    return verbose;
}

/* Warnings about odd but accepted input would flood the fuzzer's output (and slow it down): only errors
 * are logged, unless TESSERA_FUZZ_VERBOSE is set. Called at the start of every input; cheap after the first. */
static inline void fuzz_quiet(void) {
    static int done;
    if (!done) {
        if (!fuzz_verbose()) ts_log_set_level(TS_LOG_ERROR);
        done = 1;
    }
}

/* Every parser returns 0, or -1 with a message saying what is wrong; anything else is a finding. */
static inline void fuzz_check(const char *what, int rc, const ts_error *err) {
    if (rc != 0 && rc != -1) {
        fprintf(stderr, "%s returned %d\n", what, rc);
        abort();
    }
    if (rc != 0 && err->message[0] == '\0') {
        fprintf(stderr, "%s failed without an error message\n", what);
        abort();
    }
    if (fuzz_verbose()) fprintf(stderr, "%s: %s\n", what, rc == 0 ? "ok" : err->message);
}

#endif
