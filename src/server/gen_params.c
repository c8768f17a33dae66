/* Reading generation parameters from a request object, in either protocol's spelling. */
#include "server/gen_params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_gen_params_init(ts_gen_params *p) {
    memset(p, 0, sizeof *p);
    ts_sampling_params_init(&p->sampling);
    p->skip_special = 1;
}

void ts_gen_params_free(ts_gen_params *p) {
    for (int i = 0; i < p->n_stops; i++) free(p->stops[i]);
    p->n_stops = 0;
}

int ts_gen_params_add_stop(ts_gen_params *p, const char *s, size_t len, const char *name, ts_api_error *e) {
    if (len == 0) return 0;
    if (len > TS_GEN_MAX_STOP_BYTES)
        return ts_api_fail(e, 400, name, "'%s': a stop string may have at most %d bytes, found %zu", name,
                           TS_GEN_MAX_STOP_BYTES, len);
    if (p->n_stops >= TS_GEN_MAX_STOPS)
        return ts_api_fail(e, 400, name, "'%s': at most %d stop strings are supported", name, TS_GEN_MAX_STOPS);
    char *c = malloc(len + 1);
    if (!c) return ts_api_fail(e, 500, NULL, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    p->stops[p->n_stops++] = c;
    return 0;
}

static const char *field_name(char *buf, size_t cap, const char *prefix, const char *key) {
    snprintf(buf, cap, "%s%s", prefix ? prefix : "", key);
    return buf;
}

static int read_stops(const json_t *obj, const char *key, const char *prefix, ts_gen_params *p, ts_api_error *e) {
    char name[96];
    field_name(name, sizeof name, prefix, key);
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) return ts_gen_params_add_stop(p, json_string_value(v), json_string_length(v), name, e);
    if (!json_is_array(v))
        return ts_api_fail(e, 400, name, "'%s' must be a string or a list of strings, found %s", name, ts_json_type_words(v));
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s))
            return ts_api_fail(e, 400, name, "'%s[%zu]' must be a string, found %s", name, i, ts_json_type_words(s));
        if (ts_gen_params_add_stop(p, json_string_value(s), json_string_length(s), name, e) != 0) return -1;
    }
    return 0;
}

int ts_gen_params_read(const json_t *obj, const char *prefix, ts_gen_params *p, ts_api_error *e) {
    char name[96];
    long long iv;
    double dv;
    int found, bv;
    static const char *const max_keys[] = {"max_tokens", "max_completion_tokens", "max_new_tokens"};
    for (int k = 0; k < 3; k++) {
        if (ts_field_int(obj, max_keys[k], field_name(name, sizeof name, prefix, max_keys[k]), 1, 1 << 30, &iv, &found, e))
            return -1;
        if (found) p->max_tokens = (int)iv;
    }
    ts_sampling_params *s = &p->sampling;
    if (ts_field_number(obj, "temperature", field_name(name, sizeof name, prefix, "temperature"), 0, 100, &dv, &found, e))
        return -1;
    if (found) s->temperature = (float)dv;
    if (ts_field_number(obj, "top_p", field_name(name, sizeof name, prefix, "top_p"), 0, 1, &dv, &found, e)) return -1;
    if (found) {
        if (dv <= 0) return ts_api_fail(e, 400, name, "'%s' must be greater than 0 and at most 1, found %g", name, dv);
        s->top_p = (float)dv;
    }
    if (ts_field_int(obj, "top_k", field_name(name, sizeof name, prefix, "top_k"), -1, 1 << 30, &iv, &found, e)) return -1;
    if (found) s->top_k = iv < 0 ? 0 : (int)iv;
    if (ts_field_number(obj, "min_p", field_name(name, sizeof name, prefix, "min_p"), 0, 1, &dv, &found, e)) return -1;
    if (found) s->min_p = (float)dv;
    if (ts_field_number(obj, "repetition_penalty", field_name(name, sizeof name, prefix, "repetition_penalty"), 0, 100,
                        &dv, &found, e))
        return -1;
    if (found) {
        if (dv <= 0) return ts_api_fail(e, 400, name, "'%s' must be greater than 0, found %g", name, dv);
        s->repetition_penalty = (float)dv;
    }
    if (ts_field_number(obj, "presence_penalty", field_name(name, sizeof name, prefix, "presence_penalty"), -2, 2, &dv,
                        &found, e))
        return -1;
    if (found) s->presence_penalty = (float)dv;
    if (ts_field_number(obj, "frequency_penalty", field_name(name, sizeof name, prefix, "frequency_penalty"), -2, 2, &dv,
                        &found, e))
        return -1;
    if (found) s->frequency_penalty = (float)dv;
    static const char *const seed_keys[] = {"seed", "random_seed"};
    for (int k = 0; k < 2; k++) {
        if (ts_field_int(obj, seed_keys[k], field_name(name, sizeof name, prefix, seed_keys[k]), -0x7fffffffffffffffll,
                         0x7fffffffffffffffll, &iv, &found, e))
            return -1;
        if (found) {
            s->has_seed = 1;
            s->seed = (uint64_t)iv;
        }
    }
    if (read_stops(obj, "stop", prefix, p, e) || read_stops(obj, "stop_words", prefix, p, e)) return -1;
    if (ts_field_bool(obj, "ignore_eos", field_name(name, sizeof name, prefix, "ignore_eos"), &bv, &found, e)) return -1;
    if (found) p->ignore_eos = bv;
    if (ts_field_bool(obj, "skip_special_tokens", field_name(name, sizeof name, prefix, "skip_special_tokens"), &bv,
                      &found, e))
        return -1;
    if (found) p->skip_special = bv;
    return 0;
}
