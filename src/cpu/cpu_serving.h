/*
 * cpu_serving.h - the served forms of the CPU backend: decode (T tokens,
 * dense or pooled states), and forwards that read and write a state pool or
 * emit checkpoints (cpu_serving.c).
 */
#ifndef LA_CPU_SERVING_H
#define LA_CPU_SERVING_H

#include "internal.h"
#include "cpu_kernels.h"

/* Per-thread scratch bytes a served call needs (two fp32 D x E states). */
size_t cpu_serving_scratch(const la_plan_t *pl);

/* Forward or state forward of (sequence s, head h) with a pool and/or
 * checkpoints: q's token views are built, its states are the dense ones
 * (ignored with a pool); kernel is the decay family's forward. */
void cpu_forward_served(const la_plan_t *pl, int64_t s, int64_t h, cpu_seq_t *q, float *scratch, void *ws,
                        void (*kernel)(const cpu_seq_t *, void *));

/* Decode of (sequence s, head h): q->len = T tokens, dense states or the
 * plan's pool. */
void cpu_decode(const la_plan_t *pl, int64_t s, int64_t h, const cpu_seq_t *q, float *scratch);

#endif
