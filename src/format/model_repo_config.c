/* config.pbtxt -> ts_triton_config: schema check with textproto, then extraction of the honoured
 * fields with Triton's own consistency rules where tessera depends on them. */
#include "format/model_repo_config.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/files.h"
#include "format/model_repo_schema.h"
#include "format/textproto.h"

#define CONFIG_MAX_BYTES (4u << 20)

typedef struct extract_ctx {
    const ts_tp_doc *doc;
    ts_triton_config *cfg;
    ts_error *err;
} extract_ctx;

static int at_fail(const extract_ctx *x, const ts_tp_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int at_fail(const extract_ctx *x, const ts_tp_node *n, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ts_fail(x->err, "%s:%d:%d: %s", ts_tp_source(x->doc), n->value_line, n->value_col, msg);
}

static int get_string(const extract_ctx *x, const ts_tp_node *msg, const char *field, char *buf, size_t cap) {
    const ts_tp_node *v = ts_tp_get(msg, field);
    buf[0] = '\0';
    return v ? ts_tp_string(x->doc, v, buf, cap, x->err) : 0;
}

static int get_int(const extract_ctx *x, const ts_tp_node *msg, const char *field, int64_t lo, int64_t hi,
                   int64_t *out) {
    const ts_tp_node *v = ts_tp_get(msg, field);
    return v ? ts_tp_int(x->doc, v, lo, hi, out, x->err) : 0;
}

static int get_bool(const extract_ctx *x, const ts_tp_node *msg, const char *field, int *out) {
    const ts_tp_node *v = ts_tp_get(msg, field);
    return v ? ts_tp_bool(x->doc, v, out, x->err) : 0;
}

/* ---- inputs and outputs ---- */

typedef struct {
    extract_ctx *x;
    ts_triton_tensor *tensors;
    int *count;
    const char *what;
} tensor_ctx;

static int read_dim(const ts_tp_node *v, void *p) {
    void **pair = p;
    extract_ctx *x = pair[0];
    ts_triton_tensor *t = pair[1];
    if (t->num_dims == TS_TRITON_MAX_DIMS) return at_fail(x, v, "at most %d dims are supported", TS_TRITON_MAX_DIMS);
    int64_t d;
    if (ts_tp_int(x->doc, v, -1, INT64_MAX, &d, x->err) != 0) return -1;
    t->dims[t->num_dims++] = d;
    return 0;
}

static int read_tensor(const ts_tp_node *v, void *p) {
    tensor_ctx *tc = p;
    extract_ctx *x = tc->x;
    if (*tc->count == TS_TRITON_MAX_TENSORS)
        return at_fail(x, v, "at most %d %ss are supported", TS_TRITON_MAX_TENSORS, tc->what);
    ts_triton_tensor *t = &tc->tensors[(*tc->count)++];
    memset(t, 0, sizeof *t);
    t->line = v->value_line;
    t->col = v->value_col;
    if (get_string(x, v, "name", t->name, sizeof t->name) != 0) return -1;
    if (!t->name[0]) return at_fail(x, v, "every %s needs a name", tc->what);
    const ts_tp_node *dt = ts_tp_get(v, "data_type");
    if (dt && ts_tp_enum(x->doc, dt, &ts_triton_data_type_enum, &t->data_type, x->err) != 0) return -1;
    if (get_bool(x, v, "optional", &t->optional) != 0) return -1;
    void *pair[2] = {x, t};
    return ts_tp_each(v, "dims", read_dim, pair);
}

static const ts_triton_tensor *find_tensor(const ts_triton_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* Triton's LLM convention: the prompt arrives as text_input and the text leaves as text_output, both
 * TYPE_STRING. Other inputs (stream, sampling_parameters, max_tokens ...) may sit beside them. */
static int check_llm_tensors(extract_ctx *x) {
    ts_triton_config *c = x->cfg;
    if (c->num_inputs > 0) {
        const ts_triton_tensor *in = find_tensor(c->inputs, c->num_inputs, "text_input");
        if (!in)
            return ts_fail(x->err,
                           "%s:%d:%d: tessera serves text generation: among the inputs there must be "
                           "text_input (TYPE_STRING); found %d input(s), first \"%s\"",
                           ts_tp_source(x->doc), c->inputs[0].line, c->inputs[0].col, c->num_inputs, c->inputs[0].name);
        if (in->data_type != TS_TRITON_TYPE_STRING)
            return ts_fail(x->err, "%s:%d:%d: input text_input must have data_type TYPE_STRING, found %s",
                           ts_tp_source(x->doc), in->line, in->col, ts_triton_data_type_enum.names[in->data_type]);
    }
    if (c->num_outputs > 0) {
        const ts_triton_tensor *out = find_tensor(c->outputs, c->num_outputs, "text_output");
        if (!out)
            return ts_fail(x->err,
                           "%s:%d:%d: tessera serves text generation: among the outputs there must be "
                           "text_output (TYPE_STRING); found %d output(s), first \"%s\"",
                           ts_tp_source(x->doc), c->outputs[0].line, c->outputs[0].col, c->num_outputs,
                           c->outputs[0].name);
        if (out->data_type != TS_TRITON_TYPE_STRING)
            return ts_fail(x->err, "%s:%d:%d: output text_output must have data_type TYPE_STRING, found %s",
                           ts_tp_source(x->doc), out->line, out->col, ts_triton_data_type_enum.names[out->data_type]);
    }
    return 0;
}

/* ---- instance groups ---- */

static int read_gpu(const ts_tp_node *v, void *p) {
    void **pair = p;
    extract_ctx *x = pair[0];
    ts_triton_instance_group *g = pair[1];
    if (g->num_gpus == TS_TRITON_MAX_GPUS)
        return at_fail(x, v, "at most %d gpus per instance group", TS_TRITON_MAX_GPUS);
    int64_t id;
    if (ts_tp_int(x->doc, v, 0, 1023, &id, x->err) != 0) return -1;
    g->gpus[g->num_gpus++] = (int)id;
    return 0;
}

static int read_group(const ts_tp_node *v, void *p) {
    extract_ctx *x = p;
    ts_triton_config *c = x->cfg;
    if (c->num_groups == TS_TRITON_MAX_GROUPS)
        return at_fail(x, v, "at most %d instance groups are supported", TS_TRITON_MAX_GROUPS);
    ts_triton_instance_group *g = &c->groups[c->num_groups++];
    memset(g, 0, sizeof *g);
    g->line = v->value_line;
    g->col = v->value_col;
    if (get_string(x, v, "name", g->name, sizeof g->name) != 0) return -1;
    int kind = 0;
    const ts_tp_node *k = ts_tp_get(v, "kind");
    if (k && ts_tp_enum(x->doc, k, &ts_triton_instance_kind_enum, &kind, x->err) != 0) return -1;
    g->kind = (ts_triton_kind)kind;
    int64_t count = 0;
    const ts_tp_node *cn = ts_tp_get(v, "count");
    if (cn && ts_tp_int(x->doc, cn, 0, 1024, &count, x->err) != 0) return -1;
    g->count = (int)count;
    void *pair[2] = {x, g};
    if (ts_tp_each(v, "gpus", read_gpu, pair) != 0) return -1;
    if (g->num_gpus > 0 && (g->kind == TS_TRITON_KIND_CPU || g->kind == TS_TRITON_KIND_MODEL))
        return at_fail(x, ts_tp_get(v, "gpus"), "instance_group of kind %s cannot list gpus",
                       ts_triton_kind_name(g->kind));
    return 0;
}

/* ---- dynamic batching, version policy ---- */

static int read_preferred(const ts_tp_node *v, void *p) {
    extract_ctx *x = p;
    ts_triton_config *c = x->cfg;
    if (c->num_preferred_batch_sizes == TS_TRITON_MAX_PREFERRED)
        return at_fail(x, v, "at most %d preferred batch sizes are supported", TS_TRITON_MAX_PREFERRED);
    int64_t b;
    if (ts_tp_int(x->doc, v, 1, INT32_MAX, &b, x->err) != 0) return -1;
    c->preferred_batch_sizes[c->num_preferred_batch_sizes++] = (int)b;
    return 0;
}

static int read_version(const ts_tp_node *v, void *p) {
    extract_ctx *x = p;
    ts_triton_config *c = x->cfg;
    if (c->num_versions == TS_TRITON_MAX_VERSIONS)
        return at_fail(x, v, "at most %d specific versions are supported", TS_TRITON_MAX_VERSIONS);
    int64_t ver;
    if (ts_tp_int(x->doc, v, 1, INT64_MAX, &ver, x->err) != 0) return -1;
    c->versions[c->num_versions++] = ver;
    return 0;
}

static int read_version_policy(extract_ctx *x, const ts_tp_node *vp) {
    ts_triton_config *c = x->cfg;
    const ts_tp_node *latest = ts_tp_get(vp, "latest"), *all = ts_tp_get(vp, "all"),
                     *specific = ts_tp_get(vp, "specific");
    if (all) {
        c->version_policy = TS_VERSION_POLICY_ALL;
    } else if (specific) {
        c->version_policy = TS_VERSION_POLICY_SPECIFIC;
        if (ts_tp_each(specific, "versions", read_version, x) != 0) return -1;
        if (c->num_versions == 0) return at_fail(x, specific, "version_policy specific lists no versions");
    } else if (latest) {
        c->version_policy = TS_VERSION_POLICY_LATEST;
        const ts_tp_node *n = ts_tp_get(latest, "num_versions");
        uint64_t num = 0;
        if (n && ts_tp_uint(x->doc, n, TS_TRITON_MAX_VERSIONS, &num, x->err) != 0) return -1;
        if (num == 0) return at_fail(x, n ? n : latest, "version_policy latest needs num_versions of 1 or more");
        c->latest_num_versions = (int)num;
    } else {
        return at_fail(x, vp, "version_policy names no policy (expected latest, all or specific)");
    }
    return 0;
}

/* ---- execution accelerators ---- */

typedef struct {
    extract_ctx *x;
    ts_triton_accelerator *list;
    int *count;
    const char *field;
} accel_ctx;

static int read_accel_param(const ts_tp_node *v, void *p) {
    void **pair = p;
    extract_ctx *x = pair[0];
    ts_triton_accelerator *a = pair[1];
    char key[sizeof a->params[0].key];
    if (get_string(x, v, "key", key, sizeof key) != 0) return -1;
    const ts_tp_node *value = ts_tp_get(v, "value");
    ts_triton_accel_param *slot = NULL;
    for (int i = 0; i < a->num_params; i++)
        if (!strcmp(a->params[i].key, key)) slot = &a->params[i]; /* a map: the last value wins */
    if (!slot) {
        if (a->num_params == TS_TRITON_MAX_ACCEL_PARAMS)
            return at_fail(x, v, "at most %d parameters per accelerator are supported", TS_TRITON_MAX_ACCEL_PARAMS);
        slot = &a->params[a->num_params++];
    }
    memset(slot, 0, sizeof *slot);
    memcpy(slot->key, key, sizeof key);
    const ts_tp_node *pos = value ? value : v;
    slot->line = pos->value_line;
    slot->col = pos->value_col;
    return value ? ts_tp_string(x->doc, value, slot->value, sizeof slot->value, x->err) : 0;
}

static int read_accelerator(const ts_tp_node *v, void *p) {
    accel_ctx *ac = p;
    extract_ctx *x = ac->x;
    if (*ac->count == TS_TRITON_MAX_ACCELERATORS)
        return at_fail(x, v, "at most %d entries in %s are supported", TS_TRITON_MAX_ACCELERATORS, ac->field);
    ts_triton_accelerator *a = &ac->list[(*ac->count)++];
    memset(a, 0, sizeof *a);
    const ts_tp_node *name = ts_tp_get(v, "name");
    if (!name) return at_fail(x, v, "an entry of %s needs a name", ac->field);
    if (ts_tp_string(x->doc, name, a->name, sizeof a->name, x->err) != 0) return -1;
    a->line = name->value_line;
    a->col = name->value_col;
    void *pair[2] = {x, a};
    return ts_tp_each(v, "parameters", read_accel_param, pair);
}

static int read_optimization(extract_ctx *x, const ts_tp_node *opt) {
    const ts_tp_node *ea = ts_tp_get(opt, "execution_accelerators");
    if (!ea) return 0;
    ts_triton_config *c = x->cfg;
    accel_ctx cpu = {x, c->cpu_accelerators, &c->num_cpu_accelerators, "cpu_execution_accelerator"};
    accel_ctx gpu = {x, c->gpu_accelerators, &c->num_gpu_accelerators, "gpu_execution_accelerator"};
    if (ts_tp_each(ea, "cpu_execution_accelerator", read_accelerator, &cpu) != 0) return -1;
    return ts_tp_each(ea, "gpu_execution_accelerator", read_accelerator, &gpu);
}

/* ---- model-level parameters ---- */

int ts_parse_switch(const char *s) {
    static const char *const on[] = {"1", "true", "yes", "on"}, *const off[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, on[i])) return 1;
        if (!strcasecmp(s, off[i])) return 0;
    }
    return -1;
}

int ts_parse_byte_size(const char *s, uint64_t *out) {
    while (isspace((unsigned char)*s)) s++;
    if (!isdigit((unsigned char)*s) && *s != '.') return -1;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0)) return -1;
    while (isspace((unsigned char)*end)) end++;
    static const struct {
        const char *unit;
        double scale;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"K", 1024.0},
        {"KiB", 1024.0},
        {"KB", 1e3},
        {"M", 1048576.0},
        {"MiB", 1048576.0},
        {"MB", 1e6},
        {"G", 1073741824.0},
        {"GiB", 1073741824.0},
        {"GB", 1e9},
        {"T", 1099511627776.0},
        {"TiB", 1099511627776.0},
        {"TB", 1e12},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) != 0) continue;
        /* "KB" and "kb" alike; "K"/"KiB" binary, "KB" decimal */
        double bytes = v * units[i].scale;
        if (bytes >= 18446744073709551615.0) return -1;
        *out = (uint64_t)llround(bytes);
        return 0;
    }
    return -1;
}

static ts_triton_param *set_param(ts_triton_config *c, const char *key) {
    for (int i = 0; i < c->num_parameters; i++)
        if (!strcmp(c->parameters[i].key, key)) return &c->parameters[i];
    if (c->num_parameters == TS_TRITON_MAX_PARAMETERS) return NULL;
    ts_triton_param *p = &c->parameters[c->num_parameters++];
    memset(p, 0, sizeof *p);
    snprintf(p->key, sizeof p->key, "%s", key);
    return p;
}

static int read_parameter(const ts_tp_node *v, void *p) {
    extract_ctx *x = p;
    char key[64];
    if (get_string(x, v, "key", key, sizeof key) != 0) return -1;
    if (!key[0]) return at_fail(x, v, "a model parameter needs a key");
    ts_triton_param *slot = set_param(x->cfg, key);
    if (!slot) return at_fail(x, v, "at most %d model parameters are supported", TS_TRITON_MAX_PARAMETERS);
    const ts_tp_node *value = ts_tp_get(v, "value");
    const ts_tp_node *sv = value ? ts_tp_get(value, "string_value") : NULL;
    const ts_tp_node *pos = sv ? sv : value ? value : v;
    slot->line = pos->value_line;
    slot->col = pos->value_col;
    slot->value[0] = '\0';
    return sv ? ts_tp_string(x->doc, sv, slot->value, sizeof slot->value, x->err) : 0;
}

static int param_fail(extract_ctx *x, const ts_triton_param *p, const char *expected) {
    return ts_fail(x->err, "%s:%d:%d: parameter %s is \"%s\"; expected %s", ts_tp_source(x->doc), p->line, p->col,
                   p->key, p->value, expected);
}

static int param_positive(extract_ctx *x, const ts_triton_param *p, long long hi, long long *out) {
    char *end = NULL;
    long long v = strtoll(p->value, &end, 10);
    if (!p->value[0] || *end || v < 1 || v > hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "a whole number from 1 to %lld", hi);
        return param_fail(x, p, expected);
    }
    *out = v;
    return 0;
}

static const char *const g_known_keys[] = {
    "MODEL_QUANTIZATION",     "TESSERA_CPU_FALLBACK", "PYTORCH_ENABLE_MPS_FALLBACK", "TESSERA_CONTEXT_LENGTH",
    "TESSERA_KV_CACHE_BYTES", "TESSERA_THREADS",      "TESSERA_MAX_SEQUENCES"};

static int apply_parameters(extract_ctx *x) {
    ts_triton_config *c = x->cfg;
    for (int i = 0; i < c->num_parameters; i++) {
        const ts_triton_param *p = &c->parameters[i];
        int known = 0;
        for (size_t k = 0; k < sizeof g_known_keys / sizeof g_known_keys[0]; k++)
            known |= !strcmp(p->key, g_known_keys[k]);
        if (!known && !strncmp(p->key, "TESSERA_", 8))
            return ts_fail(x->err,
                           "%s:%d:%d: unknown parameter %s (tessera reads MODEL_QUANTIZATION, TESSERA_CPU_FALLBACK, "
                           "TESSERA_CONTEXT_LENGTH, TESSERA_KV_CACHE_BYTES, TESSERA_THREADS, TESSERA_MAX_SEQUENCES)",
                           ts_tp_source(x->doc), p->line, p->col, p->key);
        long long n;
        if (!strcmp(p->key, "MODEL_QUANTIZATION")) {
            ts_error qerr;
            if (ts_quant_scheme_parse(p->value, &c->quantization, &qerr) != 0)
                return ts_fail(x->err, "%s:%d:%d: parameter MODEL_QUANTIZATION: %s", ts_tp_source(x->doc), p->line,
                               p->col, qerr.message);
            c->has_quantization = 1;
        } else if (!strcmp(p->key, "TESSERA_CPU_FALLBACK") || !strcmp(p->key, "PYTORCH_ENABLE_MPS_FALLBACK")) {
            int on = ts_parse_switch(p->value);
            if (on < 0) return param_fail(x, p, "1 or 0 (true/false, yes/no, on/off)");
            if (c->cpu_fallback >= 0 && c->cpu_fallback != on)
                return ts_fail(x->err, "%s:%d:%d: parameter %s is \"%s\" but the other CPU-fallback switch says %s",
                               ts_tp_source(x->doc), p->line, p->col, p->key, p->value, c->cpu_fallback ? "on" : "off");
            c->cpu_fallback = on;
        } else if (!strcmp(p->key, "TESSERA_CONTEXT_LENGTH")) {
            if (param_positive(x, p, 1ll << 24, &n) != 0) return -1;
            c->context_length = n;
        } else if (!strcmp(p->key, "TESSERA_KV_CACHE_BYTES")) {
            if (ts_parse_byte_size(p->value, &c->kv_cache_bytes) != 0 || c->kv_cache_bytes == 0)
                return param_fail(x, p, "a size such as 8GiB, 512MiB or a byte count");
        } else if (!strcmp(p->key, "TESSERA_THREADS")) {
            if (param_positive(x, p, 4096, &n) != 0) return -1;
            c->threads = (int)n;
        } else if (!strcmp(p->key, "TESSERA_MAX_SEQUENCES")) {
            if (param_positive(x, p, 65536, &n) != 0) return -1;
            c->max_sequences = (int)n;
        }
    }
    return 0;
}

/* ---- top level ---- */

void ts_triton_config_defaults(ts_triton_config *c, const char *source) {
    memset(c, 0, sizeof *c);
    snprintf(c->source, sizeof c->source, "%s", source ? source : "");
    c->version_policy = TS_VERSION_POLICY_LATEST;
    c->latest_num_versions = 1;
    c->cpu_fallback = -1;
}

static int extract(extract_ctx *x, const ts_tp_node *root) {
    ts_triton_config *c = x->cfg;
    const ts_tp_node *name = ts_tp_get(root, "name");
    if (name) {
        if (ts_tp_string(x->doc, name, c->name, sizeof c->name, x->err) != 0) return -1;
        c->has_name = 1;
        c->name_line = name->value_line;
        c->name_col = name->value_col;
    }
    if (get_string(x, root, "platform", c->platform, sizeof c->platform) != 0 ||
        get_string(x, root, "backend", c->backend, sizeof c->backend) != 0 ||
        get_string(x, root, "default_model_filename", c->default_model_filename, sizeof c->default_model_filename) != 0)
        return -1;
    int64_t mbs = 0;
    if (get_int(x, root, "max_batch_size", 0, INT32_MAX, &mbs) != 0) return -1;
    c->max_batch_size = (int)mbs;

    tensor_ctx in = {x, c->inputs, &c->num_inputs, "input"}, out = {x, c->outputs, &c->num_outputs, "output"};
    if (ts_tp_each(root, "input", read_tensor, &in) != 0 || ts_tp_each(root, "output", read_tensor, &out) != 0)
        return -1;
    if (check_llm_tensors(x) != 0) return -1;

    if (ts_tp_each(root, "instance_group", read_group, x) != 0) return -1;

    const ts_tp_node *db = ts_tp_get(root, "dynamic_batching");
    if (db) {
        c->has_dynamic_batching = 1;
        if (ts_tp_each(db, "preferred_batch_size", read_preferred, x) != 0) return -1;
        const ts_tp_node *d = ts_tp_get(db, "max_queue_delay_microseconds");
        if (d && ts_tp_uint(x->doc, d, UINT64_MAX, &c->max_queue_delay_us, x->err) != 0) return -1;
    }
    const ts_tp_node *tp = ts_tp_get(root, "model_transaction_policy");
    if (tp && get_bool(x, tp, "decoupled", &c->decoupled) != 0) return -1;

    const ts_tp_node *vp = ts_tp_get(root, "version_policy");
    if (vp && read_version_policy(x, vp) != 0) return -1;

    const ts_tp_node *opt = ts_tp_get(root, "optimization");
    if (opt && read_optimization(x, opt) != 0) return -1;

    if (ts_tp_each(root, "parameters", read_parameter, x) != 0) return -1;
    return apply_parameters(x);
}

int ts_triton_config_parse(const char *text, size_t len, const char *source, ts_triton_config *out, ts_error *err) {
    ts_triton_config_defaults(out, source);
    ts_tp_doc *doc = NULL;
    if (ts_tp_parse(text, len, source, &doc, err) != 0) return -1;
    int rc = ts_tp_validate(doc, ts_tp_root(doc), &ts_triton_model_config_desc, err);
    if (rc == 0) {
        extract_ctx x = {doc, out, err};
        rc = extract(&x, ts_tp_root(doc));
    }
    ts_tp_free(doc);
    return rc;
}

int ts_triton_config_load(const char *path, ts_triton_config *out, ts_error *err) {
    char *text = NULL;
    size_t len = 0;
    ts_triton_config_defaults(out, path);
    if (ts_read_file(path, CONFIG_MAX_BYTES, &text, &len, err) != 0) return -1;
    int rc = ts_triton_config_parse(text, len, path, out, err);
    free(text);
    return rc;
}

ts_triton_kind ts_triton_config_kind(const ts_triton_config *c) {
    int any_gpu = 0, all_cpu = c->num_groups > 0;
    for (int i = 0; i < c->num_groups; i++) {
        any_gpu |= c->groups[i].kind == TS_TRITON_KIND_GPU;
        all_cpu &= c->groups[i].kind == TS_TRITON_KIND_CPU;
    }
    return any_gpu ? TS_TRITON_KIND_GPU : all_cpu ? TS_TRITON_KIND_CPU : TS_TRITON_KIND_AUTO;
}

const char *ts_triton_kind_name(ts_triton_kind k) {
    switch (k) {
    case TS_TRITON_KIND_AUTO: return "KIND_AUTO";
    case TS_TRITON_KIND_GPU: return "KIND_GPU";
    case TS_TRITON_KIND_CPU: return "KIND_CPU";
    case TS_TRITON_KIND_MODEL: return "KIND_MODEL";
    }
    return "?";
}

const ts_triton_param *ts_triton_config_param(const ts_triton_config *c, const char *key) {
    for (int i = 0; i < c->num_parameters; i++)
        if (!strcmp(c->parameters[i].key, key)) return &c->parameters[i];
    return NULL;
}
