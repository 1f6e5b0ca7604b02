/* body_json.c - a request body as a JSON object, and the parser's
 * complaints said in the user's words: jansson's messages name its own
 * flags ("not allowed without JSON_ALLOW_NUL"), which mean nothing to
 * someone sending a request.
 *
 * Any Content-Type is accepted: the body of a JSON route is parsed as JSON
 * whatever the header says (curl -d sends application/x-www-form-urlencoded),
 * as proto/openapi.yaml documents.  Loop thread; never touches the engine.
 */
#include "server/srv.h"

#include <stdio.h>
#include <string.h>

/* jansson's message (its start) -> what we tell the user. */
static const struct {
    const char *jansson, *ours;
} json_phrases[] = {
    {"\\u0000 is not allowed", "strings may not contain the NUL character (\\u0000)"},
    {"duplicate object key", "the same key appears twice in one object"},
    {"too big integer", "a number is too large (integers must fit in 64 bits)"},
    {"too big negative integer", "a number is too large (integers must fit in 64 bits)"},
    {"real number overflow", "a number is too large"},
    {"'[' or '{' expected", "the request body must be a JSON object"},
    {"end of file expected", "there is more text after the JSON object"},
    {"unexpected newline", "a string is cut by a line break (write it as \\n)"},
    {"control character", "a string holds a control character (escape it, e.g. \\n or \\t)"},
    {"premature end of input", "the JSON ends too early (is the body cut short?)"},
    {"unexpected end of file", "the JSON ends too early (is the body cut short?)"},
    {"maximum parsing depth reached", "the JSON is nested too deeply"},
    {"invalid token", "this is not valid JSON"},
    {"unable to decode byte", "the body is not valid UTF-8"},
};

json_t *srv_body_json(srv_conn *c)
{
    json_error_t je;
    if (c->body.len == 0) {
        srv_reply_error(c, SSMD_EFORMAT, "the request body is empty: send a JSON object");
        return NULL;
    }
    json_t *j = json_loadb(c->body.p, c->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        const char *what = je.text, *near = strstr(je.text, " near ");
        for (size_t i = 0; i < sizeof json_phrases / sizeof json_phrases[0]; i++)
            if (!strncmp(je.text, json_phrases[i].jansson, strlen(json_phrases[i].jansson))) {
                what = json_phrases[i].ours;
                break;
            }
        char msg[400];
        snprintf(msg, sizeof msg, "the body is not valid JSON at line %d column %d: %s%s", je.line, je.column, what,
                 what != je.text && near ? near : "");
        srv_reply_error(c, SSMD_EFORMAT, msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_reply_error(c, SSMD_EFORMAT, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}
