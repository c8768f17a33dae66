/* Scanning a Triton model repository: model folders, version folders, version_policy, and what each
 * selected version holds. Nothing here reads weights; config.json is parsed (small) so that an
 * unsupported model is reported when the repository is scanned rather than when it is first used. */
#include "format/model_repo.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/files.h"
#include "format/json_util.h"
#include "format/model_config.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int join(char *out, const char *dir, const char *name, ts_error *err) {
    if (ts_path_join(out, TS_REPO_PATH_MAX, dir, name) != 0)
        return ts_fail(err, "%s/%s: the path is too long", dir, name);
    return 0;
}

/* Numeric, no leading zero (Triton ignores such folders), fits int64. */
static int parse_version_name(const char *s, int64_t *out) {
    if (!s[0] || s[0] == '0' || strlen(s) > 18) return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- one version folder ---- */

static int has_safetensors(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = ends_with(e->d_name, ".safetensors") || !strcmp(e->d_name, "model.safetensors.index.json");
    closedir(d);
    return found;
}

static int check_hf_dir(const char *dir, ts_repo_version *v, ts_error *err) {
    char config[TS_REPO_PATH_MAX];
    if (join(config, dir, "config.json", err) != 0) return -1;
    if (!ts_file_exists(config)) return ts_fail(err, "%s: no config.json", dir);
    if (!has_safetensors(dir)) return ts_fail(err, "%s: config.json without any .safetensors file", dir);
    ts_model_config *mc = malloc(sizeof *mc);
    if (!mc) return ts_fail(err, "%s: out of memory", dir);
    int rc = ts_model_config_load(config, mc, err);
    if (rc == 0) snprintf(v->model_type, sizeof v->model_type, "%s", mc->model_type);
    free(mc);
    if (rc != 0) return -1;
    v->format = TS_REPO_FORMAT_HF;
    snprintf(v->model_path, sizeof v->model_path, "%s", dir);
    return 0;
}

static int check_gguf(const char *path, ts_repo_version *v, ts_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(err, "%s: cannot be opened", path);
    unsigned char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0)
        return ts_fail(err, "%s: not a GGUF file (the first bytes are not \"GGUF\")", path);
    v->format = TS_REPO_FORMAT_GGUF;
    v->model_type[0] = '\0';
    snprintf(v->model_path, sizeof v->model_path, "%s", path);
    return 0;
}

static int check_named(const char *path, ts_repo_version *v, ts_error *err) {
    if (ts_is_directory(path)) return check_hf_dir(path, v, err);
    if (!ts_file_exists(path)) return ts_fail(err, "%s: does not exist", path);
    if (ends_with(path, ".gguf")) return check_gguf(path, v, err);
    return ts_fail(err, "%s: expected a .gguf file or a Hugging Face directory", path);
}

/* vLLM's model repository layout: <n>/model.json with {"model": "<path or hub id>", ...}. */
static int check_model_json(const char *version_dir, const char *path, ts_repo_version *v, ts_error *err) {
    json_t *root = ts_json_load_file(path, 1u << 20, err);
    if (!root) return -1;
    const char *model = NULL;
    int found = 0, rc = -1;
    if (!json_is_object(root)) {
        ts_fail(err, "%s: expected a JSON object", path);
    } else if (ts_json_get_string(root, "model", path, &model, &found, err) != 0) {
        /* error set */
    } else if (!found) {
        ts_fail(err, "%s: no \"model\" key naming the model directory", path);
    } else {
        char target[TS_REPO_PATH_MAX];
        if (model[0] == '/') snprintf(target, sizeof target, "%s", model);
        else if (join(target, version_dir, model, err) != 0) goto done;
        if (!ts_is_directory(target))
            ts_fail(err, "%s: \"model\" is \"%s\", which is not a local directory (tessera does not download models)",
                    path, model);
        else rc = check_hf_dir(target, v, err);
    }
done:
    json_decref(root);
    return rc;
}

int ts_repo_resolve_version(const char *dir, const char *default_name, ts_repo_version *v, ts_error *err) {
    char path[TS_REPO_PATH_MAX];
    snprintf(v->dir, sizeof v->dir, "%s", dir);
    if (default_name && default_name[0]) {
        if (strstr(default_name, "..") || default_name[0] == '/')
            return ts_fail(err, "default_model_filename \"%s\" may not leave the version folder", default_name);
        if (join(path, dir, default_name, err) != 0) return -1;
        return check_named(path, v, err);
    }
    if (join(path, dir, "config.json", err) != 0) return -1;
    if (ts_file_exists(path)) return check_hf_dir(dir, v, err);

    DIR *d = opendir(dir);
    if (!d) return ts_fail(err, "%s: cannot be read", dir);
    char gguf[TS_REPO_PATH_MAX] = "", sub[TS_REPO_PATH_MAX] = "";
    int num_gguf = 0, num_sub = 0, has_model_json = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[TS_REPO_PATH_MAX];
        if (ts_path_join(p, sizeof p, dir, e->d_name) != 0) continue;
        if (ends_with(e->d_name, ".gguf") && !ts_is_directory(p)) {
            if (num_gguf++ == 0) snprintf(gguf, sizeof gguf, "%s", p);
        } else if (!strcmp(e->d_name, "model.json")) {
            has_model_json = 1;
        } else if (ts_is_directory(p)) {
            char cfg[TS_REPO_PATH_MAX];
            if (ts_path_join(cfg, sizeof cfg, p, "config.json") == 0 && ts_file_exists(cfg) && num_sub++ == 0)
                snprintf(sub, sizeof sub, "%s", p);
        }
    }
    closedir(d);
    int kinds = (num_gguf > 0) + (num_sub > 0) + has_model_json;
    if (num_gguf > 1 || num_sub > 1 || kinds > 1)
        return ts_fail(err,
                       "%s: holds %d .gguf file(s), %d model folder(s)%s; name the one to use with "
                       "default_model_filename",
                       dir, num_gguf, num_sub, has_model_json ? " and model.json" : "");
    if (num_gguf == 1) return check_gguf(gguf, v, err);
    if (num_sub == 1) return check_hf_dir(sub, v, err);
    if (has_model_json) {
        if (join(path, dir, "model.json", err) != 0) return -1;
        return check_model_json(dir, path, v, err);
    }
    return ts_fail(err,
                   "%s: holds no model (expected config.json with .safetensors, a .gguf file, or one folder "
                   "holding them)",
                   dir);
}

/* ---- one model folder ---- */

static int model_fail(ts_repo_model *m, const ts_error *e) {
    m->ok = 0;
    snprintf(m->error, sizeof m->error, "%s", e->message);
    return -1;
}

static int find_versions(ts_repo_model *m, ts_error *err) {
    DIR *d = opendir(m->dir);
    if (!d) return ts_fail(err, "%s: cannot be read", m->dir);
    for (struct dirent *e; (e = readdir(d));) {
        int64_t v;
        if (parse_version_name(e->d_name, &v) != 0) continue;
        char p[TS_REPO_PATH_MAX];
        if (ts_path_join(p, sizeof p, m->dir, e->d_name) != 0 || !ts_is_directory(p)) continue;
        if (m->num_found_versions == TS_REPO_MAX_FOUND_VERSIONS) {
            closedir(d);
            return ts_fail(err, "%s: more than %d version folders", m->dir, TS_REPO_MAX_FOUND_VERSIONS);
        }
        m->found_versions[m->num_found_versions++] = v;
    }
    closedir(d);
    qsort(m->found_versions, (size_t)m->num_found_versions, sizeof(int64_t), cmp_int64);
    return 0;
}

static int found(const ts_repo_model *m, int64_t v) {
    for (int i = 0; i < m->num_found_versions; i++)
        if (m->found_versions[i] == v) return 1;
    return 0;
}

/* Applies version_policy; fills `selected` ascending. */
static int select_versions(const ts_repo_model *m, int64_t *selected, int *count, ts_error *err) {
    const ts_triton_config *c = m->config;
    *count = 0;
    if (m->num_found_versions == 0)
        return ts_fail(err, "%s: no version folders (numeric subfolders such as 1/ holding the model)", m->dir);
    switch (c->version_policy) {
    case TS_VERSION_POLICY_ALL:
        for (int i = 0; i < m->num_found_versions; i++) selected[(*count)++] = m->found_versions[i];
        break;
    case TS_VERSION_POLICY_LATEST: {
        int n = c->latest_num_versions < m->num_found_versions ? c->latest_num_versions : m->num_found_versions;
        for (int i = m->num_found_versions - n; i < m->num_found_versions; i++)
            selected[(*count)++] = m->found_versions[i];
        break;
    }
    case TS_VERSION_POLICY_SPECIFIC: {
        int64_t wanted[TS_TRITON_MAX_VERSIONS];
        int n = 0;
        for (int i = 0; i < c->num_versions; i++) {
            int dup = 0;
            for (int k = 0; k < n; k++) dup |= wanted[k] == c->versions[i];
            if (!dup) wanted[n++] = c->versions[i];
        }
        qsort(wanted, (size_t)n, sizeof(int64_t), cmp_int64);
        for (int i = 0; i < n; i++) {
            if (!found(m, wanted[i]))
                return ts_fail(err,
                               "%s: version_policy specific asks for version %lld, which has no folder (found: %d "
                               "version folder%s)",
                               m->dir, (long long)wanted[i], m->num_found_versions,
                               m->num_found_versions == 1 ? "" : "s");
            selected[(*count)++] = wanted[i];
        }
        break;
    }
    }
    return 0;
}

int ts_repo_load_model(const char *dir, const char *name, ts_repo_model *m) {
    ts_error err = {{0}};
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->config = malloc(sizeof *m->config);
    if (!m->config) return model_fail(m, &(ts_error){"out of memory"});
    char path[TS_REPO_PATH_MAX];
    if (join(path, dir, "config.pbtxt", &err) != 0) return model_fail(m, &err);
    m->has_config_file = ts_file_exists(path);
    if (m->has_config_file) {
        if (ts_triton_config_load(path, m->config, &err) != 0) {
            free(m->config);
            m->config = NULL;
            return model_fail(m, &err);
        }
        if (m->config->has_name && strcmp(m->config->name, name) != 0) {
            ts_fail(&err, "%s:%d:%d: the configuration names the model \"%s\" but its folder is \"%s\"", path,
                    m->config->name_line, m->config->name_col, m->config->name, name);
            return model_fail(m, &err);
        }
    } else {
        ts_triton_config_defaults(m->config, path);
    }
    if (!m->config->has_name) snprintf(m->config->name, sizeof m->config->name, "%s", name);

    if (find_versions(m, &err) != 0) return model_fail(m, &err);
    int64_t selected[TS_REPO_MAX_FOUND_VERSIONS];
    int count = 0;
    if (select_versions(m, selected, &count, &err) != 0) return model_fail(m, &err);
    m->versions = calloc((size_t)count, sizeof *m->versions);
    if (!m->versions) return model_fail(m, &(ts_error){"out of memory"});
    for (int i = 0; i < count; i++) {
        ts_repo_version *v = &m->versions[i];
        char vdir[TS_REPO_PATH_MAX], vname[32];
        snprintf(vname, sizeof vname, "%lld", (long long)selected[i]);
        if (join(vdir, dir, vname, &err) != 0) return model_fail(m, &err);
        v->version = selected[i];
        if (ts_repo_resolve_version(vdir, m->config->default_model_filename, v, &err) != 0) {
            ts_error_prefix(&err, "version %lld: ", (long long)selected[i]);
            return model_fail(m, &err);
        }
        m->num_versions++;
    }
    m->ok = 1;
    return 0;
}

void ts_repo_model_free(ts_repo_model *m) {
    free(m->config);
    free(m->versions);
    m->config = NULL;
    m->versions = NULL;
}

/* ---- the repository ---- */

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ts_repo_scan(const char *root, ts_repo *out, ts_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->root, sizeof out->root, "%s", root);
    DIR *d = opendir(root);
    if (!d) return ts_fail(err, "model repository %s cannot be read", root);
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[TS_REPO_PATH_MAX];
        if (ts_path_join(p, sizeof p, root, e->d_name) != 0 || !ts_is_directory(p)) continue;
        if (n == TS_REPO_MAX_MODELS) {
            rc = ts_fail(err, "model repository %s has more than %d model folders", root, TS_REPO_MAX_MODELS);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, (size_t)cap * sizeof *names);
            if (!grown) {
                rc = ts_fail(err, "out of memory");
                break;
            }
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            rc = ts_fail(err, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 0) {
        qsort(names, (size_t)n, sizeof *names, cmp_names);
        out->models = calloc((size_t)n, sizeof *out->models);
        if (!out->models) rc = ts_fail(err, "out of memory");
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        char dir[TS_REPO_PATH_MAX];
        if (ts_path_join(dir, sizeof dir, root, names[i]) != 0) continue;
        ts_repo_load_model(dir, names[i], &out->models[out->num_models++]);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc != 0) ts_repo_free(out);
    return rc;
}

void ts_repo_free(ts_repo *repo) {
    for (int i = 0; i < repo->num_models; i++) ts_repo_model_free(&repo->models[i]);
    free(repo->models);
    repo->models = NULL;
    repo->num_models = 0;
}

const ts_repo_model *ts_repo_find(const ts_repo *repo, const char *name) {
    for (int i = 0; i < repo->num_models; i++)
        if (!strcmp(repo->models[i].name, name)) return &repo->models[i];
    return NULL;
}

int ts_repo_num_ok(const ts_repo *repo) {
    int n = 0;
    for (int i = 0; i < repo->num_models; i++) n += repo->models[i].ok;
    return n;
}

const ts_repo_version *ts_repo_latest(const ts_repo_model *m) {
    return m->ok && m->num_versions > 0 ? &m->versions[m->num_versions - 1] : NULL;
}
