/* A Triton model repository: REPO/<model>/config.pbtxt and version folders REPO/<model>/<n>/ holding
 * the model. tessera reads a version folder as
 *   - a Hugging Face directory (config.json and *.safetensors), directly in <n>/ or in its only
 *     subfolder that has one, or
 *   - a single .gguf file, or
 *   - a vLLM-style model.json whose "model" names a local Hugging Face directory,
 * or, when config.pbtxt sets default_model_filename, the file or folder it names.
 * Version folders are numeric names without a leading zero; other entries are ignored, as Triton does.
 * version_policy picks the versions: latest { num_versions } (default 1), all {}, specific { versions }.
 * A model folder without config.pbtxt gets the defaults (its folder name, the latest version).
 * Each model succeeds or fails on its own: one broken model never stops the others. */
#ifndef TS_FORMAT_MODEL_REPO_H
#define TS_FORMAT_MODEL_REPO_H

#include <stdint.h>

#include "base/error.h"
#include "format/model_repo_config.h"

#define TS_REPO_MAX_MODELS 1024
#define TS_REPO_MAX_FOUND_VERSIONS 256
#define TS_REPO_PATH_MAX 4096

typedef enum ts_repo_format {
    TS_REPO_FORMAT_HF = 0, /* model_path is a directory with config.json and safetensors */
    TS_REPO_FORMAT_GGUF,   /* model_path is a .gguf file */
} ts_repo_format;

typedef struct ts_repo_version {
    int64_t version;
    char dir[TS_REPO_PATH_MAX];
    ts_repo_format format;
    char model_path[TS_REPO_PATH_MAX];
    char model_type[64]; /* from config.json; empty for GGUF */
} ts_repo_version;

typedef struct ts_repo_model {
    char name[128];
    char dir[TS_REPO_PATH_MAX];
    int has_config_file;
    ts_triton_config *config;                           /* NULL when config.pbtxt could not be read */
    int64_t found_versions[TS_REPO_MAX_FOUND_VERSIONS]; /* every numeric folder, ascending */
    int num_found_versions;
    ts_repo_version *versions; /* those version_policy selects, ascending */
    int num_versions;
    int ok;
    char error[TS_ERROR_MAX]; /* when !ok */
} ts_repo_model;

typedef struct ts_repo {
    char root[TS_REPO_PATH_MAX];
    ts_repo_model *models; /* sorted by name */
    int num_models;
} ts_repo;

/* Scans the repository. Fails only when the root itself cannot be read; problems of one model are
 * in that model's `error`. */
int ts_repo_scan(const char *root, ts_repo *out, ts_error *err);
void ts_repo_free(ts_repo *repo);
const ts_repo_model *ts_repo_find(const ts_repo *repo, const char *name);
int ts_repo_num_ok(const ts_repo *repo);
/* The highest selected version (what a request without a version gets). */
const ts_repo_version *ts_repo_latest(const ts_repo_model *m);

/* Resolves one model folder (REPO/<name>); exposed for `tessera plan` on a single model. */
int ts_repo_load_model(const char *dir, const char *name, ts_repo_model *out);
void ts_repo_model_free(ts_repo_model *m);

/* Finds the model inside one version folder (see the top of this file). */
int ts_repo_resolve_version(const char *version_dir, const char *default_model_filename, ts_repo_version *out,
                            ts_error *err);

#endif
