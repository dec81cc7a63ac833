// Adam on block-wise quantized moments (see IQuantizedAdamKernel; the truth is TorchKernels.QuantizedAdam*, which
// dequantizes with BlockQuantizer, takes the dense Adam step and quantizes back). One thread block per quantization
// block and one thread per entry (blockDim.x = the format's block size: 256 for 8-bit, 128 for 4-bit), grid-stride
// over the blocks. Per block:
//   1. decode m and v: map[code] * absmax in float32 (the reference's mul_), then rounded to bfloat16 for bfloat16
//      gradients (its .to(dtype), nearest even);
//   2. Adam exactly as adam.cu's dense kernels (the same fused multiply-adds, the same bfloat16 rounding): the new
//      m and v, and the direction or the weights;
//   3. max |m| and max |v| over the block: a shared-memory tree (max is exact, so the result does not depend on the
//      order), NaN-propagating like torch's amax, clipped below at min_scale like clamp_min;
//   4. quantize as BlockQuantizer: y = x / scale (IEEE division), the largest code with map[code] <= y by a binary
//      search, up one code when y - low >= gap * 0.5 (nearest) or y - low > u * gap (stochastic, u from
//      RoundingNoise's hash of the store's key and the entry's flat index), the top code clamped;
//   5. write the codes (4-bit: the block's codes gathered in shared memory, then one byte per pair, the even entry in
//      the high nibble) and the absmax.
// Every read of a block's codes and absmax happens before the tree's barriers and every write after them, so the
// state is updated in place without a race (a 4-bit byte is read by two threads and written by a third).
// Compiled with --fmad=false: only the explicit __fmaf_rn fuse. No headers: NVRTC compiles this file alone.

#define MAX_BLOCK 256
#define MAX_CODES 256

__device__ __forceinline__ float bf16_to_float(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

__device__ __forceinline__ unsigned short float_to_bf16(float f)
{
    if (f != f) return 0x7FC0;
    unsigned int bits = __float_as_uint(f);
    return (unsigned short)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// The working dtype's loads, stores and rounding: float32 keeps every float op's result, bfloat16 rounds each
// intermediate the reference stores (adam.cu's rule).
__device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load(const unsigned short* p, long long i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store(float* p, long long i, float x) { p[i] = x; }
__device__ __forceinline__ void store(unsigned short* p, long long i, float x) { p[i] = float_to_bf16(x); }
__device__ __forceinline__ float working(float x, const float*) { return x; }
__device__ __forceinline__ float working(float x, const unsigned short*) { return round_bf16(x); }

// RoundingNoise.Mix (Wellons' lowbias32), in uint32 arithmetic as the C# reference.
__device__ __forceinline__ unsigned int noise_mix(unsigned int x)
{
    x ^= x >> 16;
    x *= 0x21F0AAADu;
    x ^= x >> 15;
    x *= 0xD35A2D97u;
    x ^= x >> 15;
    return x;
}

// RoundingNoise.Uniform(RoundingNoise.Bits(key, index)): (Mix(key + index * 0x9E3779B9) >> 8) * 2^-24, exact.
__device__ __forceinline__ float noise_uniform(unsigned int key, long long index)
{
    unsigned int bits = noise_mix(key + (unsigned int)index * 0x9E3779B9u);
    return __fmul_rn((float)(bits >> 8), 1.0f / 16777216.0f);
}

// torch.amax's max: a NaN wins.
__device__ __forceinline__ float max_nan(float a, float b) { return (a != a || a > b) ? a : b; }

// The code of x in a block of the given scale (BlockQuantizer.Quantize for one entry).
template <int BITS>
__device__ __forceinline__ unsigned int quantize(float x, float scale, const float* map, int stochastic, unsigned int key, long long index)
{
    const float y = __fdiv_rn(x, scale);
    unsigned int code = 0u;
#pragma unroll
    for (unsigned int step = 1u << (BITS - 1); step >= 1u; step >>= 1)
        code += y >= map[code + step] ? step : 0u;
    const unsigned int top = (1u << BITS) - 1u;
    const unsigned int up_code = code < top ? code + 1u : top;
    const float low = map[code];
    const float gap = __fsub_rn(map[up_code], low);
    const float residual = __fsub_rn(y, low);
    const bool up = stochastic ? residual > __fmul_rn(noise_uniform(key, index), gap) : residual >= __fmul_rn(gap, 0.5f);
    return up ? up_code : code;
}

// One step over every block. T: float (float32) or unsigned short (bfloat16); target: the direction (written) or,
// with UPDATE, the weights (updated in place as adam_update_*: w*decay, then w + (neg_step*m)/denom).
template <typename T, int BITS, bool UPDATE>
__device__ __forceinline__ void quantized_adam(
    const T* __restrict__ g, T* __restrict__ target,
    unsigned char* __restrict__ m_codes, float* __restrict__ m_absmax, const float* __restrict__ m_map_in,
    unsigned char* __restrict__ v_codes, float* __restrict__ v_absmax, const float* __restrict__ v_map_in,
    long long blocks, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
    float sqrt_bc2, int corrected, float decay, int decays, float neg_step,
    float min_scale, int m_stochastic, unsigned int m_key, int v_stochastic, unsigned int v_key)
{
    __shared__ float m_map[MAX_CODES];
    __shared__ float v_map[MAX_CODES];
    __shared__ float m_tree[MAX_BLOCK];
    __shared__ float v_tree[MAX_BLOCK];
    __shared__ unsigned char m_pack[MAX_BLOCK];
    __shared__ unsigned char v_pack[MAX_BLOCK];
    const unsigned int t = threadIdx.x;
    const unsigned int size = blockDim.x;
    for (unsigned int c = t; c < (1u << BITS); c += size)
    {
        m_map[c] = m_map_in[c];
        v_map[c] = v_map_in[c];
    }
    __syncthreads();
    // The loop bounds are the same for every thread of the block, so every thread reaches every barrier.
    for (long long b = blockIdx.x; b < blocks; b += gridDim.x)
    {
        const long long i = b * size + t;
        unsigned int mc, vc;
        if (BITS == 8)
        {
            mc = m_codes[i];
            vc = v_codes[i];
        }
        else
        {
            const unsigned int shift = (t & 1u) ? 0u : 4u; // the even entry is the high nibble
            mc = ((unsigned int)m_codes[i >> 1] >> shift) & 15u;
            vc = ((unsigned int)v_codes[i >> 1] >> shift) & 15u;
        }
        const float m_old = working(__fmul_rn(m_map[mc], m_absmax[b]), g);
        const float v_old = working(__fmul_rn(v_map[vc], v_absmax[b]), g);
        const float gi = load(g, i);

        const float m = working(__fmaf_rn(one_minus_beta1, gi, working(__fmul_rn(m_old, beta1), g)), g);
        const float v = working(__fmaf_rn(__fmul_rn(one_minus_beta2, gi), gi, working(__fmul_rn(v_old, beta2), g)), g);
        const float root = working(__fsqrt_rn(v), g);
        const float denom = working(__fadd_rn(corrected ? working(__fdiv_rn(root, sqrt_bc2), g) : root, eps), g);
        if (UPDATE)
        {
            float wi = load(target, i);
            if (decays) wi = working(__fmul_rn(wi, decay), g);
            store(target, i, __fadd_rn(wi, __fdiv_rn(__fmul_rn(neg_step, m), denom)));
        }
        else
        {
            store(target, i, __fdiv_rn(m, denom));
        }

        // The previous block's last reads of the trees and packs ended at the loop's closing barrier.
        m_tree[t] = fabsf(m);
        v_tree[t] = fabsf(v);
        __syncthreads();
        for (unsigned int s = size >> 1; s > 0u; s >>= 1)
        {
            if (t < s)
            {
                m_tree[t] = max_nan(m_tree[t], m_tree[t + s]);
                v_tree[t] = max_nan(v_tree[t], v_tree[t + s]);
            }
            __syncthreads();
        }
        // clamp_min: a NaN stays NaN.
        const float m_scale = m_tree[0] < min_scale ? min_scale : m_tree[0];
        const float v_scale = v_tree[0] < min_scale ? min_scale : v_tree[0];
        const unsigned int mq = quantize<BITS>(m, m_scale, m_map, m_stochastic, m_key, i);
        const unsigned int vq = quantize<BITS>(v, v_scale, v_map, v_stochastic, v_key, i);
        if (BITS == 8)
        {
            m_codes[i] = (unsigned char)mq;
            v_codes[i] = (unsigned char)vq;
        }
        else
        {
            m_pack[t] = (unsigned char)mq;
            v_pack[t] = (unsigned char)vq;
            __syncthreads();
            if (t < size / 2u)
            {
                const long long byte = b * (size / 2u) + t;
                m_codes[byte] = (unsigned char)((m_pack[2u * t] << 4) | m_pack[2u * t + 1u]);
                v_codes[byte] = (unsigned char)((v_pack[2u * t] << 4) | v_pack[2u * t + 1u]);
            }
        }
        if (t == 0u)
        {
            m_absmax[b] = m_scale;
            v_absmax[b] = v_scale;
        }
        __syncthreads();
    }
}

#define QUANTIZED_ADAM_DIRECTION(NAME, T, BITS)                                                                      \
    extern "C" __global__ void NAME(                                                                                 \
        const T* __restrict__ g, T* __restrict__ d,                                                                  \
        unsigned char* __restrict__ m_codes, float* __restrict__ m_absmax, const float* __restrict__ m_map,         \
        unsigned char* __restrict__ v_codes, float* __restrict__ v_absmax, const float* __restrict__ v_map,         \
        long long blocks, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,        \
        float sqrt_bc2, int corrected, float min_scale, int m_stochastic, unsigned int m_key,                       \
        int v_stochastic, unsigned int v_key)                                                                        \
    {                                                                                                                \
        quantized_adam<T, BITS, false>(g, d, m_codes, m_absmax, m_map, v_codes, v_absmax, v_map, blocks, beta1,     \
            one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, 1.0f, 0, 0.0f, min_scale,            \
            m_stochastic, m_key, v_stochastic, v_key);                                                               \
    }

#define QUANTIZED_ADAM_UPDATE(NAME, T, BITS)                                                                         \
    extern "C" __global__ void NAME(                                                                                 \
        const T* __restrict__ g, T* __restrict__ w,                                                                  \
        unsigned char* __restrict__ m_codes, float* __restrict__ m_absmax, const float* __restrict__ m_map,         \
        unsigned char* __restrict__ v_codes, float* __restrict__ v_absmax, const float* __restrict__ v_map,         \
        long long blocks, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,        \
        float sqrt_bc2, int corrected, float decay, int decays, float neg_step, float min_scale,                    \
        int m_stochastic, unsigned int m_key, int v_stochastic, unsigned int v_key)                                  \
    {                                                                                                                \
        quantized_adam<T, BITS, true>(g, w, m_codes, m_absmax, m_map, v_codes, v_absmax, v_map, blocks, beta1,      \
            one_minus_beta1, beta2, one_minus_beta2, eps, sqrt_bc2, corrected, decay, decays, neg_step, min_scale,  \
            m_stochastic, m_key, v_stochastic, v_key);                                                               \
    }

QUANTIZED_ADAM_DIRECTION(quantized_adam_direction_f32_8, float, 8)
QUANTIZED_ADAM_DIRECTION(quantized_adam_direction_f32_4, float, 4)
QUANTIZED_ADAM_DIRECTION(quantized_adam_direction_bf16_8, unsigned short, 8)
QUANTIZED_ADAM_DIRECTION(quantized_adam_direction_bf16_4, unsigned short, 4)
QUANTIZED_ADAM_UPDATE(quantized_adam_update_f32_8, float, 8)
QUANTIZED_ADAM_UPDATE(quantized_adam_update_f32_4, float, 4)
QUANTIZED_ADAM_UPDATE(quantized_adam_update_bf16_8, unsigned short, 8)
QUANTIZED_ADAM_UPDATE(quantized_adam_update_bf16_4, unsigned short, 4)
