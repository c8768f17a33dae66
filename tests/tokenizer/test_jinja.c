/* The Jinja interpreter construct by construct: each template below renders with the variables in
 * k_vars to exactly the text that jinja2 3.1 produces in transformers' environment (trim_blocks,
 * lstrip_blocks, loop controls, tojson with ensure_ascii=False); the expected texts were produced by
 * that environment. Then the errors: unsupported constructs name themselves and their line:col, and the
 * limits stop hostile templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/testlib.h"
#include "tokenizer/jinja.h"

typedef struct jinja_case {
    const char *tpl;
    const char *want;
} jinja_case;

static const jinja_case k_cases[] = {
    {"plain text",
     "plain text"},
    {"a {{- ' b ' -}} c",
     "a b c"},
    {"a {{ 'b' }}\n  c  {{- 'd' }}",
     "a b\n  cd"},
    {"  {% if true %}\n  yes\n  {% endif %}\nafter",
     "  yes\nafter"},
    {"x  {%+ if true %}y{% endif %}",
     "x  y"},
    {"a\n  {# note #}\nb",
     "a\nb"},
    {"a {#- note -#}   b",
     "ab"},
    {"line1\r\nline2\rline3\n",
     "line1\nline2\nline3"},
    {"{% if true %}\nA\n{% endif %}\n\n",
     "A\n"},
    {"{% for i in [1, 2] %}\n  - {{ i }}\n{% endfor %}\n",
     "  - 1\n  - 2\n"},
    {"\t{% set x = 1 %}\n{{ x }}",
     "1"},
    {"{{ 1 }}\n{{ 2 }}\n",
     "1\n2"},
    {"{% if n > 10 %}big{% elif n > 5 %}mid{% else %}small{% endif %}",
     "mid"},
    {"{% if none %}a{% elif e %}b{% else %}c{% endif %}",
     "c"},
    {"{% if not e and (t or none) %}ok{% endif %}",
     "ok"},
    {"{% for m in msgs %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}",
     "1/3:system,2/3:user,3/3:assistant"},
    {"{% for x in l %}[{{ loop.index0 }} {{ loop.revindex }} {{ loop.revindex0 }} {{ loop.first }} {{ loop.last }}]{% endfor %}",
     "[0 3 2 True False][1 2 1 False False][2 1 0 False True]"},
    {"{% for x in l %}{{ loop.previtem if loop.previtem is defined else '-' }}>{{ x }}<{{ loop.nextitem | default('-') }} {% endfor %}",
     "->3<1 3>1<2 1>2<- "},
    {"{% for x in e %}x{% else %}empty{% endfor %}",
     "empty"},
    {"{% for x in l if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}",
     "3/2 2/2 "},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
     "b=2;a=1;c=[1, 2];"},
    {"{% for k in d %}{{ k }}{% endfor %}",
     "bac"},
    {"{% for c in 'h\303\251llo' %}{{ c }}.{% endfor %}",
     "h.\303\251.l.l.o."},
    {"{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "0134"},
    {"{% for x in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}",
     "abab"},
    {"{% for x in range(2, 11, 3) %}{{ x }} {% endfor %}{{ range(3) | list }}",
     "2 5 8 [0, 1, 2]"},
    {"{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}",
     "1x1 1y2 1|2x1 2y2 2|"},
    {"{% set x = 1 %}{% for i in l %}{% set x = i %}{% endfor %}{{ x }}",
     "1"},
    {"{% set ns = namespace(found=false, n=0) %}{% for i in l %}{% if i > 2 %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.found }} {{ ns.n }}",
     "True 6"},
    {"{% set a, b = [1, 2] %}{{ b }}{{ a }}",
     "21"},
    {"{% set block %}inner {{ n }}{% endset %}[{{ block }}]",
     "[inner 7]"},
    {"{% for i in [1,2,3] %}{% if loop.first %}{% set x = 5 %}{% endif %}[{{ x }}]{% endfor %}",
     "[5][][]"},
    {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}",
     "Hi A! Hi B? Hi C."},
    {"{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('a') ~ m('b') }}",
     "<a><b>"},
    {"{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }}",
     "7 9 64 3 -4 1 2 3.5 2.0"},
    {"{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-7 }} {{ 3.0 }} {{ 1e16 }} {{ 123456789.125 }} {{ -0.0 }}",
     "2.5 0.30000000000000004 1e+20 1e-07 3.0 1e+16 123456789.125 -0.0"},
    {"{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 'x' + 'y' }}",
     "a1NoneTrue ababab [1, 1] [1, 2] xy"},
    {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'a' != 'a' }} {{ [1,2] == [1,2] }}",
     "True False True True False True"},
    {"{{ 'ell' in s }} {{ 'x' not in s }} {{ 2 in l }} {{ 'a' in d }} {{ 'z' in d }}",
     "True True True True False"},
    {"{{ s[0] }}{{ s[-1] }} {{ s[1:4] }} {{ s[::-1] }} {{ s[:5] }} {{ s[7:] }} {{ l[::2] }} {{ l[-2:] }} {{ u[1:3] }}",
     "Hd ell dlroW ,olleH Hello World [3, 2] [1, 2] a\303\257"},
    {"{{ msgs[1]['content'] }} {{ msgs[1].role }} {{ d.c[1] }} {{ d['c'][0] }} {{ msgs[-1].content }}",
     "Hi user 2 1 Yo"},
    {"{{ 'yes' if t else 'no' }} {{ 'yes' if e else 'no' }} [{{ 'x' if false }}]",
     "yes no []"},
    {"{{ -n }} {{ +n }} {{ not t }} {{ -f }}",
     "-7 7 False -2.5"},
    {"{{ [1, 'a', none, true, 1.5, {'k': [2]}] }} {{ {'a': 'it\\'s'} }} {{ d }}",
     "[1, 'a', None, True, 1.5, {'k': [2]}] {'a': \"it's\"} {'b': 2, 'a': 1, 'c': [1, 2]}"},
    {"{{ none }} {{ t }} {{ undefined_var }}|{{ d.missing }}|",
     "None True ||"},
    {"{{ 'a\\tb\\n' }}{{ \"q\\\"q\" }}{{ '\\u00e9\\x41' }}",
     "a\tb\nq\"q\303\251A"},
    {"{{ 'adjacent' ' strings' }}",
     "adjacent strings"},
    {"{{ l | length }} {{ s | length }} {{ u | length }} {{ d | count }} {{ undefined_var | length }}",
     "3 12 9 3 0"},
    {"[{{ '  pad  ' | trim }}] [{{ 'xxhixx' | trim('x') }}]",
     "[pad] [hi]"},
    {"{{ s | lower }} {{ s | upper }} {{ 'hello world' | capitalize }} {{ 'hello wORLD' | title }} {{ u | upper }}",
     "hello, world HELLO, WORLD Hello world Hello World NA\303\217VE \303\211T\303\211"},
    {"{{ undefined_var | default('dflt') }} {{ '' | default('empty', true) }} {{ 0 | d('zero', boolean=true) }} {{ n | default(3) }}",
     "dflt empty zero 7"},
    {"{{ l | join(', ') }} {{ people | join('/', attribute='name') }} {{ [1, none, 'x'] | join }}",
     "3, 1, 2 Ann/Bob/cy 1Nonex"},
    {"{{ l | first }} {{ l | last }} {{ s | first }} {{ e | first is defined }}",
     "3 2 H False"},
    {"{{ d | items | list }} {{ 'ab' | list }} {{ d | list }}",
     "[('b', 2), ('a', 1), ('c', [1, 2])] ['a', 'b'] ['b', 'a', 'c']"},
    {"{{ s | replace('l', 'L') }} {{ s | replace('l', '', 1) }} {{ 'aaa' | replace('a', 'bb') }}",
     "HeLLo, WorLd Helo, World bbbbbb"},
    {"{{ '42' | int + 1 }} {{ '3.9' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 2.7 | int }} {{ true | int }} {{ '2.5' | float }} {{ 3 | float }}",
     "43 3 0 7 2 1 2.5 3.0"},
    {"{{ n | string ~ '!' }} {{ l | string }} {{ none | string }} {{ 'x' | safe }}",
     "7! [3, 1, 2] None x"},
    {"{{ -3 | abs }} {{ (-3) | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 2.1 | round(method='ceil') }}",
     "3 3 2.57 2.0 3.0"},
    {"{{ l | sort }} {{ l | sort(reverse=true) }} {{ people | sort(attribute='age') | map(attribute='name') | list }} {{ ['b', 'A', 'c'] | sort }}",
     "[1, 2, 3] [3, 2, 1] ['Bob', 'Ann', 'cy'] ['A', 'b', 'c']"},
    {"{{ l | reverse | list }} {{ 'abc' | reverse }} {{ [1, 2, 1, 3, 2] | unique | list }} {{ l | sum }} {{ people | sum(attribute='age') }} {{ l | min }} {{ l | max }}",
     "[2, 1, 3] cba [1, 2, 3] 6 96 1 3"},
    {"{{ people | selectattr('admin') | map(attribute='name') | list }} {{ people | rejectattr('admin') | map(attribute='name') | list }}",
     "['Ann'] ['Bob', 'cy']"},
    {"{{ people | selectattr('age', 'gt', 28) | map(attribute='name') | join(',') }} {{ people | selectattr('admin', 'defined') | list | length }}",
     "Ann,cy 2"},
    {"{{ people | map(attribute='missing', default='?') | list }} {{ ['a', 'B'] | map('upper') | list }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3] | reject('odd') | list }}",
     "['?', '?', '?'] ['A', 'B'] [2, 4] [2]"},
    {"{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(4, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}",
     "a\n  b\n\n  c|    a\n    b|a\n  \n  b"},
    {"{{ '<a href=\"x\">&' | escape }} {{ people[0] | attr('name') }} {{ 'one two  three' | wordcount }}",
     "&lt;a href=&#34;x&#34;&gt;&amp;  3"},
    {"{{ d | tojson }} {{ people[0] | tojson(indent=2) }} {{ {'k': '\303\251\"\\n'} | tojson }} {{ {'k': '\303\251'} | tojson(ensure_ascii=true) }}",
     "{\"b\": 2, \"a\": 1, \"c\": [1, 2]} {\n  \"name\": \"Ann\",\n  \"age\": 30,\n  \"admin\": true\n} {\"k\": \"\303\251\\\"\\n\"} {\"k\": \"\\u00e9\"}"},
    {"{{ d | tojson(sort_keys=true) }} {{ [1, 2.0, none, true, 'x'] | tojson }} {{ {} | tojson(indent=2) }} {{ [[]] | tojson(indent=1) }}",
     "{\"a\": 1, \"b\": 2, \"c\": [1, 2]} [1, 2.0, null, true, \"x\"] {} [\n []\n]"},
    {"{{ d | tojson(separators=(',', ':')) }} {{ '\360\237\230\200' | tojson(ensure_ascii=true) }} {{ 1e100 | tojson }}",
     "{\"b\":2,\"a\":1,\"c\":[1,2]} \"\\ud83d\\ude00\" 1e+100"},
    {"{% filter upper %}shout {{ n }}{% endfilter %}",
     "SHOUT 7"},
    {"{{ n is defined }} {{ nope is undefined }} {{ none is none }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ l is sequence }} {{ n is number }}",
     "True True True True True True True True"},
    {"{{ n is integer }} {{ f is float }} {{ t is boolean }} {{ t is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }}",
     "True True True True False True False True False True"},
    {"{{ n is eq 7 }} {{ n is ne(7) }} {{ n is gt 3 }} {{ n is lt(3) }} {{ n is ge 7 }} {{ n is le 6 }} {{ 2 is in l }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ none is sameas none }} {{ n is not none }}",
     "True False True False True False True True True True True"},
    {"{% macro greet() %}{% endmacro %}{{ greet is callable }} {{ range is callable }} {{ n is callable }}",
     "True True False"},
    {"{{ (1,) }} {{ (1, 'a') }} {{ () }} {{ d.items() | first }}",
     "(1,) (1, 'a') () ('b', 2)"},
    {"{{ s.startswith('Hell') }} {{ s.endswith(('x', 'World')) }} {{ s.split(', ') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}",
     "True True ['Hello', 'World'] ['a', 'b'] ['a', 'b,c']"},
    {"[{{ '  x  '.strip() }}] [{{ '\\n\\nx\\n'.lstrip('\\n') }}] [{{ 'x..'.rstrip('.') }}] {{ s.upper() }} {{ s.lower() }} {{ 'ab cd'.title() }} {{ 'aB'.capitalize() }}",
     "[x] [x\n] [x] HELLO, WORLD hello, world Ab Cd Ab"},
    {"{{ s.replace('o', '0') }} {{ s.find('World') }} {{ s.find('z') }} {{ 'banana'.count('a') }} {{ '-'.join(['a', 'b']) }} {{ '12'.isdigit() }} {{ ' '.isspace() }} {{ 'ab'.isalpha() }}",
     "Hell0, W0rld 7 -1 3 a-b True True True"},
    {"{{ d.get('a') }} {{ d.get('z', 'none') }} {{ d.get('z') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}",
     "1 none None ['b', 'a', 'c'] [2, 1, [1, 2]] [('b', 2), ('a', 1), ('c', [1, 2])]"},
    {"{% set c = msgs[2].content %}{{ ('<think>x</think>Y').split('</think>')[-1].lstrip('\\n') }}",
     "Y"},
    {"{{ dict(a=1, b='x') }} {{ namespace(a=1).a }}",
     "{'a': 1, 'b': 'x'} 1"},
};
static const char k_vars[] = "{\"msgs\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2]}, \"s\": \"Hello, World\", \"n\": 7, \"f\": 2.5, \"l\": [3, 1, 2], \"e\": [], \"u\": \"na\303\257ve \303\211T\303\211\", \"none\": null, \"t\": true, \"people\": [{\"name\": \"Ann\", \"age\": 30, \"admin\": true}, {\"name\": \"Bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 41, \"admin\": false}]}";

static int render(const char *tpl, const char *vars_json, const ts_jinja_limits *lim, char **out, ts_error *err) {
    ts_jinja_template *t;
    *out = NULL;
    if (ts_jinja_parse(tpl, strlen(tpl), "t.jinja", &t, err)) return -1;
    json_error_t je;
    json_t *vars = json_loads(vars_json ? vars_json : "{}", 0, &je);
    if (!vars) fail_msg("bad JSON in test: %s", je.text);
    size_t len;
    int rc = ts_jinja_render(t, vars, lim, out, &len, err);
    if (rc == 0) assert_int_equal(strlen(*out), len);
    json_decref(vars);
    ts_jinja_free(t);
    return rc;
}

static void test_constructs_match_jinja2(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        char *out;
        ts_error err = {{0}};
        if (render(k_cases[i].tpl, k_vars, NULL, &out, &err)) {
            fprintf(stderr, "case %zu %s\n  error: %s\n", i, k_cases[i].tpl, err.message);
            failures++;
            continue;
        }
        if (strcmp(out, k_cases[i].want)) {
            fprintf(stderr, "case %zu %s\n  got  [%s]\n  want [%s]\n", i, k_cases[i].tpl, out, k_cases[i].want);
            failures++;
        }
        free(out);
    }
    assert_int_equal(failures, 0);
}

static void expect_error(const char *tpl, const char *vars, const ts_jinja_limits *lim, const char *fragment) {
    char *out;
    ts_error err = {{0}};
    if (render(tpl, vars, lim, &out, &err) == 0) fail_msg("rendered without error: %s -> %s", tpl, out);
    assert_null(out);
    if (!strstr(err.message, fragment)) fail_msg("error \"%s\" lacks \"%s\"", err.message, fragment);
}

static void test_unsupported_constructs_are_named(void **state) {
    (void)state;
    expect_error("{% extends 'base.html' %}", NULL, NULL, "t.jinja:1:4: unsupported tag 'extends'");
    expect_error("a\n  {% include 'x' %}", NULL, NULL, "t.jinja:2:6: unsupported tag 'include'");
    expect_error("{% raw %}x{% endraw %}", NULL, NULL, "unsupported tag 'raw'");
    expect_error("{{ x | frobnicate }}", NULL, NULL, "t.jinja:1:8: unsupported filter 'frobnicate'");
    expect_error("{% if x is prime %}{% endif %}", NULL, NULL, "t.jinja:1:12: unsupported test 'prime'");
    expect_error("{% frob %}", NULL, NULL, "t.jinja:1:4: unknown tag 'frob'");
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, NULL, "unsupported construct: recursive for loops");
    expect_error("{{ f(*args) }}", NULL, NULL, "unsupported construct: *args");
    expect_error("{{ '%s' % 1 }}", NULL, NULL, "t.jinja:1:9: unsupported construct: %-formatting");
    expect_error("{{ 'x'.zfill(3) }}", NULL, NULL, "t.jinja:1:8: unsupported method 'zfill' of a str value");
    expect_error("{% set l = [] %}{{ l.append(1) }}", NULL, NULL, "list.append() (the sandbox forbids");
}

static void test_syntax_errors(void **state) {
    (void)state;
    expect_error("{% if x %}no end", NULL, NULL, "t.jinja:1:1: unexpected end of template: 'if' opened here was not closed (expected {% endif %})");
    expect_error("{% for x in y %}\n{% endif %}", NULL, NULL, "unexpected 'endif'");
    expect_error("{% endfor %}", NULL, NULL, "t.jinja:1:4: unexpected 'endfor'");
    expect_error("{{ x ", NULL, NULL, "unclosed {{ tag");
    expect_error("{# x ", NULL, NULL, "missing end of comment tag");
    expect_error("{{ 'abc }}", NULL, NULL, "unterminated string literal");
    expect_error("{{ 1 + }}", NULL, NULL, "t.jinja:1:8: expected an expression, found '}}'");
    expect_error("{{ a ) }}", NULL, NULL, "unexpected ')'");
    expect_error("{{ x @ y }}", NULL, NULL, "unexpected character '@'");
    expect_error("{% set x %}{% endfor %}", NULL, NULL, "unexpected 'endfor'");
    expect_error("\xff{{ x }}", NULL, NULL, "not valid UTF-8");
    /* eight hex digits above U+10FFFF, the largest past 32 signed bits (found by fuzz_jinja) */
    expect_error("{{ '\\U99999999' }}", NULL, NULL, "escape \\U99999999 is not a Unicode scalar value");
    expect_error("{{ '\\UFFFFFFFF' }}", NULL, NULL, "is not a Unicode scalar value");
    expect_error("{{ '\\uD800' }}", NULL, NULL, "escape \\uD800 is not a Unicode scalar value");
    /* deep nesting is refused, not a stack overflow */
    char deep[4000];
    size_t o = 0;
    o += (size_t)sprintf(deep + o, "{{ ");
    for (int i = 0; i < 1000; i++) deep[o++] = '(';
    deep[o++] = '1';
    for (int i = 0; i < 1000; i++) deep[o++] = ')';
    sprintf(deep + o, " }}");
    expect_error(deep, NULL, NULL, "nests deeper than");
}

static void test_runtime_errors(void **state) {
    (void)state;
    expect_error("{{ raise_exception('Only user and assistant roles are supported!') }}", NULL, NULL,
                 "t.jinja:1:4: template error: Only user and assistant roles are supported!");
    expect_error("{{ missing.attr }}", NULL, NULL, "t.jinja:1:4: 'missing' is undefined");
    expect_error("{{ d.x.y }}", "{\"d\": {}}", NULL, "'dict object' has no attribute 'x'");
    expect_error("{{ 1 / 0 }}", NULL, NULL, "division by zero");
    expect_error("{{ 1 < 'a' }}", NULL, NULL, "cannot compare int with str");
    expect_error("{% for x in 5 %}{% endfor %}", NULL, NULL, "'int' object is not iterable");
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, NULL, "integer overflow");
    expect_error("{% set ns = 3 %}{% set ns.a = 1 %}", NULL, NULL, "cannot assign attribute on non-namespace object 'ns'");
    expect_error("{{ x | tojson }}", NULL, NULL, "not JSON serializable");
}

static void test_limits(void **state) {
    (void)state;
    ts_jinja_limits lim = ts_jinja_default_limits();
    lim.max_steps = 100000;
    expect_error("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", NULL, &lim,
                 "exceeded 100000 evaluation steps");
    lim = ts_jinja_default_limits();
    lim.max_output = 1000;
    expect_error("{% for i in range(10000) %}xxxx{% endfor %}", NULL, &lim, "output exceeds 1000 bytes");
    lim = ts_jinja_default_limits();
    lim.max_memory = 1 << 20;
    expect_error("{{ 'abc' * 100000000 }}", NULL, &lim, "exceeds the memory limit");
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", NULL,
                 &lim, "memory");
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, "macro calls nest deeper than 64");
    expect_error("{{ range(100000000000) }}", NULL, NULL, "range of more than 10 million items");
    /* under the limits the same constructs work */
    char *out;
    ts_error err = {{0}};
    assert_int_equal(render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}", NULL,
                            NULL, &out, &err), 0);
    assert_string_equal(out, "012345");
    free(out);
    /* an empty string or list repeated any number of times is empty at once (the fuzzer found 2 ** 36 empty
     * copies made one by one) */
    assert_int_equal(render("{{ '' * 2 ** 36 }}x{{ ([] * 2 ** 36) | length }}", NULL, NULL, &out, &err), 0);
    assert_string_equal(out, "x0");
    free(out);
}

/* A Llama-3.1-style template written for this test: system date header, tools, bos_token, trimmed content. */
static void test_llama3_style_template(void **state) {
    (void)state;
    const char *tpl =
        "{{- bos_token }}\n"
        "{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content']|trim %}\n"
        "    {%- set messages = messages[1:] %}\n"
        "{%- else %}\n"
        "    {%- set system_message = \"\" %}\n"
        "{%- endif %}\n"
        "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
        "{%- if tools is not none %}\n"
        "    {{- \"Environment: ipython\\n\" }}\n"
        "{%- endif %}\n"
        "{{- \"Cutting Knowledge Date: December 2023\\n\\n\" }}\n"
        "{{- system_message }}\n"
        "{{- \"<|eot_id|>\" }}\n"
        "{%- for message in messages %}\n"
        "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}\n"
        "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
        "{%- endif %}\n";
    char *out;
    ts_error err = {{0}};
    const char *vars = "{\"bos_token\": \"<|begin_of_text|>\", \"tools\": null, \"add_generation_prompt\": true,"
                       " \"messages\": [{\"role\": \"system\", \"content\": \" Be brief. \"}, {\"role\": \"user\", \"content\": \"Hi \"}]}";
    if (render(tpl, vars, NULL, &out, &err)) fail_msg("%s", err.message);
    assert_string_equal(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                             "December 2023\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(out);
}

/* One parsed template rendered many times gives the same text each time (no state kept between renders). */
static void test_template_is_reusable(void **state) {
    (void)state;
    ts_jinja_template *t;
    ts_error err = {{0}};
    const char *src = "{% set ns = namespace(n=0) %}{% for m in msgs %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}";
    assert_int_equal(ts_jinja_parse(src, strlen(src), "t", &t, &err), 0);
    json_t *vars = json_loads(k_vars, 0, NULL);
    for (int i = 0; i < 3; i++) {
        char *out;
        size_t len;
        assert_int_equal(ts_jinja_render(t, vars, NULL, &out, &len, &err), 0);
        assert_string_equal(out, "3");
        free(out);
    }
    json_decref(vars);
    ts_jinja_free(t);
}

/* Randomly damaged versions of Qwen3's template (bytes flipped, deleted, duplicated, cut short) either
 * render or fail with a message; none may crash, hang or leak (this runs under ASan in CI). */
static void test_damaged_templates_fail_cleanly(void **state) {
    (void)state;
    char path[1024];
    size_t len;
    char *src = ts_test_read_file(ts_test_shared_path("testdata/qwen3-tiny-tok/chat_template.jinja", path, sizeof path), &len);
    const char *vars = "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"},"
                       " {\"role\": \"assistant\", \"content\": \"<think>r</think>a\", \"tool_calls\": [{\"function\":"
                       " {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]}, {\"role\": \"tool\", \"content\": \"t\"}],"
                       " \"tools\": [{\"name\": \"f\"}], \"add_generation_prompt\": true}";
    json_t *vj = json_loads(vars, 0, NULL);
    assert_non_null(vj);
    static const char alphabet[] = "{}%#-+()[]'\".|,=~ \nifendforsetxa0";
    uint64_t rng = 0xdeadbeef;
    char *buf = malloc(len * 2 + 16);
    int rendered = 0, failed = 0;
    for (int k = 0; k < 1500; k++) {
        memcpy(buf, src, len);
        size_t n = len;
        int edits = 1 + (int)(ts_test_rand(&rng) % 4);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = ts_test_rand(&rng) % n;
            switch (ts_test_rand(&rng) % 4) {
            case 0: buf[at] = alphabet[ts_test_rand(&rng) % (sizeof alphabet - 1)]; break;
            case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
            case 2: if (n < len * 2) { memmove(buf + at + 1, buf + at, n - at); n++; } break;
            default: n = at; break;
            }
        }
        ts_jinja_template *t;
        ts_error err = {{0}};
        ts_jinja_limits lim = ts_jinja_default_limits();
        lim.max_steps = 200000;
        if (ts_jinja_parse(buf, n, "damaged", &t, &err) == 0) {
            char *out;
            size_t ol;
            if (ts_jinja_render(t, vj, &lim, &out, &ol, &err) == 0) {
                rendered++;
                free(out);
            } else {
                assert_true(strlen(err.message) > 0);
                failed++;
            }
            ts_jinja_free(t);
        } else {
            assert_true(strlen(err.message) > 0);
            failed++;
        }
    }
    assert_true(rendered > 0 && failed > 0);
    free(buf);
    free(src);
    json_decref(vj);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructs_match_jinja2),
        cmocka_unit_test(test_unsupported_constructs_are_named),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_llama3_style_template),
        cmocka_unit_test(test_template_is_reusable),
        cmocka_unit_test(test_damaged_templates_fail_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
