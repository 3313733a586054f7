/* value_checks.cu - device value checks and packed-batch tables (value_checks.h). */
#include "value_checks.h"
#include "api/validate.h"
#include "kernel_params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the handle's state ----------------------------------------------------- */

/* Made in la_create, which may run while this thread captures a CUDA graph
 * (a framework's first call on a capture stream): the setup switches the
 * thread to relaxed capture mode, so the allocations are allowed, and
 * initialises the device scratch on a private stream of its own, never on
 * the capturing one. */
la_status_t la_cuda_state_create(void **state) {
    la_cuda_state_t *s = (la_cuda_state_t *)calloc(1, sizeof *s);
    if (!s) return LA_STATUS_ALLOC_FAILED;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    void *rec = NULL, *dev = NULL;
    cudaStream_t init = NULL;
    const unsigned long long scratch0[2] = {~0ull, 0ull};
    int ok = cudaHostAlloc(&rec, sizeof(la_cuda_error_record_t), cudaHostAllocMapped) == cudaSuccess;
    if (ok) {
        memset(rec, 0, sizeof(la_cuda_error_record_t));
        s->rec = (la_cuda_error_record_t *)rec;
        ok = cudaHostGetDevicePointer(&dev, rec, 0) == cudaSuccess;
    }
    if (ok) {
        s->rec_dev = (la_cuda_error_record_t *)dev;
        ok = cudaMalloc((void **)&s->scratch, sizeof scratch0) == cudaSuccess;
    }
    ok = ok && cudaStreamCreateWithFlags(&init, cudaStreamNonBlocking) == cudaSuccess &&
         cudaMemcpyAsync(s->scratch, scratch0, sizeof scratch0, cudaMemcpyHostToDevice, init) == cudaSuccess &&
         cudaStreamSynchronize(init) == cudaSuccess;
    if (init) cudaStreamDestroy(init);
    ok = ok && cudaEventCreateWithFlags(&s->staged, cudaEventDisableTiming) == cudaSuccess;
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (!ok) {
        cudaGetLastError(); /* not sticky: leave no error for the caller's next CUDA call */
        la_cuda_state_destroy(s);
        return LA_STATUS_ALLOC_FAILED;
    }
    *state = s;
    return LA_STATUS_SUCCESS;
}

void la_cuda_state_destroy(void *state) {
    la_cuda_state_t *s = (la_cuda_state_t *)state;
    if (!s) return;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (s->staged) {
        if (s->staged_pending) cudaEventSynchronize(s->staged);
        cudaEventDestroy(s->staged);
    }
    if (s->staging) cudaFreeHost(s->staging);
    if (s->scratch) cudaFree(s->scratch);
    if (s->rec) cudaFreeHost(s->rec);
    cudaThreadExchangeStreamCaptureMode(&mode);
    free(s);
}

/* The recorded error, cleared; late: it belongs to an earlier call (the
 * deferred mode), else to the call that waits for it (the sync mode). */
static la_status_t take(la_cuda_state_t *s, cudaStream_t stream, int wait, int late, char *msg) {
    if (wait) {
        cudaError_t e = cudaStreamSynchronize(stream);
        if (e != cudaSuccess) {
            snprintf(msg, LA_MSG_LEN, "waiting for the stream failed: %s", cudaGetErrorString(e));
            return LA_STATUS_EXECUTION_FAILED;
        }
    }
    const int status = s->rec->status;
    if (!status) return LA_STATUS_SUCCESS;
    __sync_synchronize();
    const la_cuda_error_record_t r = *(const la_cuda_error_record_t *)s->rec;
    const long long *n = r.dims, i = r.index;
    const long long at[4] = {i / (n[1] * n[2] * n[3]), (i / (n[2] * n[3])) % n[1], (i / n[3]) % n[2], i % n[3]};
    const char *pre = late ? "reported late (device values are checked without waiting): an earlier call's " : "";
    const char *post = late ? "; that call's outputs are unspecified" : "";
    if (status == LA_STATUS_BAD_SLOT) {
        static const char *what[6] = {"", "starts from a slot outside [0, num_slots)", "writes a slot outside [0, num_slots)",
                                      "has num_accepted outside [0, T]", "writes a slot that is written again in the call",
                                      "reads a slot that another sequence of the call writes"};
        const int kind = n[0] >= 1 && n[0] <= 5 ? (int)n[0] : 0;
        snprintf(msg, LA_MSG_LEN, "%spool sequence %lld %s (slot or count %lld; %s %lld)%s", pre, i, what[kind],
                 (long long)r.value, kind >= 4 ? "other sequence" : kind == 3 ? "T" : "num_slots", n[1], post);
    } else if (status == LA_STATUS_BAD_SEQLENS)
        snprintf(msg, LA_MSG_LEN, "%sdevice cu_seqlens[%lld] = %lld breaks 0 = cu[0] <= cu[1] <= ... <= cu[num_seqs] = N%s",
                 pre, i, (long long)r.value, post);
    else
        snprintf(msg, LA_MSG_LEN, "%s%s[%lld,%lld,%lld,%lld] = %g: log decays must be finite and lie in [%g, 0]%s", pre,
                 la_tensor_name((la_tensor_id_t)r.tensor), at[0], at[1], at[2], at[3], r.value,
                 (double)LA_MIN_LOG_DECAY, post);
    s->rec->status = 0;
    return (la_status_t)status;
}

la_status_t la_cuda_take_error(void *state, void *stream, int wait, char *msg) {
    return take((la_cuda_state_t *)state, (cudaStream_t)stream, wait, 1, msg);
}

/* ---- log decays -------------------------------------------------------------- */

/* Every block folds its bad indices into scratch[0]; the last block to
 * finish writes the least one to the record (if the record is free) and
 * resets the scratch for the next check: one launch, no host round trip. */
__global__ void la_check_decay_kernel(const float *ld, long long n0, long long n1, long long n2, long long n3,
                                      int64_t s0, int64_t s1, int64_t s2, int64_t s3, float lo,
                                      unsigned long long *scratch, la_cuda_error_record_t *rec, int tensor) {
    const long long total = n0 * n1 * n2 * n3;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const long long a = i / (n1 * n2 * n3), b = (i / (n2 * n3)) % n1, c = (i / n3) % n2, d = i % n3;
        const float v = ld[a * s0 + b * s1 + c * s2 + d * s3];
        if (!(v <= 0.0f) || v < lo) atomicMin(scratch, (unsigned long long)i);
    }
    __threadfence();
    __shared__ bool last;
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(scratch + 1, 1ull) == gridDim.x - 1;
    __syncthreads();
    if (!last || threadIdx.x != 0) return;
    const unsigned long long bad = atomicExch(scratch, ~0ull);
    scratch[1] = 0;
    if (bad == ~0ull || rec->status) return;
    const long long i = (long long)bad;
    const long long a = i / (n1 * n2 * n3), b = (i / (n2 * n3)) % n1, c = (i / n3) % n2, d = i % n3;
    rec->tensor = tensor;
    rec->index = i;
    rec->value = ld[a * s0 + b * s1 + c * s2 + d * s3];
    rec->dims[0] = n0; rec->dims[1] = n1; rec->dims[2] = n2; rec->dims[3] = n3;
    __threadfence_system();
    rec->status = LA_STATUS_BAD_DECAY;
}

static la_status_t check_one(const la_plan_t *pl, la_tensor_id_t id, cudaStream_t stream, char *msg) {
    const la_cuda_state_t *s = (const la_cuda_state_t *)pl->backend_state;
    const la_tensor_t *t = la_tensor_by_id((la_tensors_t *)&pl->t, id);
    if (!t->data) return LA_STATUS_SUCCESS;
    int64_t n[4];
    la_tensor_dims(pl, id, n);
    const int64_t total = n[0] * n[1] * n[2] * n[3];
    if (total == 0) return LA_STATUS_SUCCESS;
    const int blocks = (int)((total + 255) / 256 < 512 ? (total + 255) / 256 : 512);
    la_check_decay_kernel<<<blocks, 256, 0, stream>>>((const float *)t->data, n[0], n[1], n[2], n[3], t->stride[0],
                                                      t->stride[1], t->stride[2], t->stride[3], LA_MIN_LOG_DECAY,
                                                      s->scratch, s->rec_dev, (int)id);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "checking %s on the device failed: %s", la_tensor_name(id), cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return LA_STATUS_SUCCESS;
}

la_cuda_error_record_t *la_cuda_inline_check(const la_plan_t *pl) {
    if (pl->check_values != LA_CHECK_VALUES_DEFERRED || !pl->backend_state || pl->p.decay != LA_DECAY_SCALAR_HEAD)
        return NULL;
    return ((const la_cuda_state_t *)pl->backend_state)->rec_dev;
}

la_status_t la_cuda_check_decays(const la_plan_t *pl, cudaStream_t stream, char *msg) {
    if (pl->check_values == LA_CHECK_VALUES_OFF || !pl->backend_state || la_cuda_inline_check(pl))
        return LA_STATUS_SUCCESS;
    la_status_t st = LA_STATUS_SUCCESS;
    if (pl->p.decay != LA_DECAY_NONE) st = check_one(pl, LA_T_LD, stream, msg);
    if (!st && pl->p.decay == LA_DECAY_VECTOR_KV) st = check_one(pl, LA_T_LDV, stream, msg);
    if (!st && pl->check_values == LA_CHECK_VALUES_SYNC)
        st = take((la_cuda_state_t *)pl->backend_state, stream, 1, 0, msg);
    return st;
}

/* ---- state-pool slots -------------------------------------------------------- */

/* One thread per sequence; each records its fault only when no sequence
 * below it has one (la_record_slot_fault), so the record names the least. */
__global__ void la_check_slots_kernel(const la_slots_t q, la_cuda_error_record_t *rec) {
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < q.S; s += (int64_t)gridDim.x * blockDim.x) {
        int64_t slot, other;
        if (la_slot_fault(&q, s, &slot, &other) != LA_SLOT_OK) la_record_slot_fault(rec, &q, s);
    }
}

la_cuda_error_record_t *la_cuda_slot_record(const la_plan_t *pl) {
    if (pl->check_values != LA_CHECK_VALUES_DEFERRED || !pl->backend_state) return NULL;
    return ((const la_cuda_state_t *)pl->backend_state)->rec_dev;
}

la_status_t la_cuda_check_slots(const la_plan_t *pl, const la_slots_t *slots, cudaStream_t stream, char *msg) {
    if (pl->check_values == LA_CHECK_VALUES_OFF || !pl->backend_state || slots->S == 0) return LA_STATUS_SUCCESS;
    la_cuda_state_t *s = (la_cuda_state_t *)pl->backend_state;
    const int blocks = (int)((slots->S + 127) / 128 < 256 ? (slots->S + 127) / 128 : 256);
    la_check_slots_kernel<<<blocks, 128, 0, stream>>>(*slots, s->rec_dev);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "checking the pool's slots on the device failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    return pl->check_values == LA_CHECK_VALUES_SYNC ? take(s, stream, 1, 0, msg) : LA_STATUS_SUCCESS;
}

/* ---- packed-batch tables ----------------------------------------------------- */

/* One block: the offsets, checked against 0 = cu[0] <= ... <= cu[S] = N
 * (the first break goes to the record) and made valid whatever they were
 * (clamped to [0, N], running maximum, cu[S] = N), so that no kernel can
 * leave the tensors; then each sequence's first segment and first chunk as
 * exclusive prefix sums, in tiles of the block's width. */
__global__ void la_packed_tables_kernel(const int64_t *cu_in, long long S, long long N, long long seg_len,
                                        int check, int64_t *cu, int *seg_off, int *chunk_off,
                                        la_cuda_error_record_t *rec) {
    __shared__ long long run_cu, run_seg, run_chunk, first_bad;
    __shared__ long long scan_seg[1024], scan_chunk[1024];
    if (threadIdx.x == 0) {
        run_cu = 0;
        run_seg = 0;
        run_chunk = 0;
        first_bad = -1;
    }
    __syncthreads();
    for (long long base = 0; base <= S; base += blockDim.x) {
        const long long i = base + threadIdx.x;
        long long raw = 0, prev_raw = 0;
        if (i <= S) {
            raw = cu_in[i];
            prev_raw = i ? cu_in[i - 1] : 0;
            const bool bad = (i == 0 && raw != 0) || (i == S && raw != N) || raw < prev_raw || raw < 0 || raw > N;
            if (bad && check) atomicMin((unsigned long long *)&first_bad, (unsigned long long)i); /* -1: none */
        }
        __syncthreads();
        /* The clamped offsets: a running maximum over the tile (serial in one
         * thread: tiles are rare beyond the first). */
        if (threadIdx.x == 0) {
            long long r = run_cu;
            for (long long j = base; j <= S && j < base + blockDim.x; j++) {
                long long v = cu_in[j];
                v = v < 0 ? 0 : v > N ? N : v;
                if (j == 0) v = 0;
                if (j == S) v = N;
                r = v > r ? v : r;
                cu[j] = r;
            }
            run_cu = r;
        }
        __syncthreads();
        /* Segment and chunk counts of sequence i - 1, scanned. */
        long long ns = 0, nc = 0;
        if (i >= 1 && i <= S) {
            const long long len = cu[i] - cu[i - 1];
            ns = len == 0 ? 1 : (len + seg_len - 1) / seg_len;
            nc = (len + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK;
        }
        scan_seg[threadIdx.x] = ns;
        scan_chunk[threadIdx.x] = nc;
        __syncthreads();
        for (int off = 1; off < (int)blockDim.x; off *= 2) {
            const long long a = threadIdx.x >= off ? scan_seg[threadIdx.x - off] : 0;
            const long long b = threadIdx.x >= off ? scan_chunk[threadIdx.x - off] : 0;
            __syncthreads();
            scan_seg[threadIdx.x] += a;
            scan_chunk[threadIdx.x] += b;
            __syncthreads();
        }
        if (i <= S) {
            seg_off[i] = (int)(run_seg + scan_seg[threadIdx.x]);
            chunk_off[i] = (int)(run_chunk + scan_chunk[threadIdx.x]);
        }
        __syncthreads();
        if (threadIdx.x == blockDim.x - 1) {
            run_seg += scan_seg[threadIdx.x];
            run_chunk += scan_chunk[threadIdx.x];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0 && first_bad >= 0 && !rec->status) {
        rec->tensor = -1;
        rec->index = first_bad;
        rec->value = (double)cu_in[first_bad];
        rec->dims[0] = 1; rec->dims[1] = 1; rec->dims[2] = 1; rec->dims[3] = S + 1;
        __threadfence_system();
        rec->status = LA_STATUS_BAD_SEQLENS;
    }
}

/* Host offsets: validated by the API; the tables are built here and copied
 * through the handle's pinned staging buffer (no wait for the GPU: only for
 * the previous copy out of the buffer, long done in a steady loop). */
static la_status_t stage_host_tables(const la_plan_t *pl, int64_t seg_len, const la_cuda_packed_tables_t *dst,
                                     cudaStream_t stream, char *msg) {
    la_cuda_state_t *s = (la_cuda_state_t *)pl->backend_state;
    const int64_t S = pl->num_seqs;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &cap) == cudaSuccess && cap != cudaStreamCaptureStatusNone) {
        snprintf(msg, LA_MSG_LEN, "host cu_seqlens cannot be captured in a CUDA graph (the graph would replay this call's "
                                  "offsets): pass them in device memory (cu_seqlens_on_device = 1)");
        return LA_STATUS_NOT_SUPPORTED;
    }
    const size_t cu_bytes = (size_t)(S + 1) * sizeof(int64_t), off_bytes = (size_t)(S + 1) * sizeof(int);
    const size_t need = cu_bytes + 2 * off_bytes;
    if (s->staged_pending) {
        if (cudaEventSynchronize(s->staged) != cudaSuccess) goto failed;
        s->staged_pending = 0;
    }
    if (need > s->staging_bytes) {
        if (s->staging) cudaFreeHost(s->staging);
        s->staging = NULL;
        s->staging_bytes = 0;
        if (cudaHostAlloc(&s->staging, need, cudaHostAllocDefault) != cudaSuccess) {
            cudaGetLastError();
            snprintf(msg, LA_MSG_LEN, "could not allocate %zu bytes of pinned memory for cu_seqlens", need);
            return LA_STATUS_ALLOC_FAILED;
        }
        s->staging_bytes = need;
    }
    {
        int64_t *hcu = (int64_t *)s->staging;
        int *hoff = (int *)((char *)s->staging + cu_bytes), *hcoff = hoff + S + 1;
        memcpy(hcu, pl->p.cu_seqlens, cu_bytes);
        hoff[0] = 0;
        hcoff[0] = 0;
        for (int64_t q = 0; q < S; q++) {
            const int64_t len = hcu[q + 1] - hcu[q];
            hoff[q + 1] = hoff[q] + (len == 0 ? 1 : (int)((len + seg_len - 1) / seg_len));
            hcoff[q + 1] = hcoff[q] + (int)((len + LA_CUDA_CHUNK - 1) / LA_CUDA_CHUNK);
        }
        if (cudaMemcpyAsync(dst->cu, hcu, cu_bytes, cudaMemcpyHostToDevice, stream) != cudaSuccess ||
            cudaMemcpyAsync(dst->seg_off, hoff, off_bytes, cudaMemcpyHostToDevice, stream) != cudaSuccess ||
            cudaMemcpyAsync(dst->chunk_off, hcoff, off_bytes, cudaMemcpyHostToDevice, stream) != cudaSuccess ||
            cudaEventRecord(s->staged, stream) != cudaSuccess)
            goto failed;
        s->staged_pending = 1;
    }
    return LA_STATUS_SUCCESS;
failed:
    snprintf(msg, LA_MSG_LEN, "copying cu_seqlens to the device failed: %s", cudaGetErrorString(cudaGetLastError()));
    return LA_STATUS_EXECUTION_FAILED;
}

la_status_t la_cuda_packed_tables(const la_plan_t *pl, int64_t seg_len, const la_cuda_packed_tables_t *dst,
                                  cudaStream_t stream, char *msg) {
    if (!pl->cu_device) return stage_host_tables(pl, seg_len, dst, stream, msg);
    const la_cuda_state_t *s = (const la_cuda_state_t *)pl->backend_state;
    const int check = pl->check_values != LA_CHECK_VALUES_OFF;
    la_packed_tables_kernel<<<1, 1024, 0, stream>>>(pl->p.cu_seqlens, pl->num_seqs, pl->p.seqlen, seg_len, check, dst->cu,
                                                    dst->seg_off, dst->chunk_off, s->rec_dev);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(msg, LA_MSG_LEN, "building the packed tables failed: %s", cudaGetErrorString(err));
        return LA_STATUS_EXECUTION_FAILED;
    }
    if (check && pl->check_values == LA_CHECK_VALUES_SYNC)
        return take((la_cuda_state_t *)pl->backend_state, stream, 1, 0, msg);
    return LA_STATUS_SUCCESS;
}
