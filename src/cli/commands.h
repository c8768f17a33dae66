/* Subcommands of the tessera binary. Each takes argv with argv[0] = the subcommand's name and returns
 * the process exit status (0 success, 1 failure, 2 usage error). */
#ifndef TS_CLI_COMMANDS_H
#define TS_CLI_COMMANDS_H

typedef int (*ts_command_fn)(int argc, char **argv);

typedef struct ts_command {
    const char *name;
    const char *summary;
    ts_command_fn fn;
} ts_command;

int ts_cmd_serve(int argc, char **argv);
int ts_cmd_run(int argc, char **argv);
int ts_cmd_logits(int argc, char **argv);
int ts_cmd_bench(int argc, char **argv);
int ts_cmd_plan(int argc, char **argv);
int ts_cmd_info(int argc, char **argv);
int ts_cmd_tokenize(int argc, char **argv);
int ts_cmd_perplexity(int argc, char **argv);
int ts_cmd_quantize(int argc, char **argv);
int ts_cmd_synth(int argc, char **argv);

#endif
