/* validate.h - argument checks and plan construction (see validate.c). */
#ifndef LA_VALIDATE_H
#define LA_VALIDATE_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Log decays below this are rejected: exp of them is already exactly 0 in
 * fp32, and chunk sums of such values could overflow to -inf. */
#define LA_MIN_LOG_DECAY (-1.0e6f)

typedef enum la_tensor_id {
    LA_T_Q,
    LA_T_K,
    LA_T_V,
    LA_T_LD,
    LA_T_LDV,
    LA_T_S0,
    LA_T_O,
    LA_T_SN,
    LA_T_DO,
    LA_T_DSN,
    LA_T_DQ,
    LA_T_DK,
    LA_T_DV,
    LA_T_DLD,
    LA_T_DLDV,
    LA_T_DS0,
    LA_T_POOL, /* pool.states */
    LA_T_CKPT, /* checkpoints */
    LA_NUM_TENSORS
} la_tensor_id_t;

/* Validate everything and fill *pl.  host_memory: the tensors live in host
 * memory, so values (log decays) can be checked here too. */
la_status_t la_build_plan(la_op_t op, const la_problem_t *p, const la_tensors_t *t, int host_memory, la_plan_t *pl,
                          char *msg);
/* The problem struct alone (sizes, decay kind, scale, cu_seqlens). */
la_status_t la_check_problem(const la_problem_t *p, char *msg);
/* The operation and the problem, as every entry point taking both checks them
 * (decode: one token per sequence, no cu_seqlens). */
la_status_t la_check_problem_for(la_op_t op, const la_problem_t *p, char *msg);
void la_tensor_dims(const la_plan_t *pl, la_tensor_id_t id, int64_t dims[4]);
la_tensor_t *la_tensor_by_id(la_tensors_t *t, la_tensor_id_t id);
const char *la_tensor_name(la_tensor_id_t id);

#ifdef __cplusplus
}
#endif

#endif
