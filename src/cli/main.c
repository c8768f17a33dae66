/* tessera: command-line entry point. Each subcommand lives in its own cmd_*.c file and is listed here. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"

static const ts_command g_commands[] = {
    {"serve", "serve models over HTTP: Triton/KServe v2 and the OpenAI API", ts_cmd_serve},
    {"run", "generate from a prompt (ids or text)", ts_cmd_run},
    {"logits", "write the logits of a token sequence to a file", ts_cmd_logits},
    {"bench", "time prefill and decode: per-run table and median", ts_cmd_bench},
    {"plan", "print the memory plan of a model without loading it", ts_cmd_plan},
    {"info", "print the detected devices and how accelerator names resolve", ts_cmd_info},
    {"tokenize", "print the token ids of a text", ts_cmd_tokenize},
    {"perplexity", "perplexity of a model on a text file", ts_cmd_perplexity},
    {"quantize", "convert a model to a GGUF file of the given types", ts_cmd_quantize},
    {"synth", "write random weights of a real model's shape (benchmarks)", ts_cmd_synth},
};

static void usage(void) {
    fprintf(stderr, "usage: tessera <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(stderr, "  %-12s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(stderr, "\n'tessera <command> --help' describes a command's options.\n");
}

/* Weights are memory-mapped; if a model file is truncated while in use, reading the lost pages raises
 * SIGBUS. The engine notices in-place changes and stops first, but in the moment between, end with a
 * message that says what happened instead of a core dump. */
static void on_sigbus(int sig) {
    static const char msg[] = "tessera: a memory-mapped model file was truncated while in use; stopping\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    (void)sig;
    _exit(70);
}

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigaction(SIGBUS, &sa, NULL);
    /* a write past a file size limit fails with EFBIG and is reported, instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (!strcmp(argv[1], g_commands[i].name)) return g_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tessera: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
