using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Bf16 = LowRankOptim.Kernels.CpuKernels.Bf16;

namespace LowRankOptim.Kernels;

/// <summary>
/// The block loop of <see cref="QuantizedAdamCpuKernel"/>: for each block, decode m and v into stack buffers, run the dense
/// kernel's Adam arithmetic on them (<see cref="CpuKernels.AdamJob"/>, pointed at the block), and quantize them back as
/// <see cref="BlockQuantizer.Quantize"/> does. AVX2 (8 lanes, gathers from the map and <see cref="CodeSearch"/>) where the
/// hardware has it, else scalar code with the same float operations.
/// </summary>
/// <param name="adam">The Adam scalars of the call (each part steps its own copy).</param>
/// <param name="blockSize">Entries per block.</param>
/// <param name="bits">8 or 4.</param>
/// <param name="vector">Whether to take the AVX2 path (false: the scalar path, which tests run on AVX2 hardware too).</param>
internal sealed unsafe class QuantizedAdamBlocks(CpuKernels.AdamJob adam, int blockSize, int bits, bool vector)
{
    /// <summary>One quantized moment: codes, absmax, its map's search and its rounding.</summary>
    internal readonly struct Moment(byte* codes, float* absmax, CodeSearch search, Rounding rounding)
    {
        public readonly byte* Codes = codes;
        public readonly float* Absmax = absmax;
        public readonly CodeSearch Search = search;
        public readonly Rounding Rounding = rounding;
    }

    public void* Gradient, Target;
    public Moment M, V;

    /// <summary>Steps blocks [<paramref name="first"/>, <paramref name="end"/>) (one parallel part, on one thread).</summary>
    public void Run(long first, long end)
    {
        var job = adam.Clone();
        var bf16 = job.BFloat16;
        var elementSize = bf16 ? sizeof(ushort) : sizeof(float);
        var m = stackalloc float[blockSize];
        var v = stackalloc float[blockSize];
        var mHalf = stackalloc ushort[bf16 ? blockSize : 0];
        var vHalf = stackalloc ushort[bf16 ? blockSize : 0];
        var codes = stackalloc byte[blockSize]; // one code per entry, before 4-bit packing
        for (var block = first; block < end; block++)
        {
            var start = block * blockSize;
            Decode(M, block, m, codes, vector);
            Decode(V, block, v, codes, vector);
            if (bf16)
            {
                ToBf16(m, mHalf); ToBf16(v, vHalf);
                job.M = mHalf;
                job.V = vHalf;
            }
            else
            {
                job.M = m;
                job.V = v;
            }
            job.G = (byte*)Gradient + start * elementSize;
            job.Target = (byte*)Target + start * elementSize;
            job.Run(0, blockSize);
            if (bf16)
            {
                // The reference quantizes the bf16 workspace, converted to float32 exactly.
                FromBf16(mHalf, m); FromBf16(vHalf, v);
            }
            Quantize(m, M, block, start, codes, vector);
            Quantize(v, V, block, start, codes, vector);
        }
    }

    // ---------------------------------------------------------------- decode

    /// <summary>values ← map[code]·absmax in float32 (the reference's index_select and mul_).</summary>
    private void Decode(in Moment store, long block, float* values, byte* codes, bool vector)
    {
        var source = store.Codes + block * blockSize * bits / 8;
        if (bits == 4)
        {
            Unpack(source, codes, vector);
            source = codes;
        }
        var scale = store.Absmax[block];
        var map = store.Search.Values;
        var j = 0;
        if (vector)
        {
            var s = Vector256.Create(scale);
            for (; j < blockSize; j += 8)
                (Avx2.GatherVector256(map, Avx2.ConvertToVector256Int32(source + j), 4) * s).Store(values + j);
        }
        for (; j < blockSize; j++) values[j] = map[source[j]] * scale;
    }

    /// <summary>4-bit codes, two to a byte, as one code per byte (the even entry from the high nibble).</summary>
    private void Unpack(byte* packed, byte* codes, bool vector)
    {
        var j = 0;
        if (vector)
        {
            var low = Vector128.Create((byte)0x0F);
            for (; j < blockSize; j += 32)
            {
                var pairs = Vector128.Load(packed + j / 2);
                var even = Vector128.ShiftRightLogical(pairs, 4);
                var odd = pairs & low;
                Sse2.UnpackLow(even, odd).Store(codes + j);
                Sse2.UnpackHigh(even, odd).Store(codes + j + 16);
            }
        }
        for (; j < blockSize; j += 2)
        {
            var pair = packed[j / 2];
            codes[j] = (byte)(pair >> 4);
            codes[j + 1] = (byte)(pair & 0x0F);
        }
    }

    private void ToBf16(float* values, ushort* half)
    {
        for (var j = 0; j < blockSize; j += 8) Bf16.Store(Vector256.Load(values + j), half + j);
    }

    private void FromBf16(ushort* half, float* values)
    {
        for (var j = 0; j < blockSize; j += 8) Bf16.Load(half + j).Store(values + j);
    }

    // ---------------------------------------------------------------- quantize

    /// <summary>
    /// The block's scale (max |x|, clipped at <see cref="BlockFormat.MinScale"/>) and codes: y = x / scale, the search's
    /// code c, then up to min(c + 1, top) when y − map[c] ≥ (map[c+1] − map[c])·0.5 (nearest) or &gt; u·(map[c+1] − map[c])
    /// (stochastic, u from the element's flat index).
    /// </summary>
    private void Quantize(float* values, in Moment store, long block, long start, byte* codes, bool vector)
    {
        var scale = Scale(values, vector);
        store.Absmax[block] = scale;
        var target = bits == 8 ? store.Codes + start : codes;
        if (vector) QuantizeVector(values, scale, store.Search, store.Rounding, start, target);
        else QuantizeScalar(values, scale, store.Search, store.Rounding, start, target);
        if (bits == 4) Pack(codes, store.Codes + start / 2, vector);
    }

    /// <summary>
    /// max |x| over the block, clipped below at <see cref="BlockFormat.MinScale"/>, from the bits: for |x| the float order is
    /// the integer order, and a NaN (above +∞ as an integer) wins, as amax propagates it (clamp_min keeps it).
    /// </summary>
    private float Scale(float* values, bool vector)
    {
        uint largest = 0;
        var j = 0;
        if (vector)
        {
            var magnitude = Vector256.Create(0x7FFFFFFFu);
            var acc = Vector256<uint>.Zero;
            for (; j < blockSize; j += 8) acc = Vector256.Max(acc, Vector256.Load((uint*)values + j) & magnitude);
            for (var k = 0; k < Vector256<uint>.Count; k++) largest = Math.Max(largest, acc.GetElement(k));
        }
        for (; j < blockSize; j++) largest = Math.Max(largest, ((uint*)values)[j] & 0x7FFFFFFFu);
        var scale = BitConverter.UInt32BitsToSingle(largest);
        return scale < BlockFormat.MinScale ? BlockFormat.MinScale : scale;
    }

    private void QuantizeScalar(float* values, float scale, CodeSearch search, Rounding rounding, long start, byte* codes)
    {
        var map = search.Values;
        var stochastic = rounding.Mode == StateRounding.Stochastic;
        for (var j = 0; j < blockSize; j++)
        {
            var y = values[j] / scale;
            var c = search.Find(y);
            var upCode = Math.Min(c + 1, search.Top);
            var low = map[c];
            var gap = map[upCode] - low;
            var residual = y - low;
            var up = stochastic
                ? residual > RoundingNoise.Uniform(RoundingNoise.Bits(rounding.Key, start + j)) * gap
                : residual >= gap * 0.5f;
            codes[j] = (byte)(up ? upCode : c);
        }
    }

    private void QuantizeVector(float* values, float scale, CodeSearch search, Rounding rounding, long start, byte* codes)
    {
        var map = search.Values;
        var prefixes = (int*)search.Start;
        var refinements = search.Refinements;
        var stochastic = rounding.Mode == StateRounding.Stochastic;
        var s = Vector256.Create(scale);
        var top = Vector256.Create(search.Top);
        var byteMask = Vector256.Create(0xFF);
        var half = Vector256.Create(0.5f);
        var lanes = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var key = Vector256.Create(rounding.Key);
        var stride = Vector256.Create(RoundingNoise.ElementStride);
        var ulp24 = Vector256.Create(1.0f / 16777216.0f);
        for (var j = 0; j < blockSize; j += 8)
        {
            var y = Vector256.Load(values + j) / s;
            // The start code of y's 16-bit prefix (a 32-bit gather at byte offsets, the low byte kept), then the steps up.
            var c = Avx2.GatherVector256(prefixes, (y.AsUInt32() >> 16).AsInt32(), 1) & byteMask;
            for (var k = 0; k < refinements; k++)
                c -= Vector256.GreaterThanOrEqual(y, Avx2.GatherVector256(map, c + Vector256<int>.One, 4)).AsInt32();
            c &= Vector256.Equals(y, y).AsInt32(); // NaN: code 0, as the binary search's comparisons all fail
            var upCode = Vector256.Min(c + Vector256<int>.One, top);
            var low = Avx2.GatherVector256(map, c, 4);
            var gap = Avx2.GatherVector256(map, upCode, 4) - low;
            var residual = y - low;
            Vector256<float> up;
            if (stochastic)
            {
                var index = Vector256.Create((uint)(start + j)) + lanes;
                var u = Vector256.ConvertToSingle((Mix(key + index * stride) >> 8).AsInt32()) * ulp24;
                up = Vector256.GreaterThan(residual, u * gap);
            }
            else
            {
                up = Vector256.GreaterThanOrEqual(residual, gap * half);
            }
            var chosen = Vector256.ConditionalSelect(up.AsInt32(), upCode, c);
            // 8 codes (0..255) as 8 bytes.
            var words = Vector128.Narrow(chosen.GetLower(), chosen.GetUpper());
            *(ulong*)(codes + j) = Vector128.Narrow(words, words).AsUInt64().ToScalar();
        }
    }

    /// <summary><see cref="RoundingNoise.Mix"/> on 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Mix(Vector256<uint> x)
    {
        x ^= x >> 16;
        x *= Vector256.Create(0x21F0AAADu);
        x ^= x >> 15;
        x *= Vector256.Create(0xD35A2D97u);
        x ^= x >> 15;
        return x;
    }

    /// <summary>One code per byte as 4-bit pairs, the even entry in the high nibble.</summary>
    private void Pack(byte* codes, byte* packed, bool vector)
    {
        var j = 0;
        if (vector)
        {
            var low = Vector128.Create((ushort)0x00FF);
            for (; j < blockSize; j += 32)
            {
                // Each 16-bit word holds an even code (low byte) and the next odd code (high byte).
                var a = Vector128.Load((ushort*)(codes + j));
                var b = Vector128.Load((ushort*)(codes + j + 16));
                Vector128.Narrow(((a << 4) | (a >> 8)) & low, ((b << 4) | (b >> 8)) & low).Store(packed + j / 2);
            }
        }
        for (; j < blockSize; j += 2) packed[j / 2] = (byte)((codes[j] << 4) | codes[j + 1]);
    }
}
