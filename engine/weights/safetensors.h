/* safetensors.h - memory-mapped safetensors weights of one model directory.
 *
 * Opens `model.safetensors`, or every shard listed by
 * `model.safetensors.index.json`, maps each file read-only and validates its
 * header completely before anything is handed out: after a successful open,
 * every tensor's bytes lie inside its file, so no later access can read out
 * of bounds.  Tensor data is used in place (zero-copy); conversion to f32 is
 * offered for the small tensors that the models keep in f32.
 *
 * This file never knows about any model architecture.
 */
#ifndef SSMD_SAFETENSORS_H
#define SSMD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/tensor.h"

/* This source implements the weights interface of engine/tensor.h
 * (eng_weights_open and friends). */

#endif
