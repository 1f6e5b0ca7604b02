/* model_dir.h - where the default model is: `ssmd serve` and `ssmd
 * generate` without --model find models/default the way an installed
 * daemon finds its data, not in whatever directory they were started from.
 *
 * Start-up only (main's thread, before anything runs); never touches the
 * model files beyond checking that config.json is there.
 */
#ifndef SSMD_SRV_MODEL_DIR_H
#define SSMD_SRV_MODEL_DIR_H

#include <stddef.h>

/* The --model value that means "the default model". */
#define SRV_MODEL_DEFAULT "models/default"

/* Resolves *model in place when it is SRV_MODEL_DEFAULT (it is freed and
 * replaced by a malloc'ed path); any other value is left as given
 * (relative to the current directory).  The default is looked for, in
 * order: next to the binary (DIR/models/default and DIR/../models/default,
 * DIR being the directory of /proc/self/exe: an unpacked tree or the
 * repository's build/), then $SSMD_MODEL, then the install prefix
 * (DIR/../share/ssmd/models/default, where `make install` puts it), and
 * last ./models/default.  The path found is made absolute.
 * Returns 0, or -1 with `looked` (cap bytes) listing every place tried. */
int srv_model_dir_resolve(char **model, char *looked, size_t cap);

#endif
