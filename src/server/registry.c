/* The model registry: loaded versions, counted references, draining unloads, the repository index. */
#include "server/registry.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/gen.h"

#define MAX_VERSIONS_PER_LOAD 8

typedef struct load_failure {
    char name[TS_MODEL_NAME_MAX];
    char reason[TS_ERROR_MAX];
    struct load_failure *next;
} load_failure;

struct ts_registry {
    ts_model_source src;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a reference was released or a generation ended */
    pthread_mutex_t load_lock; /* one load or unload at a time */
    ts_served_model *models;
    load_failure *failures; /* last failure (or "unloaded") per model name */
};

ts_registry *ts_registry_create(const ts_model_source *src) {
    ts_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->src = *src;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    pthread_mutex_init(&r->load_lock, NULL);
    return r;
}

/* Lock held. */
static void set_failure(ts_registry *r, const char *name, const char *reason) {
    load_failure *f = r->failures;
    while (f && strcmp(f->name, name) != 0) f = f->next;
    if (!reason) {
        if (!f) return;
        f->reason[0] = 0;
        return;
    }
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) return;
        snprintf(f->name, sizeof f->name, "%s", name);
        f->next = r->failures;
        r->failures = f;
    }
    snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static void destroy_model(ts_served_model *m) {
    if (m->inst.destroy) m->inst.destroy(m->inst.owner);
    json_decref(m->inst.config);
    ts_model_metrics_destroy(&m->metrics);
    free(m->active);
    free(m);
}

static void abs_deadline(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    double whole = floor(seconds);
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Drains and destroys versions already taken out of the list: no new references can appear. */
static void retire_models(ts_registry *r, ts_served_model *list, double grace) {
    for (ts_served_model *m = list; m; m = m->next) ts_engine_drain(m->inst.engine);
    pthread_mutex_lock(&r->lock);
    struct timespec deadline;
    abs_deadline(&deadline, grace);
    for (;;) {
        int busy = 0;
        for (ts_served_model *m = list; m; m = m->next) busy += m->refs;
        if (!busy) break;
        if (pthread_cond_timedwait(&r->changed, &r->lock, &deadline) == ETIMEDOUT) {
            for (ts_served_model *m = list; m; m = m->next)
                for (int i = 0; i < m->num_active; i++) ts_gen_cancel(m->active[i], "the model is being unloaded");
            while (1) {
                busy = 0;
                for (ts_served_model *m = list; m; m = m->next) busy += m->refs;
                if (!busy) break;
                pthread_cond_wait(&r->changed, &r->lock);
            }
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    while (list) {
        ts_served_model *next = list->next;
        ts_log_info("unloaded model %s version %s", list->name, list->inst.version);
        destroy_model(list);
        list = next;
    }
}

/* Takes every version of `name` out of the list (lock held); returns them linked. */
static ts_served_model *detach(ts_registry *r, const char *name) {
    ts_served_model *out = NULL, **link = &r->models;
    while (*link) {
        ts_served_model *m = *link;
        if (!strcmp(m->name, name)) {
            *link = m->next;
            m->unloading = 1;
            m->next = out;
            out = m;
        } else {
            link = &m->next;
        }
    }
    return out;
}

int ts_registry_load(ts_registry *r, const char *name, ts_error *err) {
    if (strlen(name) >= TS_MODEL_NAME_MAX || !name[0]) return ts_fail(err, "invalid model name '%s'", name);
    pthread_mutex_lock(&r->load_lock);
    ts_model_instance inst[MAX_VERSIONS_PER_LOAD];
    memset(inst, 0, sizeof inst);
    int n = 0;
    double t0 = ts_now_seconds();
    if (r->src.load(r->src.ctx, name, inst, MAX_VERSIONS_PER_LOAD, &n, err) != 0 || n == 0) {
        if (n == 0 && !err->message[0]) ts_fail(err, "model '%s' has no version to load", name);
        pthread_mutex_lock(&r->lock);
        set_failure(r, name, err->message);
        pthread_mutex_unlock(&r->lock);
        pthread_mutex_unlock(&r->load_lock);
        return -1;
    }
    ts_served_model *fresh = NULL;
    for (int i = n - 1; i >= 0; i--) {
        ts_served_model *m = calloc(1, sizeof *m);
        if (!m) {
            for (int k = 0; k <= i; k++) {
                if (inst[k].destroy) inst[k].destroy(inst[k].owner);
                json_decref(inst[k].config);
            }
            while (fresh) {
                ts_served_model *next = fresh->next;
                destroy_model(fresh);
                fresh = next;
            }
            pthread_mutex_unlock(&r->load_lock);
            return ts_fail(err, "out of memory");
        }
        snprintf(m->name, sizeof m->name, "%s", name);
        m->inst = inst[i];
        m->loaded_at = (double)time(NULL);
        ts_model_metrics_init(&m->metrics);
        m->next = fresh;
        fresh = m;
    }
    pthread_mutex_lock(&r->lock);
    ts_served_model *old = detach(r, name);
    ts_served_model *tail = fresh;
    while (tail->next) tail = tail->next;
    tail->next = r->models;
    r->models = fresh;
    set_failure(r, name, NULL);
    pthread_mutex_unlock(&r->lock);
    for (ts_served_model *m = fresh; m; m = m->next)
        ts_log_info("model %s version %s is ready (%s; loaded in %.2f s)", m->name, m->inst.version,
                    m->inst.description, ts_now_seconds() - t0);
    if (old) retire_models(r, old, 600.0);
    pthread_mutex_unlock(&r->load_lock);
    return 0;
}

int ts_registry_unload(ts_registry *r, const char *name, double grace, ts_error *err) {
    pthread_mutex_lock(&r->load_lock);
    pthread_mutex_lock(&r->lock);
    ts_served_model *old = detach(r, name);
    if (old) set_failure(r, name, "unloaded");
    pthread_mutex_unlock(&r->lock);
    if (!old) {
        pthread_mutex_unlock(&r->load_lock);
        return ts_fail(err, "model '%s' is not loaded", name);
    }
    retire_models(r, old, grace);
    pthread_mutex_unlock(&r->load_lock);
    return 0;
}

void ts_registry_destroy(ts_registry *r) {
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    ts_served_model *all = r->models;
    r->models = NULL;
    for (ts_served_model *m = all; m; m = m->next) m->unloading = 1;
    pthread_mutex_unlock(&r->lock);
    retire_models(r, all, 0.0);
    while (r->failures) {
        load_failure *next = r->failures->next;
        free(r->failures);
        r->failures = next;
    }
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->load_lock);
    free(r);
}

static long long version_number(const char *v) {
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    return end && *end == 0 ? x : -1;
}

ts_served_model *ts_registry_acquire(ts_registry *r, const char *name, const char *version) {
    pthread_mutex_lock(&r->lock);
    ts_served_model *best = NULL;
    for (ts_served_model *m = r->models; m; m = m->next) {
        if (m->unloading || strcmp(m->name, name) != 0) continue;
        if (version && version[0]) {
            if (!strcmp(m->inst.version, version)) best = m;
        } else if (!best || version_number(m->inst.version) > version_number(best->inst.version)) {
            best = m;
        }
    }
    if (best) best->refs++;
    pthread_mutex_unlock(&r->lock);
    return best;
}

void ts_registry_release(ts_registry *r, ts_served_model *m) {
    if (!m) return;
    pthread_mutex_lock(&r->lock);
    m->refs--;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

int ts_registry_known(ts_registry *r, const char *name) {
    pthread_mutex_lock(&r->lock);
    int known = 0;
    for (ts_served_model *m = r->models; m && !known; m = m->next) known = !strcmp(m->name, name);
    pthread_mutex_unlock(&r->lock);
    if (known) return 1;
    ts_model_listing *list = NULL;
    int n = 0;
    ts_error err = {{0}};
    if (r->src.list && r->src.list(r->src.ctx, &list, &n, &err) == 0)
        for (int i = 0; i < n && !known; i++) known = !strcmp(list[i].name, name);
    free(list);
    return known;
}

void ts_registry_foreach(ts_registry *r, void (*fn)(void *ctx, ts_served_model *m), void *ctx) {
    pthread_mutex_lock(&r->lock);
    for (ts_served_model *m = r->models; m; m = m->next) fn(ctx, m);
    pthread_mutex_unlock(&r->lock);
}

int ts_registry_num_ready(ts_registry *r) {
    pthread_mutex_lock(&r->lock);
    int n = 0;
    for (ts_served_model *m = r->models; m; m = m->next) n += !m->unloading;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void index_add(json_t *arr, const char *name, const char *version, const char *state, const char *reason) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    if (version) json_object_set_new(o, "version", json_string(version));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "reason", json_string(reason ? reason : ""));
    json_array_append_new(arr, o);
}

json_t *ts_registry_index(ts_registry *r, int ready_only) {
    ts_model_listing *list = NULL;
    int n = 0;
    ts_error err = {{0}};
    if (!r->src.list || r->src.list(r->src.ctx, &list, &n, &err) != 0) n = 0;
    json_t *arr = json_array();
    pthread_mutex_lock(&r->lock);
    /* loaded versions first (a model given by path may not be in any listing) */
    for (ts_served_model *m = r->models; m; m = m->next) index_add(arr, m->name, m->inst.version, "READY", "");
    if (!ready_only) {
        for (int i = 0; i < n; i++) {
            int loaded = 0;
            for (ts_served_model *m = r->models; m && !loaded; m = m->next) loaded = !strcmp(m->name, list[i].name);
            if (loaded) continue;
            const char *reason = list[i].error[0] ? list[i].error : "";
            for (load_failure *f = r->failures; f; f = f->next)
                if (!strcmp(f->name, list[i].name) && f->reason[0]) reason = f->reason;
            if (list[i].num_versions == 0) index_add(arr, list[i].name, NULL, "UNAVAILABLE", reason);
            for (int v = 0; v < list[i].num_versions; v++)
                index_add(arr, list[i].name, list[i].versions[v], "UNAVAILABLE", reason);
        }
    }
    pthread_mutex_unlock(&r->lock);
    free(list);
    return arr;
}

void ts_registry_drain(ts_registry *r) {
    pthread_mutex_lock(&r->lock);
    for (ts_served_model *m = r->models; m; m = m->next) ts_engine_drain(m->inst.engine);
    pthread_mutex_unlock(&r->lock);
}

int ts_registry_active(ts_registry *r) {
    pthread_mutex_lock(&r->lock);
    int n = 0;
    for (ts_served_model *m = r->models; m; m = m->next) n += m->num_active;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void ts_registry_cancel_all(ts_registry *r, const char *reason) {
    pthread_mutex_lock(&r->lock);
    for (ts_served_model *m = r->models; m; m = m->next)
        for (int i = 0; i < m->num_active; i++) ts_gen_cancel(m->active[i], reason);
    pthread_mutex_unlock(&r->lock);
}

void ts_registry_track(ts_registry *r, ts_served_model *m, ts_gen *g) {
    pthread_mutex_lock(&r->lock);
    if (m->num_active == m->cap_active) {
        int cap = m->cap_active ? m->cap_active * 2 : 16;
        ts_gen **na = realloc(m->active, (size_t)cap * sizeof *na);
        if (na) {
            m->active = na;
            m->cap_active = cap;
        }
    }
    /* without room the generation is simply not cancellable by shutdown; it still ends on its own */
    if (m->num_active < m->cap_active) m->active[m->num_active++] = g;
    pthread_mutex_unlock(&r->lock);
}

void ts_registry_untrack(ts_registry *r, ts_served_model *m, ts_gen *g) {
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < m->num_active; i++)
        if (m->active[i] == g) {
            m->active[i] = m->active[--m->num_active];
            break;
        }
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}
