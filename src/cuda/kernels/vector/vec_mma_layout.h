/* vec_mma_layout.h - the shared-memory layout of the tensor-core vector-decay
 * kernel (vec_mma_kernel.cuh), for the kernel and for the host, which sizes
 * its launch and chooses between it and the fp32 kernel (vec_fwd_kernel.cuh).
 *
 * DM is the padded row dim (64 or 128: D <= DM), ET value columns per block
 * (64 or 128, with 2 ET threads: one warp per 16 of them), LA_VM_L steps per
 * chunk; CD: the columns decay too, SP: the outputs' products are split; RA:
 * the stages hold row decays (the warp-role kernel leaves them out of runs
 * without, which lets its split-output blocks with column decays fit).
 * Operand rows are padded by 8 elements (16 bytes) so that ldmatrix's eight
 * rows fall in distinct banks; every region starts on a 16-byte boundary. */
#ifndef LA_CUDA_VEC_MMA_LAYOUT_H
#define LA_CUDA_VEC_MMA_LAYOUT_H

#define LA_VM_L 16        /* steps per chunk: one m16 tile of queries, one k16 step of keys */

/* Threads of a block with ET value columns: a warp per 16 of them, each
 * holding its columns' whole slice of the state. */
#define LA_VM_THREADS(ET) (2 * (ET))

template <int DM, int ET, bool CD, bool SP, bool RA = true> struct vm_layout {
    static constexpr int L = LA_VM_L;
    static constexpr int QP = DM + 8, VP = ET + 8, PP = L + 8; /* operand row pitches (elements) */
    static constexpr int YP = ET + 4;                          /* the outputs' f32 pitch: the stores of a
                                                                  warp's four row pairs in distinct banks */
    static constexpr int VCD = CD ? 1 : 0;                     /* regions only the column decays need */
    /* One stage of a chunk's inputs as read (two stages: the next chunk lands while this one runs). */
    static constexpr int R_Q = 0;                 /* [L][DM] q (input dtype) */
    static constexpr int R_K = R_Q + L * DM * 2;  /* [L][DM] k */
    static constexpr int R_V = R_K + L * DM * 2;  /* [L][VP] v: without column decays, an operand as it is */
    static constexpr int R_A = R_V + L * VP * 2;  /* [L][DM] f32 row log decays (RA) */
    static constexpr int R_B = R_A + (RA ? L * DM * 4 : 0); /* [L][ET] f32 column log decays (CD) */
    static constexpr int RAW = R_B + VCD * L * ET * 4;
    /* After the stages (offsets from their end): the chunk's operands (input dtype). */
    static constexpr int QH = 0;                  /* [L][QP] scale q_u e^{lambda_u}: the state product's queries */
    static constexpr int QD = QH + L * QP * 2;    /* [L][QP] scale q_u e^{lambda_u - M}: the diagonal's queries */
    static constexpr int KH = QD + L * QP * 2;    /* [L][QP] kbar = kscale k_s e^{mu_s}, hi part */
    static constexpr int KL = KH + L * QP * 2;    /* [L][QP] its lo part */
    static constexpr int KD = KL + L * QP * 2;    /* [L][QP] kscale k_s e^{M - lambda_s}: the diagonal's keys */
    static constexpr int VH = KD + L * QP * 2;    /* [L][VP] vbar = v_s e^{xi_s}, hi part (CD) */
    static constexpr int VL = VH + VCD * L * VP * 2; /* [L][VP] its lo part (CD) */
    static constexpr int VD = VL + VCD * L * VP * 2; /* [L][VP] v_s e^{Mc - nu_s}: the diagonal's values (CD) */
    static constexpr int PB = VD + VCD * L * VP * 2; /* [L][PP] the chunk's scores (input dtype) */
    static constexpr int PF = PB + L * PP * 2;    /* [L][L] the same, f32 */
    static constexpr int Y = PF + L * L * 4;      /* [L][YP] f32 outputs */
    static constexpr int EN = Y + L * YP * 4;     /* [L][ET] e^{nu_u} (CD) */
    static constexpr int TR = EN + VCD * L * ET * 4; /* [DM] e^{lambda_last}: the chunk's row decay */
    static constexpr int UC = TR + DM * 4;        /* [ET] e^{nu_last}: the chunk's column decay */
    static constexpr int EMC = UC + ET * 4;       /* [ET] e^{-Mc}, the column's anchor (0: not factored) */
    static constexpr int MR = EMC + ET * 4;       /* [4] u32: rows not factored (bit d) */
    static constexpr int MC = MR + 16;            /* [2][ET / 32] u32: columns not factored, by chunk parity */
    static constexpr int SUM = MC + 2 * ET / 8;   /* [ET] double: running sums */
    static constexpr int BASE = SUM + ET * 8;
    /* SP (split outputs): the lo parts of the output products' operands, so that y
     * keeps fp32 accuracy (runs that feed a decay gradient's sum). */
    static constexpr int QHL = BASE, QDL = QHL + L * QP * 2, KDL = QDL + L * QP * 2, VDL = KDL + L * QP * 2;
    static constexpr int PBL = VDL + VCD * L * VP * 2;
    static constexpr int TI = PBL + L * PP * 2;   /* [L][ET] double: a running sum's terms (term_mode 2) */
    static constexpr int REST = SP ? TI + L * ET * 8 : BASE;
    /* The whole, with ns stages of inputs in flight. */
    static constexpr int bytes(int ns) { return ns * RAW + REST; }
};

/* Bytes of shared memory of the kernel for row dim D (<= 128), ET value
 * columns a block, column decays or not, split or not, ns input stages. */
template <int DM, int ET> static inline int la_vec_mma_smem_at(int cd, int split, int ns) {
    if (cd) return split ? vm_layout<DM, ET, true, true>::bytes(ns) : vm_layout<DM, ET, true, false>::bytes(ns);
    return split ? vm_layout<DM, ET, false, true>::bytes(ns) : vm_layout<DM, ET, false, false>::bytes(ns);
}
static inline int la_vec_mma_smem(int D, int et, int cd, int split, int ns) {
    if (et == 128)
        return D <= 64 ? la_vec_mma_smem_at<64, 128>(cd, split, ns) : la_vec_mma_smem_at<128, 128>(cd, split, ns);
    return D <= 64 ? la_vec_mma_smem_at<64, 64>(cd, split, ns) : la_vec_mma_smem_at<128, 64>(cd, split, ns);
}

/* The value columns a block takes: all 128 where E needs them and the
 * shared memory allows (row work once per head), else 64. */
static inline int la_vec_mma_et(int D, int E, int cd, int split, int mma_smem) {
    return E > 64 && la_vec_mma_smem(D, 128, cd, split, 2) <= mma_smem ? 128 : 64;
}

/* Input stages in flight: three where they fit (a chunk's copies have two
 * chunks' time to land), else two. */
static inline int la_vec_mma_stages(int D, int et, int cd, int split, int mma_smem) {
    return la_vec_mma_smem(D, et, cd, split, 3) <= mma_smem ? 3 : 2;
}

#endif
