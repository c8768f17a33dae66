/* A small command-line option reader: "--name value", "--name=value" and boolean "--flag". Unknown
 * options are reported, so typos never pass silently. */
#ifndef TS_CLI_ARGS_H
#define TS_CLI_ARGS_H

typedef struct ts_opt_spec {
    const char *name;  /* without the leading dashes */
    int takes_value;
    const char *help;
} ts_opt_spec;

typedef struct ts_args {
    const ts_opt_spec *specs;
    int num_specs;
    const char *values[64];
    int present[64];
    const char *positional[8];
    int num_positional;
} ts_args;

/* Returns 0, or prints the problem and the usage to stderr and returns 2. */
int ts_args_parse(ts_args *a, const ts_opt_spec *specs, int num_specs, int argc, char **argv, const char *usage);
const char *ts_args_get(const ts_args *a, const char *name);
int ts_args_has(const ts_args *a, const char *name);
/* Integer/float values with range checks; print an error and return -1 when malformed. */
int ts_args_int(const ts_args *a, const char *name, long long def, long long lo, long long hi, long long *out);
int ts_args_double(const ts_args *a, const char *name, double def, double lo, double hi, double *out);
void ts_args_usage(const ts_opt_spec *specs, int num_specs, const char *usage);
/* Parses "1,2,3" or "1 2 3" into a heap array. */
int ts_parse_id_list(const char *s, int **ids, int *n);

#endif
