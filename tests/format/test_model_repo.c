/* Triton model repositories built in a temporary directory from ../shared/testdata: version_policy
 * latest/all/specific over several version folders, models without versions, broken models next to
 * good ones (each fails alone, with its own message), the places a version folder may hold a model,
 * and a model whose config.pbtxt is the seed document's configuration template exactly as written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/model_repo.h"
#include "support/testlib.h"

static char g_repo[1024];

static void make_dir(const char *rel) {
    char path[2048], partial[2048];
    snprintf(path, sizeof path, "%s/%s", g_repo, rel);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        memcpy(partial, path, (size_t)(p - path));
        partial[p - path] = '\0';
        mkdir(partial, 0755);
    }
    mkdir(path, 0755);
}

static void write_text(const char *rel, const char *text) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_repo, rel);
    ts_test_write_file(path, text, strlen(text));
}

static void link_shared(const char *shared_rel, const char *rel) {
    char target[1024], path[2048];
    ts_test_shared_path(shared_rel, target, sizeof target);
    snprintf(path, sizeof path, "%s/%s", g_repo, rel);
    if (symlink(target, path) != 0) fail_msg("cannot link %s", path);
}

/* A Hugging Face directory: the real config.json of qwen3-small and a link to its weights. */
static void make_hf(const char *rel) {
    char cfg[512], st[512];
    make_dir(rel);
    snprintf(cfg, sizeof cfg, "%s/config.json", rel);
    snprintf(st, sizeof st, "%s/model.safetensors", rel);
    link_shared("testdata/qwen3-small/config.json", cfg);
    link_shared("testdata/qwen3-small/model.safetensors", st);
}

static char *seed_template(void) {
    char path[1024];
    ts_test_shared_path("seeds/000_daab9e64cad81406.txt", path, sizeof path);
    char *text = ts_test_read_file(path, NULL);
    const char *start = strstr(text, "```python\n");
    assert_non_null(start);
    start += strlen("```python\n");
    const char *end = strstr(start, "```");
    assert_non_null(end);
    char *block = strndup(start, (size_t)(end - start));
    free(text);
    return block;
}

static int setup_repo(void **state) {
    (void)state;
    snprintf(g_repo, sizeof g_repo, "%s/repo", ts_test_tmpdir());
    mkdir(g_repo, 0755);

    /* latest (default policy): versions 1, 2, 10 -> 10 */
    make_dir("a_latest");
    write_text("a_latest/config.pbtxt", "");
    make_hf("a_latest/1");
    make_hf("a_latest/2");
    make_hf("a_latest/10");

    /* latest { num_versions: 2 } over 1, 3, 10 plus folders Triton ignores */
    make_dir("b_latest2");
    write_text("b_latest2/config.pbtxt", "name: \"b_latest2\"\nversion_policy: { latest: { num_versions: 2 } }\n");
    make_hf("b_latest2/1");
    make_hf("b_latest2/3");
    make_hf("b_latest2/10");
    make_dir("b_latest2/007");
    make_dir("b_latest2/0");
    make_dir("b_latest2/notes");
    write_text("b_latest2/42", "a file, not a folder\n");

    /* all {} */
    make_dir("c_all");
    write_text("c_all/config.pbtxt", "version_policy { all { } }\n");
    make_hf("c_all/1");
    make_hf("c_all/2");
    make_hf("c_all/5");

    /* specific { versions: [3, 1] } over 1, 2, 3 */
    make_dir("d_specific");
    write_text("d_specific/config.pbtxt", "version_policy { specific { versions: [ 3, 1 ] } }\n");
    make_hf("d_specific/1");
    make_hf("d_specific/2");
    make_hf("d_specific/3");

    /* specific version that has no folder */
    make_dir("e_specific_missing");
    write_text("e_specific_missing/config.pbtxt", "version_policy { specific { versions: 4 } }\n");
    make_hf("e_specific_missing/1");

    /* no versions at all */
    make_dir("f_no_versions");
    write_text("f_no_versions/config.pbtxt", "name: \"f_no_versions\"\nbackend: \"tessera\"\n");

    /* a syntax error */
    make_dir("g_broken");
    write_text("g_broken/config.pbtxt", "name: \"g_broken\"\ninstance_group [ { kind: KIND_GPU count: 1 }\n");
    make_hf("g_broken/1");

    /* the configuration names another model */
    make_dir("h_wrong_name");
    write_text("h_wrong_name/config.pbtxt", "# copied from elsewhere\nname: \"other_model\"\n");
    make_hf("h_wrong_name/1");

    /* GGUF file in the version folder */
    make_dir("i_gguf/1");
    write_text("i_gguf/config.pbtxt",
               "parameters: [ { key: \"MODEL_QUANTIZATION\" value: { string_value: \"q8_0:token_embd=f16\" } } ]\n");
    link_shared("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", "i_gguf/1/qwen3-tiny-tok-q8_0.gguf");

    /* a Hugging Face directory inside the version folder */
    make_dir("j_subfolder/1");
    write_text("j_subfolder/config.pbtxt", "");
    make_hf("j_subfolder/1/Qwen3-small");
    write_text("j_subfolder/1/README.md", "weights from the hub\n");

    /* no config.pbtxt: Triton's defaults, name from the folder */
    make_hf("k_no_config/1");

    /* an empty version folder */
    make_dir("l_empty_version/1");
    write_text("l_empty_version/config.pbtxt", "");

    /* two GGUF files: ambiguous without default_model_filename, fine with it */
    make_dir("m_two_gguf/1");
    link_shared("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", "m_two_gguf/1/a.gguf");
    link_shared("testdata/gguf/qwen3-tiny-tok-bf16.gguf", "m_two_gguf/1/b.gguf");
    make_dir("n_default_filename/1");
    write_text("n_default_filename/config.pbtxt", "default_model_filename: \"b.gguf\"\n");
    link_shared("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", "n_default_filename/1/a.gguf");
    link_shared("testdata/gguf/qwen3-tiny-tok-bf16.gguf", "n_default_filename/1/b.gguf");

    /* vLLM's model.json: a local path works, a hub id does not */
    make_dir("o_model_json/1");
    write_text("o_model_json/config.pbtxt", "backend: \"vllm\"\n");
    write_text("o_model_json/1/model.json", "{\"model\": \"../../k_no_config/1\", \"gpu_memory_utilization\": 0.5}\n");
    make_dir("p_hub_id/1");
    write_text("p_hub_id/1/model.json", "{\"model\": \"Qwen/Qwen3-0.6B\"}\n");

    /* a file that is not GGUF despite its name; an unsupported architecture */
    make_dir("q_fake_gguf/1");
    write_text("q_fake_gguf/1/model.gguf", "this is text\n");
    make_dir("r_bad_arch/1");
    write_text("r_bad_arch/1/config.json", "{\"model_type\": \"mamba\", \"vocab_size\": 10}\n");
    write_text("r_bad_arch/1/model.safetensors", "x");

    /* the seed's configuration template exactly as written */
    make_hf("s_seed/1");
    char *seed = seed_template();
    write_text("s_seed/config.pbtxt", seed);
    free(seed);

    /* not models: files at the top and hidden folders */
    write_text("README.md", "models\n");
    make_dir(".cache/1");
    return 0;
}

static const ts_repo_model *find(const ts_repo *r, const char *name) {
    const ts_repo_model *m = ts_repo_find(r, name);
    if (!m) fail_msg("model %s not found", name);
    return m;
}

static void expect_ok(const ts_repo *r, const char *name, const int64_t *versions, int n) {
    const ts_repo_model *m = find(r, name);
    if (!m->ok) fail_msg("%s failed: %s", name, m->error);
    assert_int_equal(m->num_versions, n);
    for (int i = 0; i < n; i++) assert_int_equal(m->versions[i].version, versions[i]);
    assert_string_equal(m->config->name, name);
}

static void expect_error(const ts_repo *r, const char *name, const char *expected_fmt) {
    const ts_repo_model *m = find(r, name);
    if (m->ok) fail_msg("%s loaded but should fail", name);
    char expected[4096];
    snprintf(expected, sizeof expected, expected_fmt, g_repo, g_repo, g_repo);
    if (strcmp(m->error, expected) != 0) fail_msg("%s:\nexpected: %s\n   found: %s", name, expected, m->error);
}

static void test_scan(void **state) {
    (void)state;
    ts_repo repo;
    ts_error err = {{0}};
    assert_int_equal(ts_repo_scan(g_repo, &repo, &err), 0);
    assert_int_equal(repo.num_models, 19);
    /* sorted by name; the hidden folder and the file are not models */
    assert_string_equal(repo.models[0].name, "a_latest");
    assert_string_equal(repo.models[18].name, "s_seed");
    assert_int_equal(ts_repo_num_ok(&repo), 10);

    expect_ok(&repo, "a_latest", (int64_t[]){10}, 1);
    expect_ok(&repo, "b_latest2", (int64_t[]){3, 10}, 2);
    assert_int_equal(find(&repo, "b_latest2")->num_found_versions, 3);
    expect_ok(&repo, "c_all", (int64_t[]){1, 2, 5}, 3);
    expect_ok(&repo, "d_specific", (int64_t[]){1, 3}, 2);
    expect_ok(&repo, "i_gguf", (int64_t[]){1}, 1);
    expect_ok(&repo, "j_subfolder", (int64_t[]){1}, 1);
    expect_ok(&repo, "k_no_config", (int64_t[]){1}, 1);
    expect_ok(&repo, "n_default_filename", (int64_t[]){1}, 1);
    expect_ok(&repo, "o_model_json", (int64_t[]){1}, 1);
    expect_ok(&repo, "s_seed", (int64_t[]){1}, 1);

    char want[2048];
    const ts_repo_version *v = ts_repo_latest(find(&repo, "a_latest"));
    snprintf(want, sizeof want, "%s/a_latest/10", g_repo);
    assert_string_equal(v->model_path, want);
    assert_int_equal(v->format, TS_REPO_FORMAT_HF);
    assert_string_equal(v->model_type, "qwen3");

    v = ts_repo_latest(find(&repo, "i_gguf"));
    assert_int_equal(v->format, TS_REPO_FORMAT_GGUF);
    snprintf(want, sizeof want, "%s/i_gguf/1/qwen3-tiny-tok-q8_0.gguf", g_repo);
    assert_string_equal(v->model_path, want);
    assert_int_equal(find(&repo, "i_gguf")->config->quantization.kind, TS_QUANT_EXACT);
    /* with a rule after the colon, as `--quant` takes it */
    assert_int_equal(find(&repo, "i_gguf")->config->quantization.n_overrides, 1);
    assert_int_equal(find(&repo, "i_gguf")->config->quantization.overrides[0].role, TS_ROLE_EMBEDDING);
    assert_int_equal(find(&repo, "i_gguf")->config->quantization.overrides[0].dtype, TS_DTYPE_F16);

    v = ts_repo_latest(find(&repo, "j_subfolder"));
    snprintf(want, sizeof want, "%s/j_subfolder/1/Qwen3-small", g_repo);
    assert_string_equal(v->model_path, want);

    assert_false(find(&repo, "k_no_config")->has_config_file);
    v = ts_repo_latest(find(&repo, "n_default_filename"));
    snprintf(want, sizeof want, "%s/n_default_filename/1/b.gguf", g_repo);
    assert_string_equal(v->model_path, want);
    v = ts_repo_latest(find(&repo, "o_model_json"));
    snprintf(want, sizeof want, "%s/o_model_json/1/../../k_no_config/1", g_repo);
    assert_string_equal(v->model_path, want);

    /* the seed's model: folder name, accelerators and parameters as the template writes them */
    const ts_repo_model *seed = find(&repo, "s_seed");
    assert_false(seed->config->has_name);
    assert_string_equal(seed->config->cpu_accelerators[0].name, "amx");
    assert_string_equal(seed->config->gpu_accelerators[0].name, "mps");
    assert_int_equal(seed->config->quantization.kind, TS_QUANT_INT4);
    assert_int_equal(seed->config->cpu_fallback, 1);

    expect_error(&repo, "e_specific_missing",
                 "%s/e_specific_missing: version_policy specific asks for version 4, which has no folder (found: 1 "
                 "version folder)");
    expect_error(&repo, "f_no_versions",
                 "%s/f_no_versions: no version folders (numeric subfolders such as 1/ holding the model)");
    expect_error(&repo, "g_broken",
                 "%s/g_broken/config.pbtxt:3:1: expected ',' or ']' in the list opened at 2:16, found end of input");
    expect_error(
        &repo, "h_wrong_name",
        "%s/h_wrong_name/config.pbtxt:2:7: the configuration names the model \"other_model\" but its folder is "
        "\"h_wrong_name\"");
    expect_error(&repo, "l_empty_version",
                 "version 1: %s/l_empty_version/1: holds no model (expected config.json with .safetensors, a .gguf "
                 "file, or one folder holding them)");
    expect_error(&repo, "m_two_gguf",
                 "version 1: %s/m_two_gguf/1: holds 2 .gguf file(s), 0 model folder(s); name the one to use with "
                 "default_model_filename");
    expect_error(
        &repo, "p_hub_id",
        "version 1: %s/p_hub_id/1/model.json: \"model\" is \"Qwen/Qwen3-0.6B\", which is not a local directory "
        "(tessera does not download models)");
    expect_error(&repo, "q_fake_gguf",
                 "version 1: %s/q_fake_gguf/1/model.gguf: not a GGUF file (the first bytes are not \"GGUF\")");
    expect_error(&repo, "r_bad_arch",
                 "version 1: %s/r_bad_arch/1/config.json: unknown architecture \"mamba\" (supported: llama, qwen2, "
                 "qwen3, qwen3_moe, gpt2)");
    ts_repo_free(&repo);
}

static void test_missing_repository(void **state) {
    (void)state;
    ts_repo repo;
    ts_error err = {{0}};
    assert_int_equal(ts_repo_scan("/nonexistent/tessera-repo", &repo, &err), -1);
    assert_string_equal(err.message, "model repository /nonexistent/tessera-repo cannot be read");
}

static void test_default_filename_cannot_escape(void **state) {
    (void)state;
    ts_repo_version v;
    ts_error err = {{0}};
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/n_default_filename/1", g_repo);
    assert_int_equal(ts_repo_resolve_version(dir, "../../k_no_config/1", &v, &err), -1);
    assert_string_equal(err.message, "default_model_filename \"../../k_no_config/1\" may not leave the version folder");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_missing_repository),
        cmocka_unit_test(test_default_filename_cannot_escape),
    };
    return cmocka_run_group_tests(tests, setup_repo, NULL);
}
