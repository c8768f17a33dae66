/* tessera bench: per-run inference time, prefill and decode tokens/s, memory and device, then the median,
 * with the device's measured bandwidth and matrix rate as the reference. */
#include <stdio.h>

#include "cli/cli_model.h"
#include "cli/commands.h"
#include "tools/bench.h"

static const ts_opt_spec g_specs[] = {
    TS_CLI_MODEL_OPTIONS,
    {"prompt-tokens", 1, "prompt length of each run (default 128)"},
    {"gen-tokens", 1, "tokens generated in each run (default 64)"},
    {"runs", 1, "timed runs after one warm-up (default 5)"},
    {"batch", 1, "sequences prefilled then decoded together (default 1)"},
    {"step-tokens", 1, "largest forward step in tokens (default 512)"},
    {"no-roofline", 0, "skip measuring the device's bandwidth and matrix rate"},
    {"temperature", 1, "decode by drawing tokens at this temperature (default 0: greedy)"},
    {"top-k", 1, "with --temperature: draw among the k most likely tokens (default 0: off)"},
    {"top-p", 1, "with --temperature: draw within this much probability (default 1: off)"},
    {"host-sampling", 0, "with --temperature: draw on the host even where the device can"},
    {"json", 0, "print one JSON object instead of the table"},
};

int ts_cmd_bench(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera bench (--model PATH | --synth CONFIG.json) [--quant Q] [--prompt-tokens 128 --gen-tokens 64 --runs 5] [--json]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    long long p, g, runs, batch, step, top_k;
    double temperature, top_p;
    if (ts_args_double(&a, "temperature", 0.0, 0.0, 100.0, &temperature) ||
        ts_args_int(&a, "top-k", 0, 0, 1 << 24, &top_k) || ts_args_double(&a, "top-p", 1.0, 0.0, 1.0, &top_p) ||
        ts_args_int(&a, "prompt-tokens", 128, 1, 1 << 20, &p) || ts_args_int(&a, "gen-tokens", 64, 0, 1 << 20, &g) ||
        ts_args_int(&a, "runs", 5, 1, 64, &runs) || ts_args_int(&a, "batch", 1, 1, 4096, &batch) ||
        ts_args_int(&a, "step-tokens", 512, 1, 8192, &step))
        return 2;
    if (batch > step) step = batch;
    ts_cli_model cm;
    int rc = ts_cli_model_open(&a, (int)step, &cm);
    if (rc != 0) return rc;
    ts_bench_options o = {(int)p, (int)g, (int)runs, (int)batch, !ts_args_has(&a, "no-roofline"), 1,
                          (float)temperature, (int)top_k, (float)top_p, ts_args_has(&a, "host-sampling")};
    ts_bench_result r;
    ts_error err = {{0}};
    if (ts_bench_run_all(cm.model, &o, &r, &err) != 0) {
        fprintf(stderr, "tessera: bench: %s\n", err.message);
        ts_cli_model_close(&cm);
        return 1;
    }
    ts_bench_print(&r, &o, cm.model, ts_args_has(&a, "json"));
    ts_cli_model_close(&cm);
    return 0;
}
