// Adam moment update and normalized direction (see IOptimizerKernels.AdamDirection).
// Each op rounds where the TorchSharp reference rounds: float32 ops in float32, with a fused multiply-add
// where libtorch's add_(alpha) and addcmul_ fuse; for bfloat16 every intermediate the reference stores is
// rounded to bfloat16 (nearest even), as libtorch does after each op.
// No headers: NVRTC compiles this file alone.

__device__ __forceinline__ float bf16_to_float(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

__device__ __forceinline__ unsigned short float_to_bf16(float f)
{
    if (f != f) return 0x7FC0;
    unsigned int bits = __float_as_uint(f);
    return (unsigned short)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// Element i's moments: m, v updated in place; returns the new m and sets *denom = sqrt(v)/sqrt_bc2 + eps
// (sqrt(v) + eps when not corrected).
__device__ __forceinline__ float moments_f32(float gi, float* m, float* v, long long i, float beta1, float one_minus_beta1,
    float beta2, float one_minus_beta2, float eps, float sqrt_bc2, int corrected, float* denom)
{
    float mi = __fmaf_rn(one_minus_beta1, gi, __fmul_rn(m[i], beta1));
    float vi = __fmaf_rn(__fmul_rn(one_minus_beta2, gi), gi, __fmul_rn(v[i], beta2));
    float root = __fsqrt_rn(vi);
    *denom = __fadd_rn(corrected ? __fdiv_rn(root, sqrt_bc2) : root, eps);
    m[i] = mi;
    v[i] = vi;
    return mi;
}

// The bfloat16 twin: every intermediate rounded to bfloat16, as the reference stores it.
__device__ __forceinline__ float moments_bf16(float gi, unsigned short* m, unsigned short* v, long long i, float beta1,
    float one_minus_beta1, float beta2, float one_minus_beta2, float eps, float sqrt_bc2, int corrected, float* denom)
{
    float mi = round_bf16(__fmaf_rn(one_minus_beta1, gi, round_bf16(__fmul_rn(bf16_to_float(m[i]), beta1))));
    float vi = round_bf16(__fmaf_rn(__fmul_rn(one_minus_beta2, gi), gi, round_bf16(__fmul_rn(bf16_to_float(v[i]), beta2))));
    float root = round_bf16(__fsqrt_rn(vi));
    *denom = round_bf16(__fadd_rn(corrected ? round_bf16(__fdiv_rn(root, sqrt_bc2)) : root, eps));
    m[i] = float_to_bf16(mi);
    v[i] = float_to_bf16(vi);
    return mi;
}

extern "C" __global__ void adam_direction_f32(
    const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v, float* __restrict__ d,
    long long n, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
    float sqrt_bc2, int corrected)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        float denom;
        float mi = moments_f32(g[i], m, v, i, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, &denom);
        d[i] = __fdiv_rn(mi, denom);
    }
}

extern "C" __global__ void adam_direction_bf16(
    const unsigned short* __restrict__ g, unsigned short* __restrict__ m, unsigned short* __restrict__ v,
    unsigned short* __restrict__ d, long long n, float beta1, float one_minus_beta1, float beta2,
    float one_minus_beta2, float eps, float sqrt_bc2, int corrected)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        float denom;
        float mi = moments_bf16(bf16_to_float(g[i]), m, v, i, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, &denom);
        d[i] = float_to_bf16(__fdiv_rn(mi, denom));
    }
}

// Full-space Adam step (see IOptimizerKernels.AdamUpdate): the moments as above, then the weights in
// torch.optim.AdamW's order, w <- w*decay (mul_), w <- w + (neg_step*m)/denom (addcdiv_, computed in float).
extern "C" __global__ void adam_update_f32(
    const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v, float* __restrict__ w,
    long long n, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
    float sqrt_bc2, int corrected, float decay, int decays, float neg_step)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        float denom;
        float mi = moments_f32(g[i], m, v, i, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, &denom);
        float wi = decays ? __fmul_rn(w[i], decay) : w[i];
        w[i] = __fadd_rn(wi, __fdiv_rn(__fmul_rn(neg_step, mi), denom));
    }
}

extern "C" __global__ void adam_update_bf16(
    const unsigned short* __restrict__ g, unsigned short* __restrict__ m, unsigned short* __restrict__ v,
    unsigned short* __restrict__ w, long long n, float beta1, float one_minus_beta1, float beta2,
    float one_minus_beta2, float eps, float sqrt_bc2, int corrected, float decay, int decays, float neg_step)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        float denom;
        float mi = moments_bf16(bf16_to_float(g[i]), m, v, i, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, &denom);
        float wi = bf16_to_float(w[i]);
        if (decays) wi = round_bf16(__fmul_rn(wi, decay));
        w[i] = float_to_bf16(__fadd_rn(wi, __fdiv_rn(__fmul_rn(neg_step, mi), denom)));
    }
}
