/* error_record.h - what a failed device value check leaves for the host
 * (value_checks.h has the handle state that owns it). */
#ifndef LA_CUDA_ERROR_RECORD_H
#define LA_CUDA_ERROR_RECORD_H

/* Lives in pinned, mapped host memory.  status is written last (after a
 * system-wide fence), so a host that sees it nonzero sees the rest. */
typedef struct la_cuda_error_record {
    volatile int status;  /* 0, LA_STATUS_BAD_DECAY or LA_STATUS_BAD_SEQLENS */
    int tensor;           /* la_tensor_id_t of the decay, or -1 for cu_seqlens */
    long long index;      /* flat index of the first bad element */
    double value;
    long long dims[4];    /* the tensor's logical dims, to name the element */
} la_cuda_error_record_t;

#endif
