// SMMF's step on the compressed state of one float32 tensor viewed as rows x cols (see
// IOptimizerKernels.SmmfStep and Cpu/SmmfCpuKernel.cs, whose scalar loop this follows operation for
// operation: every float op is an IEEE round-to-nearest intrinsic, in the CPU kernel's order, and the file
// is compiled with --fmad=false, so M, V, U, the target and the sign bits equal the CPU kernel's bit for bit).
//
// The new factors need sums over the new M and V, but the element pass needs the old factors and the old
// sign bits, so one step is five launches on the default stream, in this order:
//   1. smmf_sums        reads g, the old factors and the old sign bits; writes only scratch: per band of rows
//                       and column, sum |M| and sum V over the band's rows; per column block of 256 and row,
//                       the row's sums over the block's columns (a fixed shared-memory tree).
//   2. smmf_apply       one thread per sign byte: recomputes M, V, U for the byte's 8 elements from the old
//                       state, writes the target and the new byte (it owns the byte: old read, new written).
//   3. smmf_row_sums    rho_i = sum over column blocks, in order, of the row partials (float once).
//   4. smmf_col_sums    column sums over the bands, in order (kept in band 0's slot), and per block of 256
//                       columns a fixed tree of those sums.
//   5. smmf_col_scale   total = the block sums in a fixed order; gamma_j = sum_j / total (raw sums when the
//                       total is 0), float once.
// Steps 3-5 overwrite the factors, so they run after 2. No atomics: every sum is accumulated in double in an
// order fixed by the shape only, so results are deterministic. blockIdx.y picks the quantity in 3-5
// (0: V, 1: M). No headers: NVRTC compiles this file alone.

#define BLOCK 256

// V = fma((1 - beta2) * g, g, (rho_V,i * gamma_V,j) * beta2), as the CPU kernel (and libtorch's addcmul_) does.
__device__ __forceinline__ float smmf_v(float row_v, float col_v, float g, float beta2, float one_minus_beta2)
{
    return __fmaf_rn(__fmul_rn(one_minus_beta2, g), g, __fmul_rn(__fmul_rn(row_v, col_v), beta2));
}

// M = fma(g, 1 - beta1, (+-rho_M,i * gamma_M,j) * beta1), as the CPU kernel (and libtorch's add_ with alpha)
// does; a stored bit 0 (M <= 0) flips the sign of rho*gamma.
__device__ __forceinline__ float smmf_m(float row_m, float col_m, unsigned int bit, float g, float beta1, float one_minus_beta1)
{
    float m_hat = __fmul_rn(row_m, col_m);
    if (bit == 0u) m_hat = -m_hat;
    return __fmaf_rn(g, one_minus_beta1, __fmul_rn(m_hat, beta1));
}

// In-place tree over BLOCK doubles in shared memory (s = 128, 64, ..., 1), after a barrier that publishes
// every thread's slot: the sum is in a[0] (and b[0]). Every thread of the block must call it; it ends with a
// barrier, so any thread can read slot 0 afterwards.
__device__ __forceinline__ void block_tree2(double* a, double* b)
{
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1)
    {
        if ((int)threadIdx.x < s)
        {
            a[threadIdx.x] += a[threadIdx.x + s];
            b[threadIdx.x] += b[threadIdx.x + s];
        }
        __syncthreads();
    }
}

__device__ __forceinline__ void block_tree(double* a)
{
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1)
    {
        if ((int)threadIdx.x < s) a[threadIdx.x] += a[threadIdx.x + s];
        __syncthreads();
    }
}

// Grid: (column blocks of BLOCK columns, bands of rows_per_band rows). Thread = one column of one band.
// col_part_*[band * cols + j]: sum over the band's rows (written once by the column's thread);
// row_part_*[column block * rows + i]: sum over the block's columns (written once by thread 0).
// The *_m pointers are unused (may be null) without momentum.
extern "C" __global__ void smmf_sums(
    const float* __restrict__ g, const float* __restrict__ row_m, const float* __restrict__ col_m,
    const unsigned char* __restrict__ signs, const float* __restrict__ row_v, const float* __restrict__ col_v,
    double* __restrict__ col_part_m, double* __restrict__ col_part_v,
    double* __restrict__ row_part_m, double* __restrict__ row_part_v,
    long long rows, long long cols, long long rows_per_band, int momentum,
    float beta1, float one_minus_beta1, float beta2, float one_minus_beta2)
{
    __shared__ double tree_m[BLOCK];
    __shared__ double tree_v[BLOCK];
    const long long j = (long long)blockIdx.x * BLOCK + threadIdx.x;
    const bool active = j < cols;
    const long long r0 = (long long)blockIdx.y * rows_per_band;
    const long long r1 = min(rows, r0 + rows_per_band);
    const float cm = (momentum && active) ? col_m[j] : 0.0f;
    const float cv = active ? col_v[j] : 0.0f;
    double acc_m = 0.0, acc_v = 0.0;
    // The loop bounds are the same for every thread of the block, so every thread reaches every barrier.
    for (long long i = r0; i < r1; i++)
    {
        double abs_m = 0.0, v_value = 0.0;
        if (active)
        {
            const long long e = i * cols + j;
            const float gi = g[e];
            const float v = smmf_v(row_v[i], cv, gi, beta2, one_minus_beta2);
            v_value = (double)v;
            if (momentum)
            {
                const unsigned int bit = ((unsigned int)signs[e >> 3] >> (unsigned int)(e & 7)) & 1u;
                abs_m = (double)fabsf(smmf_m(row_m[i], cm, bit, gi, beta1, one_minus_beta1));
            }
        }
        acc_m += abs_m;
        acc_v += v_value;
        // Thread 0 read tree_*[0] of the previous row before this write and only it writes slot 0, and every
        // other slot was last read before the tree's final barrier, so no barrier is needed before the write.
        tree_m[threadIdx.x] = abs_m;
        tree_v[threadIdx.x] = v_value;
        block_tree2(tree_m, tree_v);
        if (threadIdx.x == 0)
        {
            row_part_v[(long long)blockIdx.x * rows + i] = tree_v[0];
            if (momentum) row_part_m[(long long)blockIdx.x * rows + i] = tree_m[0];
        }
    }
    if (active)
    {
        col_part_v[(long long)blockIdx.y * cols + j] = acc_v;
        if (momentum) col_part_m[(long long)blockIdx.y * cols + j] = acc_m;
    }
}

// One thread per sign byte k (grid-stride): elements 8k .. 8k+7 below n. Reads the old factors and the old
// byte, writes the target (U, or the weight W*decay - step_size*U) and the new byte (bit set where M > 0,
// padding bits 0). g and target are not __restrict__: a caller may pass the same tensor (each element is
// read before it is written, by the same thread).
extern "C" __global__ void smmf_apply(
    const float* g, float* target, const float* __restrict__ row_m, const float* __restrict__ col_m,
    unsigned char* signs, const float* __restrict__ row_v, const float* __restrict__ col_v,
    long long n, long long cols, int momentum, int update_weights,
    float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps, float step_size, float decay)
{
    const long long bytes = (n + 7) >> 3;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < bytes; k += stride)
    {
        long long e = k << 3;
        const long long end = min(n, e + 8);
        long long i = e / cols;
        long long j = e - i * cols;
        const unsigned int old_bits = momentum ? (unsigned int)signs[k] : 0u;
        unsigned int new_bits = 0u;
        for (unsigned int b = 0; e < end; e++, b++)
        {
            const float gi = g[e];
            const float v = smmf_v(row_v[i], col_v[j], gi, beta2, one_minus_beta2);
            float numerator = gi;
            if (momentum)
            {
                const float m = smmf_m(row_m[i], col_m[j], (old_bits >> b) & 1u, gi, beta1, one_minus_beta1);
                numerator = m;
                if (m > 0.0f) new_bits |= 1u << b;
            }
            const float u = __fdiv_rn(numerator, __fadd_rn(__fsqrt_rn(v), eps));
            target[e] = update_weights ? __fmaf_rn(u, -step_size, __fmul_rn(target[e], decay)) : u;
            if (++j == cols) { j = 0; i++; }
        }
        if (momentum) signs[k] = (unsigned char)new_bits;
    }
}

// rho_i = sum over the column blocks, in order, of row_part[cb * rows + i]. Grid: (row blocks, 1 or 2),
// grid-stride over the rows; blockIdx.y = 0: V, 1: M.
extern "C" __global__ void smmf_row_sums(
    const double* __restrict__ row_part_v, const double* __restrict__ row_part_m,
    float* __restrict__ row_v, float* __restrict__ row_m, long long rows, long long column_blocks)
{
    const double* part = blockIdx.y == 0 ? row_part_v : row_part_m;
    float* out = blockIdx.y == 0 ? row_v : row_m;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += stride)
    {
        double sum = 0.0;
        for (long long cb = 0; cb < column_blocks; cb++) sum += part[cb * rows + i];
        out[i] = (float)sum;
    }
}

// Grid: (column blocks of BLOCK columns, 1 or 2); blockIdx.y = 0: V, 1: M. Column j's sum over the bands,
// in band order, replaces col_part[j] (band 0's slot; the column's thread reads all of its bands first), and
// the block's BLOCK column sums go through a fixed tree into block_sum[blockIdx.x].
extern "C" __global__ void smmf_col_sums(
    double* __restrict__ col_part_v, double* __restrict__ col_part_m,
    double* __restrict__ block_sum_v, double* __restrict__ block_sum_m, long long cols, long long bands)
{
    __shared__ double tree[BLOCK];
    double* part = blockIdx.y == 0 ? col_part_v : col_part_m;
    double* block_sum = blockIdx.y == 0 ? block_sum_v : block_sum_m;
    const long long j = (long long)blockIdx.x * BLOCK + threadIdx.x;
    double sum = 0.0;
    if (j < cols)
    {
        for (long long b = 0; b < bands; b++) sum += part[b * cols + j];
        part[j] = sum;
    }
    tree[threadIdx.x] = sum;
    block_tree(tree);
    if (threadIdx.x == 0) block_sum[blockIdx.x] = tree[0];
}

// Grid: (column blocks, 1 or 2); blockIdx.y = 0: V, 1: M. Every block computes the same total from the
// column_blocks block sums (thread t sums blocks t, t + BLOCK, ... in order, then the fixed tree), then
// gamma_j = col_sum_j / total, or the raw sums when the total is 0 (as the CPU kernel and the reference).
extern "C" __global__ void smmf_col_scale(
    const double* __restrict__ col_sum_v, const double* __restrict__ col_sum_m,
    const double* __restrict__ block_sum_v, const double* __restrict__ block_sum_m,
    float* __restrict__ col_v, float* __restrict__ col_m, long long cols, long long column_blocks)
{
    __shared__ double tree[BLOCK];
    const double* sums = blockIdx.y == 0 ? col_sum_v : col_sum_m;
    const double* block_sum = blockIdx.y == 0 ? block_sum_v : block_sum_m;
    float* out = blockIdx.y == 0 ? col_v : col_m;
    double partial = 0.0;
    for (long long b = threadIdx.x; b < column_blocks; b += BLOCK) partial += block_sum[b];
    tree[threadIdx.x] = partial;
    block_tree(tree);
    const double total = tree[0];
    const double divisor = total == 0.0 ? 1.0 : total;
    const long long j = (long long)blockIdx.x * BLOCK + threadIdx.x;
    if (j < cols) out[j] = (float)(sums[j] / divisor);
}
