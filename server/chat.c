/* chat.c - which chat template a model gets and how messages reach it (see
 * chat.h).
 *
 * Only srv_chat_load touches files (at start-up); never blocks afterwards,
 * never touches the engine.
 */
#include "server/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/parse.h"
#include "engine/xalloc.h"

#define CONFIG_MAX_BYTES (16L << 20)

/* A special token as tokenizer_config.json writes it: "text" or
 * {"content": "text", ...} (an AddedToken). */
static char *token_text(const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static int file_small(const char *path, long max)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= max;
}

/* The template text from the config: a string, or the entry named
 * "default" of a list of {"name", "template"}.  NULL (why set) if none. */
static const json_t *config_template(const json_t *cfg, char *why, size_t cap)
{
    const json_t *t = json_object_get(cfg, "chat_template");
    if (json_is_string(t))
        return t;
    if (json_is_array(t)) {
        size_t i;
        const json_t *e;
        json_array_foreach(t, i, e) {
            const json_t *name = json_object_get(e, "name");
            if (json_is_string(name) && !strcmp(json_string_value(name), "default") &&
                json_is_string(json_object_get(e, "template")))
                return json_object_get(e, "template");
        }
        snprintf(why, cap, "tokenizer_config.json has named chat templates but none called 'default'");
        return NULL;
    }
    snprintf(why, cap, t ? "tokenizer_config.json's chat_template is not a string" : "no chat_template");
    return NULL;
}

/* Reads path (at most max bytes) into a malloc'ed string. */
static char *read_text(const char *path, long max, size_t *len)
{
    if (!file_small(path, max))
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc((size_t)max + 1);
    size_t n = buf ? fread(buf, 1, (size_t)max, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

int srv_chat_load(srv_chat *c, const char *model_dir, char *why, size_t why_cap)
{
    memset(c, 0, sizeof *c);
    snprintf(why, why_cap, "no tokenizer_config.json");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    json_t *cfg = NULL;
    if (file_small(path, CONFIG_MAX_BYTES)) {
        json_error_t je;
        cfg = json_load_file(path, JSON_DECODE_ANY, &je);
        if (!json_is_object(cfg)) {
            snprintf(why, why_cap, "tokenizer_config.json is not a JSON object (%s)", je.text);
            json_decref(cfg);
            return 0;
        }
        c->bos_token = token_text(cfg, "bos_token");
        c->eos_token = token_text(cfg, "eos_token");
        c->unk_token = token_text(cfg, "unk_token");
        c->pad_token = token_text(cfg, "pad_token");
    }
    const json_t *t = cfg ? config_template(cfg, why, why_cap) : NULL;
    char *text = NULL;
    size_t len = 0;
    const char *src = NULL;
    if (t) {
        src = json_string_value(t);
        len = json_string_length(t);
    } else {
        /* newer transformers save the template beside the config */
        snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
        text = read_text(path, SRV_TMPL_MAX_SOURCE + 1, &len);
        src = text;
    }
    int used = 0;
    if (src) {
        char reason[200];
        c->tmpl = srv_tmpl_compile(src, len, reason, sizeof reason);
        if (c->tmpl)
            used = 1;
        else
            snprintf(why, why_cap, "the model's chat template is outside the supported subset: %s", reason);
    }
    free(text);
    json_decref(cfg);
    return used;
}

void srv_chat_free(srv_chat *c)
{
    srv_tmpl_free(c->tmpl);
    free(c->bos_token);
    free(c->eos_token);
    free(c->unk_token);
    free(c->pad_token);
    memset(c, 0, sizeof *c);
}

/* A copy of messages with each content a string (parts joined, null as
 * ""), or NULL with err set. */
static json_t *normalize(const json_t *messages, ssmd_err *err)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        ssmd_err_set(err, SSMD_EINVAL, "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || json_string_length(role) == 0 ||
            json_string_length(role) > 64) {
            ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu].role' must be a short non-empty string", i);
            json_decref(out);
            return NULL;
        }
        if (strlen(json_string_value(role)) != json_string_length(role) ||
            (json_is_string(content) && strlen(json_string_value(content)) != json_string_length(content))) {
            ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu]' contains a NUL character", i);
            json_decref(out);
            return NULL;
        }
        json_t *copy = json_copy((json_t *)m);
        if (json_is_array(content)) {
            json_t *joined = json_string("");
            size_t k;
            const json_t *part;
            json_array_foreach(content, k, part) {
                const json_t *text = srv_chat_part_text(part);
                if (!text) {
                    ssmd_err_set(err, SSMD_EINVAL,
                                 "'messages[%zu].content[%zu]' must be {\"type\":\"text\",\"text\":...}", i, k);
                    json_decref(joined);
                    json_decref(copy);
                    json_decref(out);
                    return NULL;
                }
                size_t a = json_string_length(joined), b = json_string_length(text);
                char *buf = xmalloc(a + b + 1);
                memcpy(buf, json_string_value(joined), a);
                memcpy(buf + a, json_string_value(text), b);
                json_string_setn(joined, buf, a + b);
                free(buf);
            }
            json_object_set_new(copy, "content", joined);
        } else if (!content || json_is_null(content)) {
            json_object_set_new(copy, "content", json_string(""));
        } else if (!json_is_string(content)) {
            ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu].content' must be a string or an array of parts", i);
            json_decref(copy);
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, copy);
    }
    return out;
}

char *srv_chat_apply(const srv_chat *c, const json_t *messages, int add_generation_prompt,
                     const char *default_eos, ssmd_err *err)
{
    json_t *msgs = normalize(messages, err);
    if (!msgs)
        return NULL;
    char *text;
    if (c && c->tmpl) {
        srv_tmpl_vars v;
        memset(&v, 0, sizeof v);
        v.messages = msgs;
        v.add_generation_prompt = add_generation_prompt;
        v.bos_token = c->bos_token;
        v.eos_token = c->eos_token;
        v.unk_token = c->unk_token;
        v.pad_token = c->pad_token;
        v.max_output = c->max_output;
        size_t len;
        text = srv_tmpl_render(c->tmpl, &v, &len, err);
        if (text && strlen(text) != len) { /* a NUL from an escape: not a prompt */
            free(text);
            text = NULL;
            ssmd_err_set(err, SSMD_EINVAL, "chat template: the rendered prompt contains a NUL byte");
        }
    } else {
        text = srv_chat_render(msgs, default_eos ? default_eos : "", add_generation_prompt, err);
    }
    json_decref(msgs);
    return text;
}
