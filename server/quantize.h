/* quantize.h - `ssmd quantize`: a model to a (quantized) GGUF file. */
#ifndef SSMD_QUANTIZE_H
#define SSMD_QUANTIZE_H

/* argv[0] is "quantize".  Returns the process exit code. */
int srv_quantize_main(int argc, char **argv);

#endif
