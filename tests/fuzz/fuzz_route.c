/* fuzz_route.c - libFuzzer target: the request line -> route table lookup
 * (srv_route_match, srv_route_allow in server/routes.c).  The first byte
 * picks the method (or, past the known ones, the rest's first line is the
 * method), the rest is the URL with its query string; a match must be a row
 * of srv_routes for that method, and an {id} must fit its buffer.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *in = malloc(size);
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    const char *method, *url = in;
    size_t nm = sizeof methods / sizeof *methods;
    if (data[0] < nm) {
        method = methods[data[0]];
    } else {
        char *nl = strchr(in, '\n');
        method = in;
        url = nl ? (*nl = '\0', nl + 1) : "";
    }
    char id[64];
    memset(id, 0x55, sizeof id);
    int code = 0;
    const srv_route *r = srv_route_match(method, url, id, sizeof id, &code);
    if (r) {
        if (r < srv_routes || r >= srv_routes + srv_n_routes || strcmp(r->method, method) != 0)
            abort();
    } else if (code != SSMD_ENOTFOUND && code != SSMD_ENOMETHOD) {
        abort();
    }
    char small_id[8];
    srv_route_match(method, url, small_id, sizeof small_id, &code);
    char allow[64];
    srv_route_allow(url, allow, sizeof allow);
    if (strlen(allow) >= sizeof allow)
        abort();
    free(in);
    return 0;
}
