// Row and column reductions over a row-major rows x cols float32 or bfloat16 matrix (batched for Adafactor).
// Sums are accumulated in double in a fixed order (a fixed tree per row, a sequential loop per column),
// so results are deterministic. No headers: NVRTC compiles this file alone.

#define BLOCK 256

__device__ __forceinline__ float load_f32(const void* p, long long i, int bf16)
{
    if (bf16) return __uint_as_float(((unsigned int)((const unsigned short*)p)[i]) << 16);
    return ((const float*)p)[i];
}

__device__ __forceinline__ unsigned short to_bf16(float f)
{
    if (f != f) return 0x7FC0;
    unsigned int bits = __float_as_uint(f);
    return (unsigned short)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float rnd(float f, int bf16) { return bf16 ? __uint_as_float(((unsigned int)to_bf16(f)) << 16) : f; }

// f(x) = x*x + eps (mode 1, Adafactor's q, rounded as the reference rounds) or |x| (mode 0).
__device__ __forceinline__ float transform(float x, int mode, float eps, int bf16)
{
    if (mode == 1) return rnd(__fadd_rn(rnd(__fmul_rn(x, x), bf16), eps), bf16);
    return fabsf(x);
}

// state <- beta*state + (1-beta)*mean, the mean rounded to the state's dtype first (as the reference's mean()).
__device__ __forceinline__ void blend(void* state, long long i, double mean, float beta, float one_minus, int bf16)
{
    if (bf16)
    {
        unsigned short* p = (unsigned short*)state;
        float mr = rnd((float)mean, 1);
        float scaled = rnd(__fmul_rn(__uint_as_float(((unsigned int)p[i]) << 16), beta), 1);
        p[i] = to_bf16(__fmaf_rn(one_minus, mr, scaled));
    }
    else
    {
        float* p = (float*)state;
        p[i] = __fmaf_rn(one_minus, (float)mean, __fmul_rn(p[i], beta));
    }
}

// One block per row (of batches*rows rows). mode 1: Adafactor (blend the row mean into out);
// mode 0: l1 norms (write the float sum into out).
extern "C" __global__ void row_reduce(
    const void* __restrict__ x, void* __restrict__ out, long long total_rows, long long cols,
    int mode, int bf16, float eps, float beta, float one_minus)
{
    __shared__ double partial[BLOCK];
    for (long long row = blockIdx.x; row < total_rows; row += gridDim.x)
    {
        double acc = 0.0;
        for (long long j = threadIdx.x; j < cols; j += BLOCK)
            acc += (double)transform(load_f32(x, row * cols + j, bf16), mode, eps, bf16);
        partial[threadIdx.x] = acc;
        __syncthreads();
        for (int s = BLOCK / 2; s > 0; s >>= 1)
        {
            if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0)
        {
            if (mode == 1) blend(out, row, partial[0] / (double)cols, beta, one_minus, bf16);
            else ((float*)out)[row] = (float)partial[0];
        }
        __syncthreads();
    }
}

// One thread per (batch, column); consecutive threads read consecutive columns (coalesced).
extern "C" __global__ void col_reduce(
    const void* __restrict__ x, void* __restrict__ out, long long batches, long long rows, long long cols,
    int mode, int bf16, float eps, float beta, float one_minus)
{
    long long total = batches * cols;
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride)
    {
        long long b = k / cols, j = k % cols;
        const long long base = b * rows * cols + j;
        double acc = 0.0;
        for (long long i = 0; i < rows; i++)
            acc += (double)transform(load_f32(x, base + i * cols, bf16), mode, eps, bf16);
        if (mode == 1) blend(out, k, acc / (double)rows, beta, one_minus, bf16);
        else ((float*)out)[k] = (float)acc;
    }
}
