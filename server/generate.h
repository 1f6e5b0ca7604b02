/* generate.h - `ssmd generate`: one-shot generation on the command line. */
#ifndef SSMD_GENERATE_H
#define SSMD_GENERATE_H

/* argv[0] is "generate".  Returns the process exit code. */
int srv_generate_main(int argc, char **argv);

#endif
