using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Bf16 = LowRankOptim.Kernels.CpuKernels.Bf16;

namespace LowRankOptim.Kernels;

/// <summary>
/// The block loop of <see cref="QuantizedAdamCpuKernel"/>: for each block, decode m and v into stack buffers, run the dense
/// kernel's Adam arithmetic on them (<see cref="CpuKernels.AdamJob"/>, pointed at the block), and quantize them back as
/// <see cref="BlockQuantizer.Quantize"/> does. AVX-512 (16 lanes, the map and the binary search's probes looked up in
/// registers with permutes; 8-bit nearest codes from <see cref="CodeLines"/> where the hardware has VBMI and DQ), AVX2 (8 lanes, gathers from the map and <see cref="CodeSearch"/>) or scalar code, all with the
/// same float operations.
/// </summary>
/// <param name="adam">The Adam scalars of the call (each part steps its own copy).</param>
/// <param name="blockSize">Entries per block.</param>
/// <param name="bits">8 or 4.</param>
/// <param name="path">Which loops to take (the tests run every path the hardware has).</param>
internal sealed unsafe class QuantizedAdamBlocks(CpuKernels.AdamJob adam, int blockSize, int bits, QuantizedAdamBlocks.Path path)
{
    /// <summary>One quantized moment: codes, absmax, its map's search and its rounding.</summary>
    internal readonly struct Moment(byte* codes, float* absmax, CodeSearch search, Rounding rounding)
    {
        public readonly byte* Codes = codes;
        public readonly float* Absmax = absmax;
        public readonly CodeSearch Search = search;
        public readonly Rounding Rounding = rounding;
    }

    /// <summary>The instruction sets a kernel instance uses.</summary>
    internal enum Path
    {
        /// <summary>One entry at a time.</summary>
        Scalar,
        /// <summary>8 lanes, gathers.</summary>
        Avx2,
        /// <summary>16 lanes, the codes of 8-bit nearest rounding by <see cref="CodeLines"/> where the hardware has AVX-512 VBMI and DQ.</summary>
        Avx512,
        /// <summary>16 lanes, every code by the search (what <see cref="Avx512"/> runs without VBMI or DQ).</summary>
        Avx512Search,
    }

    private readonly bool vector = path != Path.Scalar;
    private readonly bool avx512 = path is Path.Avx512 or Path.Avx512Search;
    private readonly bool byLines = path == Path.Avx512 && Avx512Vbmi.IsSupported && Avx512DQ.IsSupported;

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
        var tracked = avx512 && job.CanTrackLargest;
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
            float mScale, vScale;
            if (tracked)
            {
                // The scales from the Adam step's registers (no second pass over m and v).
                job.RunTrackingLargest(0, blockSize);
                (mScale, vScale) = (Clipped(LargestLane(job.LargestM)), Clipped(LargestLane(job.LargestV)));
            }
            else
            {
                job.Run(0, blockSize);
                if (bf16)
                {
                    // The reference quantizes the bf16 workspace, converted to float32 exactly.
                    FromBf16(mHalf, m); FromBf16(vHalf, v);
                }
                // Both scales before either search: each ends in a horizontal max, whose latency the other's work can hide.
                (mScale, vScale) = (Scale(m, vector), Scale(v, vector));
            }
            Quantize(m, mScale, M, block, start, codes, vector);
            Quantize(v, vScale, V, block, start, codes, vector);
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
        if (avx512)
        {
            var s = Vector512.Create(scale);
            if (bits == 8 && Avx512Vbmi.IsSupported)
            {
                var planes = new PlaneTables(store.Search.Planes);
                for (; j + 64 <= blockSize; j += 64) Decode64(planes, source + j, values + j, s);
            }
            if (bits == 8)
                for (; j < blockSize; j += 16)
                    (Lookup256(map, Avx512F.ConvertToVector512Int32(Vector128.Load(source + j))) * s).Store(values + j);
            else
                for (; j < blockSize; j += 16)
                    (Lookup16(map, Avx512F.ConvertToVector512Int32(Vector128.Load(source + j))) * s).Store(values + j);
        }
        else if (vector)
        {
            var s = Vector256.Create(scale);
            for (; j < blockSize; j += 8)
                (Avx2.GatherVector256(map, Avx2.ConvertToVector256Int32(source + j), 4) * s).Store(values + j);
        }
        for (; j < blockSize; j++) values[j] = map[source[j]] * scale;
    }

    /// <summary>
    /// Where each of 64 codes goes before the byte-plane lookup of <see cref="Decode64"/>: the unpacks leave element
    /// 16k + 4L + t (k, L, t &lt; 4) of the result at byte 16L + 4k + t of the plane vectors (lane L, quarter k).
    /// </summary>
    private static readonly Vector512<byte> DecodeOrder = CreateDecodeOrder();

    private static Vector512<byte> CreateDecodeOrder()
    {
        var order = new byte[64];
        for (var lane = 0; lane < 4; lane++)
            for (var k = 0; k < 4; k++)
                for (var t = 0; t < 4; t++)
                    order[16 * lane + 4 * k + t] = (byte)(16 * k + 4 * lane + t);
        return Vector512.Create(order);
    }

    /// <summary>
    /// The 4 byte planes of an 8-bit map (<see cref="CodeSearch.Planes"/>) as 16 registers (byte b of map entries 64q …
    /// 64q + 63 in BbQq), loaded once per block and moment so that the decode's permutes read registers, not memory.
    /// </summary>
    private readonly struct PlaneTables(byte* p)
    {
        public readonly Vector512<byte> B0Q0 = Vector512.Load(p), B0Q1 = Vector512.Load(p + 64), B0Q2 = Vector512.Load(p + 128), B0Q3 = Vector512.Load(p + 192);
        public readonly Vector512<byte> B1Q0 = Vector512.Load(p + 256), B1Q1 = Vector512.Load(p + 320), B1Q2 = Vector512.Load(p + 384), B1Q3 = Vector512.Load(p + 448);
        public readonly Vector512<byte> B2Q0 = Vector512.Load(p + 512), B2Q1 = Vector512.Load(p + 576), B2Q2 = Vector512.Load(p + 640), B2Q3 = Vector512.Load(p + 704);
        public readonly Vector512<byte> B3Q0 = Vector512.Load(p + 768), B3Q1 = Vector512.Load(p + 832), B3Q2 = Vector512.Load(p + 896), B3Q3 = Vector512.Load(p + 960);
    }

    /// <summary>
    /// 64 entries map[code]·scale of an 8-bit map (AVX-512 VBMI): each byte plane of the map looked up with two 128-entry
    /// byte permutes chosen by the code's top bit, then the four planes interleaved to float32 bits (the same floats as
    /// map[code], so the products are the reference's).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Decode64(in PlaneTables t, byte* source, float* values, Vector512<float> scale)
    {
        var codes = Avx512Vbmi.PermuteVar64x8(Vector512.Load(source), DecodeOrder);
        var b0 = Plane(t.B0Q0, t.B0Q1, t.B0Q2, t.B0Q3, codes);
        var b1 = Plane(t.B1Q0, t.B1Q1, t.B1Q2, t.B1Q3, codes);
        var b2 = Plane(t.B2Q0, t.B2Q1, t.B2Q2, t.B2Q3, codes);
        var b3 = Plane(t.B3Q0, t.B3Q1, t.B3Q2, t.B3Q3, codes);
        var low01 = Avx512BW.UnpackLow(b0, b1).AsUInt16();
        var high01 = Avx512BW.UnpackHigh(b0, b1).AsUInt16();
        var low23 = Avx512BW.UnpackLow(b2, b3).AsUInt16();
        var high23 = Avx512BW.UnpackHigh(b2, b3).AsUInt16();
        (Avx512BW.UnpackLow(low01, low23).AsSingle() * scale).Store(values);
        (Avx512BW.UnpackHigh(low01, low23).AsSingle() * scale).Store(values + 16);
        (Avx512BW.UnpackLow(high01, high23).AsSingle() * scale).Store(values + 32);
        (Avx512BW.UnpackHigh(high01, high23).AsSingle() * scale).Store(values + 48);
    }

    /// <summary>plane[code] for 64 codes: entries 0–127 and 128–255 by two-source byte permutes, chosen by the top bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Plane(Vector512<byte> q0, Vector512<byte> q1, Vector512<byte> q2, Vector512<byte> q3, Vector512<byte> codes) =>
        Avx512BW.BlendVariable(Avx512Vbmi.PermuteVar64x8x2(q0, codes, q1), Avx512Vbmi.PermuteVar64x8x2(q2, codes, q3), codes);

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
    /// The block's scale (<see cref="Scale"/>, stored as its absmax) and codes: y = x / scale, the search's
    /// code c, then up to min(c + 1, top) when y − map[c] ≥ (map[c+1] − map[c])·0.5 (nearest, found directly as the number
    /// of <see cref="CodeSearch.Thresholds"/> ≤ y) or &gt; u·(map[c+1] − map[c]) (stochastic, u from the element's flat index).
    /// </summary>
    private void Quantize(float* values, float scale, in Moment store, long block, long start, byte* codes, bool vector)
    {
        store.Absmax[block] = scale;
        var target = bits == 8 ? store.Codes + start : codes;
        var (search, key) = (store.Search, store.Rounding.Key);
        if (store.Rounding.Mode == StateRounding.Nearest)
        {
            if (avx512) QuantizeNearestAvx512(values, scale, search, target);
            else if (vector) QuantizeNearestVector(values, scale, search, target);
            else for (var j = 0; j < blockSize; j++) target[j] = (byte)search.FindNearest(values[j] / scale);
        }
        else if (avx512) QuantizeStochasticAvx512(values, scale, search, key, start, target);
        else if (vector) QuantizeStochasticVector(values, scale, search, key, start, target);
        else QuantizeStochasticScalar(values, scale, search, key, start, target);
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
        if (avx512)
        {
            var magnitude = Vector512.Create(0x7FFFFFFFu);
            var acc = Vector512<uint>.Zero;
            for (; j < blockSize; j += 16) acc = Vector512.Max(acc, Vector512.Load((uint*)values + j) & magnitude);
            largest = LargestLane(acc);
        }
        else if (vector)
        {
            var magnitude = Vector256.Create(0x7FFFFFFFu);
            var acc = Vector256<uint>.Zero;
            for (; j < blockSize; j += 8) acc = Vector256.Max(acc, Vector256.Load((uint*)values + j) & magnitude);
            largest = LargestLane(acc);
        }
        for (; j < blockSize; j++) largest = Math.Max(largest, ((uint*)values)[j] & 0x7FFFFFFFu);
        return Clipped(largest);
    }

    /// <summary>The scale of a block whose largest |x| has the float32 bits <paramref name="largest"/>: clipped below at <see cref="BlockFormat.MinScale"/> (a NaN stays).</summary>
    private static float Clipped(uint largest)
    {
        var scale = BitConverter.UInt32BitsToSingle(largest);
        return scale < BlockFormat.MinScale ? BlockFormat.MinScale : scale;
    }

    /// <summary>The largest of 16 lanes.</summary>
    private static uint LargestLane(Vector512<uint> lanes) => LargestLane(Vector256.Max(lanes.GetLower(), lanes.GetUpper()));

    /// <summary>
    /// The largest of 8 lanes by halving in registers: element by element (8 extracts and Math.Max), this once-per-block
    /// reduction took a sixth of the 8-bit kernel's time.
    /// </summary>
    private static uint LargestLane(Vector256<uint> lanes)
    {
        var q = Vector128.Max(lanes.GetLower(), lanes.GetUpper());
        q = Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(2u, 3, 0, 1)));
        return Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(1u, 0, 3, 2))).ToScalar();
    }

    /// <summary>Stochastic rounding one entry at a time: <see cref="CodeSearch.Find"/>, then up when y − map[c] &gt; u·gap.</summary>
    private void QuantizeStochasticScalar(float* values, float scale, CodeSearch search, uint noiseKey, long start, byte* codes)
    {
        var map = search.Values;
        for (var j = 0; j < blockSize; j++)
        {
            var y = values[j] / scale;
            var c = search.Find(y);
            var upCode = Math.Min(c + 1, search.Top);
            var low = map[c];
            var up = y - low > RoundingNoise.Uniform(RoundingNoise.Bits(noiseKey, start + j)) * (map[upCode] - low);
            codes[j] = (byte)(up ? upCode : c);
        }
    }

    /// <summary>
    /// Nearest rounding on 8 lanes (AVX2): the rounded code is the number of <see cref="CodeSearch.Thresholds"/> ≤ y, found
    /// as the code is (the start code of y's 16-bit prefix, then steps up while the next threshold ≤ y), so that no map
    /// value, residual or gap is gathered. NaN: code 0.
    /// </summary>
    private void QuantizeNearestVector(float* values, float scale, CodeSearch search, byte* codes)
    {
        var s = Vector256.Create(scale);
        for (var j = 0; j < blockSize; j += 8)
            StoreCodes(Walk(Vector256.Load(values + j) / s, search.NearestStart, search.NearestValues, search.NearestRefinements), codes + j);
    }

    /// <summary>
    /// <see cref="CodeSearch"/>'s walk on 8 lanes: the largest c with sorted[c] ≤ y, from the start code of y's 16-bit prefix
    /// (a 32-bit gather at byte offsets, the low byte kept), then the steps up; NaN: code 0, as the binary search's
    /// comparisons all fail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Walk(Vector256<float> y, byte* start, float* sorted, int refinements)
    {
        var c = Avx2.GatherVector256((int*)start, (y.AsUInt32() >> 16).AsInt32(), 1) & Vector256.Create(0xFF);
        for (var k = 0; k < refinements; k++)
            c -= Vector256.GreaterThanOrEqual(y, Avx2.GatherVector256(sorted, c + Vector256<int>.One, 4)).AsInt32();
        return c & Vector256.Equals(y, y).AsInt32();
    }

    /// <summary>8 codes (0 … 255) as 8 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreCodes(Vector256<int> c, byte* codes)
    {
        var words = Vector128.Narrow(c.GetLower(), c.GetUpper());
        *(ulong*)codes = Vector128.Narrow(words, words).AsUInt64().ToScalar();
    }

    /// <summary>Stochastic rounding on 8 lanes (AVX2): gathers from the map and from <see cref="CodeSearch"/>'s start table.</summary>
    private void QuantizeStochasticVector(float* values, float scale, CodeSearch search, uint noiseKey, long start, byte* codes)
    {
        var map = search.Values;
        var s = Vector256.Create(scale);
        var top = Vector256.Create(search.Top);
        var lanes = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var key = Vector256.Create(noiseKey);
        var stride = Vector256.Create(RoundingNoise.ElementStride);
        var ulp24 = Vector256.Create(1.0f / 16777216.0f);
        for (var j = 0; j < blockSize; j += 8)
        {
            var y = Vector256.Load(values + j) / s;
            var c = Walk(y, search.Start, map, search.Refinements);
            var upCode = Vector256.Min(c + Vector256<int>.One, top);
            var low = Avx2.GatherVector256(map, c, 4);
            var gap = Avx2.GatherVector256(map, upCode, 4) - low;
            var index = Vector256.Create((uint)(start + j)) + lanes;
            var u = Vector256.ConvertToSingle((RoundingNoise.Mix(key + index * stride) >> 8).AsInt32()) * ulp24;
            var up = Vector256.GreaterThan(y - low, u * gap);
            StoreCodes(Vector256.ConditionalSelect(up.AsInt32(), upCode, c), codes + j);
        }
    }

    /// <summary>
    /// Stochastic rounding on 16 lanes: the binary search of <see cref="BlockQuantizer.Quantize"/>, each level's probe
    /// looked up in registers (<see cref="CodeSearch.Probes"/>): level k compares y ≥ probe[i] where i is the code's k − 1
    /// bits found so far, then i ← 2i + (y ≥ probe). The rounding needs map[c] and map[c + 1]: the last probe passed is
    /// map[c] (map[0] if none) and the last one failed is map[c + 1] (a failed probe at step 2^t leaves bits below t all
    /// set, so c + 1 is that probe; map[top] if none failed, as c + 1 is clamped there). The first
    /// <see cref="CodeSearch.BoundLevels"/> levels leave them to one lookup each by the i found (<see cref="CodeSearch.Bounds"/>);
    /// the deeper levels keep them as they go. NaN fails every comparison (code 0, as the reference's search).
    /// </summary>
    private void QuantizeStochasticAvx512(float* values, float scale, CodeSearch search, uint noiseKey, long start, byte* codes)
    {
        var s = Vector512.Create(scale);
        var top = Vector512.Create(search.Top);
        var lanes = Vector512.Create(0u, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var key = Vector512.Create(noiseKey);
        var stride = Vector512.Create(RoundingNoise.ElementStride);
        var ulp24 = Vector512.Create(1.0f / 16777216.0f);
        var sixteen = Vector512.Create(16u);
        // Four vectors at a time, level by level: each search is a chain of dependent permutes and compares, so four
        // interleaved chains keep the units busy where two left them waiting (eight spill: each keeps four vectors). A
        // block's last 32 entries (block sizes are multiples of 32, not always of 64) fill the four chains twice over.
        for (var j = 0; j < blockSize; j += 64)
        {
            var pair = j + 64 > blockSize;
            var a = Vector512.Load(values + j) / s;
            var b = Vector512.Load(values + j + 16) / s;
            var c = pair ? a : Vector512.Load(values + j + 32) / s;
            var d = pair ? b : Vector512.Load(values + j + 48) / s;
            var (sa, sb, sc, sd) = (new Search(a), new Search(b), new Search(c), new Search(d));
            Find(search, ref sa, ref sb, ref sc, ref sd);
            var index = Vector512.Create((uint)(start + j)) + lanes;
            Round(sa, key, index, stride, ulp24, top, codes + j);
            Round(sb, key, index + sixteen, stride, ulp24, top, codes + j + 16);
            if (pair) break;
            Round(sc, key, index + sixteen + sixteen, stride, ulp24, top, codes + j + 32);
            Round(sd, key, index + sixteen + sixteen + sixteen, stride, ulp24, top, codes + j + 48);
        }
    }

    /// <summary>
    /// Nearest rounding on 16 lanes: the rounded code is the number of <see cref="CodeSearch.Thresholds"/> ≤ y, found by the
    /// binary search's first levels over the thresholds (<see cref="CodeSearch.NearestProbes"/>, index only) and then, for
    /// 8-bit, a count over the 7 thresholds left (<see cref="CodeSearch.NearestTails"/>: 7 independent lookups by the
    /// index instead of 3 dependent levels). No map value, residual or gap is needed. NaN passes no threshold (code 0, as
    /// the reference's search and rounding). Eight vectors (128 entries) are searched interleaved level by level: a level
    /// is a chain of dependent permute, compare and add, and with only y and i to keep per vector, eight chains fit in the
    /// registers. Past a block's end (block sizes are multiples of 32) the chains search copies that are not stored.
    /// For the 8-bit maps, where the hardware has VBMI and DQ, the codes come from <see cref="CodeLines"/> instead, the
    /// search taking only the lanes the lines are unsure of.
    /// </summary>
    private void QuantizeNearestAvx512(float* values, float scale, CodeSearch search, byte* codes)
    {
        var s = Vector512.Create(scale);
        if (byLines && search.Lines is { } codeLines)
        {
            if (!NearestByLines(values, s, codeLines, codes)) SearchUnsure(values, scale, codeLines, search, codes);
            return;
        }
        for (var j = 0; j < blockSize; j += 128) NearestGroup(values + j, Math.Min(8, (blockSize - j) / 16), s, search, codes + j);
    }

    /// <summary>
    /// The block's codes by <see cref="CodeLines"/> (the steps of <see cref="CodeLines.TryFind"/>, 16 lanes at a time, the
    /// tables in registers); false where any lane was unsure (<see cref="SearchUnsure"/> then finds those). Eight vectors go
    /// through each step together: one vector's steps are a chain of about 40 cycles, and the out-of-order window alone
    /// overlapped too few of them.
    /// </summary>
    private bool NearestByLines(float* values, Vector512<float> s, CodeLines lines, byte* codes)
    {
        var t = new LineTables(lines);
        // The largest |g − round(g)| as float bits (a NaN's bits are above every float's).
        var worst = Vector512<uint>.Zero;
        var j = 0;
        for (; j + 128 <= blockSize; j += 128)
        {
            var (y0, y1, y2, y3) = (Vector512.Load(values + j) / s, Vector512.Load(values + j + 16) / s, Vector512.Load(values + j + 32) / s, Vector512.Load(values + j + 48) / s);
            var (y4, y5, y6, y7) = (Vector512.Load(values + j + 64) / s, Vector512.Load(values + j + 80) / s, Vector512.Load(values + j + 96) / s, Vector512.Load(values + j + 112) / s);
            var (a0, a1, a2, a3) = (t.Magnitude(y0), t.Magnitude(y1), t.Magnitude(y2), t.Magnitude(y3));
            var (a4, a5, a6, a7) = (t.Magnitude(y4), t.Magnitude(y5), t.Magnitude(y6), t.Magnitude(y7));
            var (p0, p1, p2, p3) = (t.FirstPiece(y0, a0), t.FirstPiece(y1, a1), t.FirstPiece(y2, a2), t.FirstPiece(y3, a3));
            var (p4, p5, p6, p7) = (t.FirstPiece(y4, a4), t.FirstPiece(y5, a5), t.FirstPiece(y6, a6), t.FirstPiece(y7, a7));
            (p0, p1, p2, p3) = (t.Piece(a0, p0), t.Piece(a1, p1), t.Piece(a2, p2), t.Piece(a3, p3));
            (p4, p5, p6, p7) = (t.Piece(a4, p4), t.Piece(a5, p5), t.Piece(a6, p6), t.Piece(a7, p7));
            var (g0, g1, g2, g3) = (t.Line(a0, p0), t.Line(a1, p1), t.Line(a2, p2), t.Line(a3, p3));
            var (g4, g5, g6, g7) = (t.Line(a4, p4), t.Line(a5, p5), t.Line(a6, p6), t.Line(a7, p7));
            worst = Avx512F.Max(Avx512F.Max(Avx512F.Max(t.Error(g0), t.Error(g1)), Avx512F.Max(t.Error(g2), t.Error(g3))),
                Avx512F.Max(Avx512F.Max(Avx512F.Max(t.Error(g4), t.Error(g5)), Avx512F.Max(t.Error(g6), t.Error(g7))), worst));
            StoreCodes(Avx512F.ConvertToVector512Int32(g0), codes + j); StoreCodes(Avx512F.ConvertToVector512Int32(g1), codes + j + 16);
            StoreCodes(Avx512F.ConvertToVector512Int32(g2), codes + j + 32); StoreCodes(Avx512F.ConvertToVector512Int32(g3), codes + j + 48);
            StoreCodes(Avx512F.ConvertToVector512Int32(g4), codes + j + 64); StoreCodes(Avx512F.ConvertToVector512Int32(g5), codes + j + 80);
            StoreCodes(Avx512F.ConvertToVector512Int32(g6), codes + j + 96); StoreCodes(Avx512F.ConvertToVector512Int32(g7), codes + j + 112);
        }
        for (; j < blockSize; j += 16)
        {
            var g = t.Line(Vector512.Load(values + j) / s);
            worst = Avx512F.Max(t.Error(g), worst);
            StoreCodes(Avx512F.ConvertToVector512Int32(g), codes + j);
        }
        return Vector512.LessThanAll(worst, t.Half);
    }

    /// <summary>
    /// The codes of the lanes <see cref="NearestByLines"/> was unsure of, one at a time by the search (<see cref="CodeSearch.FindNearest"/>,
    /// the same y = x / scale). Rare on random float32 moments (about one block in 200), common where the moments come
    /// from bfloat16 (a quarter to a third of the blocks: ratios of 8-bit mantissas fall on thresholds exactly), which is
    /// why the lanes are found one by one rather than the block searched again.
    /// </summary>
    private void SearchUnsure(float* values, float scale, CodeLines lines, CodeSearch search, byte* codes)
    {
        var t = new LineTables(lines);
        var s = Vector512.Create(scale);
        for (var j = 0; j < blockSize; j += 16)
        {
            var unsure = Vector512.GreaterThanOrEqual(t.Error(t.Line(Vector512.Load(values + j) / s)), t.Half).ExtractMostSignificantBits();
            for (; unsure != 0; unsure &= unsure - 1)
            {
                var k = j + BitOperations.TrailingZeroCount(unsure);
                codes[k] = (byte)search.FindNearest(values[k] / scale);
            }
        }
    }

    /// <summary><see cref="CodeLines"/>' tables and constants as registers, and the steps of its code by lines.</summary>
    private readonly struct LineTables(CodeLines lines)
    {
        private readonly Vector512<byte> firstPiece = Vector512.Load(lines.FirstPiece);
        private readonly Vector512<float> next = Vector512.Load(lines.NextStart), clamp = Vector512.Load(lines.Clamp);
        private readonly Vector512<float> slope = Vector512.Load(lines.Slope), offset = Vector512.Load(lines.Offset);
        private readonly Vector512<ushort> bias = Vector512.Create((uint)CodeLines.ExponentBias).AsUInt16();
        private readonly Vector512<uint> magnitude = Vector512.Create(0x7FFFFFFFu), negativeSide = Vector512.Create(32u);

        /// <summary><see cref="CodeLines.Half"/>'s bits.</summary>
        public readonly Vector512<uint> Half = Vector512.Create(BitConverter.SingleToUInt32Bits(lines.Half));

        /// <summary>|y|.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Magnitude(Vector512<float> y) => (y.AsUInt32() & magnitude).AsSingle();

        /// <summary>The first piece of a's bucket on y's side (the byte permute leaves the index's upper bytes at [0] = 0).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<int> FirstPiece(Vector512<float> y, Vector512<float> a)
        {
            var bucket = Avx512BW.SubtractSaturate((a.AsUInt32() >> 23).AsUInt16(), bias).AsUInt32();
            var index = Vector512.ConditionalSelect(Vector512.LessThan(y.AsInt32(), Vector512<int>.Zero).AsUInt32(), bucket | negativeSide, bucket);
            return Avx512Vbmi.PermuteVar64x8(firstPiece, index.AsByte()).AsInt32();
        }

        /// <summary>The next piece where a reaches its start.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<int> Piece(Vector512<float> a, Vector512<int> p) =>
            Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(a, Avx512F.PermuteVar16x32(next, p)).AsInt32(), p + Vector512<int>.One, p);

        /// <summary>g = min(clamp, a)·slope + offset; a second in the min, so that a NaN stays NaN (and its lane unsure).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Line(Vector512<float> a, Vector512<int> p) =>
            Avx512F.FusedMultiplyAdd(Avx512F.Min(Avx512F.PermuteVar16x32(clamp, p), a), Avx512F.PermuteVar16x32(slope, p), Avx512F.PermuteVar16x32(offset, p));

        /// <summary>g of one vector, all steps in turn (the 8-vector loop takes each step for its eight vectors together).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Line(Vector512<float> y)
        {
            var a = Magnitude(y);
            return Line(a, Piece(a, FirstPiece(y, a)));
        }

        /// <summary>|g − round(g)| as float bits.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<uint> Error(Vector512<float> g) => Avx512DQ.Reduce(g, 0).AsUInt32() & magnitude;
    }

    /// <summary>The codes of <paramref name="vectors"/> (1 … 8) lane vectors by the thresholds' search (see <see cref="QuantizeNearestAvx512"/>).</summary>
    private static void NearestGroup(float* values, int vectors, Vector512<float> s, CodeSearch search, byte* codes)
    {
        var first = Vector512.Load(values) / s;
        Vector512<float> Next(int k) => k < vectors ? Vector512.Load(values + 16 * k) / s : first;
        var (a, b, c, d) = (new Search(first), new Search(Next(1)), new Search(Next(2)), new Search(Next(3)));
        var (e, f, g, h) = (new Search(Next(4)), new Search(Next(5)), new Search(Next(6)), new Search(Next(7)));
        FindNearest(search, ref a, ref b, ref c, ref d, ref e, ref f, ref g, ref h);
        StoreCodes(a.I, codes);
        if (vectors > 1) StoreCodes(b.I, codes + 16);
        if (vectors > 2) StoreCodes(c.I, codes + 32);
        if (vectors > 3) StoreCodes(d.I, codes + 48);
        if (vectors > 4) StoreCodes(e.I, codes + 64);
        if (vectors > 5) StoreCodes(f.I, codes + 80);
        if (vectors > 6) StoreCodes(g.I, codes + 96);
        if (vectors > 7) StoreCodes(h.I, codes + 112);
    }

    /// <summary>
    /// The thresholds' search of eight lane vectors (see <see cref="QuantizeNearestAvx512"/>): the rounded codes in I. The
    /// levels build the index with its bits reversed (<see cref="CodeSearch.NearestProbes"/>): level k sets bit k − 1 where
    /// y reaches the probe, one masked OR.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FindNearest(CodeSearch search, ref Search a, ref Search b, ref Search c, ref Search d,
        ref Search e, ref Search f, ref Search g, ref Search h)
    {
        var probes = search.NearestProbes;
        var levels = Math.Min(CodeSearch.BoundLevels, search.Bits);
        var first = Vector512.Create(probes[0]);
        First(ref a, first); First(ref b, first); First(ref c, first); First(ref d, first);
        First(ref e, first); First(ref f, first); First(ref g, first); First(ref h, first);
        for (var k = 2; k <= levels; k++)
        {
            var p = Vector512.Load(probes + 16 * (k - 1));
            var bit = Vector512.Create(1 << (k - 1));
            Set(ref a, p, bit); Set(ref b, p, bit); Set(ref c, p, bit); Set(ref d, p, bit);
            Set(ref e, p, bit); Set(ref f, p, bit); Set(ref g, p, bit); Set(ref h, p, bit);
        }
        CountTail(search, levels, ref a, ref b, ref c, ref d);
        CountTail(search, levels, ref e, ref f, ref g, ref h);
    }

    /// <summary>Level 1 of the reversed search: r = 1 where y reaches the probe, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void First(ref Search s, Vector512<float> probe) =>
        s.I = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(s.Y, probe).AsInt32(), Vector512<int>.One, Vector512<int>.Zero);

    /// <summary>A later level of the reversed search: r |= bit where y reaches the level's probe for r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Set(ref Search s, Vector512<float> probes, Vector512<int> bit) =>
        s.I = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(s.Y, Avx512F.PermuteVar16x32(probes, s.I)).AsInt32(), s.I | bit, s.I);

    /// <summary>
    /// After the first <paramref name="levels"/> levels, the code: the base of the reversed index (<see cref="CodeSearch.NearestBase"/>)
    /// plus how many of the next thresholds y passes (<see cref="CodeSearch.NearestTails"/>), counted by blends: the tails
    /// ascend, so the last k whose threshold y reaches is the count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CountTail(CodeSearch search, int levels, ref Search a, ref Search b, ref Search c, ref Search d)
    {
        var (ca, cb, cc, cd) = (Vector512<int>.Zero, Vector512<int>.Zero, Vector512<int>.Zero, Vector512<int>.Zero);
        for (var k = 1; k < 1 << (search.Bits - levels); k++)
        {
            var table = search.NearestTails + 32 * (k - 1);
            var count = Vector512.Create(k);
            ca = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(a.Y, Lookup32(table, a.I)).AsInt32(), count, ca);
            cb = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(b.Y, Lookup32(table, b.I)).AsInt32(), count, cb);
            cc = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(c.Y, Lookup32(table, c.I)).AsInt32(), count, cc);
            cd = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(d.Y, Lookup32(table, d.I)).AsInt32(), count, cd);
        }
        var (low, high) = (Vector512.Load(search.NearestBase), Vector512.Load(search.NearestBase + 16));
        a.I = Avx512F.PermuteVar16x32x2(low, a.I, high) + ca; b.I = Avx512F.PermuteVar16x32x2(low, b.I, high) + cb;
        c.I = Avx512F.PermuteVar16x32x2(low, c.I, high) + cc; d.I = Avx512F.PermuteVar16x32x2(low, d.I, high) + cd;
    }

    /// <summary>16 codes (0 … 255) as 16 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreCodes(Vector512<int> c, byte* codes) => Avx512F.ConvertToVector128Byte(c).Store(codes);

    /// <summary>One lane vector's search: y, the code bits found so far (i), and map[c], map[c + 1] once known.</summary>
    private struct Search(Vector512<float> y)
    {
        public readonly Vector512<float> Y = y;
        public Vector512<int> I;
        public Vector512<float> Low, High;
    }

    /// <summary>The search of four lane vectors, interleaved level by level (see <see cref="QuantizeStochasticAvx512"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Find(CodeSearch search, ref Search a, ref Search b, ref Search c, ref Search d)
    {
        var probes = search.Probes;
        var bits = search.Bits;
        // Levels 1 … min(BoundLevels, bits): only the index. Level 1's single probe is broadcast; i starts at 0.
        var first = Vector512.Create(probes[0]);
        Narrow(ref a, first); Narrow(ref b, first); Narrow(ref c, first); Narrow(ref d, first);
        for (var k = 2; k <= Math.Min(CodeSearch.BoundLevels, bits); k++)
        {
            var p = probes + CodeSearch.ProbeOffset(k);
            Narrow(ref a, Lookup16(p, a.I)); Narrow(ref b, Lookup16(p, b.I)); Narrow(ref c, Lookup16(p, c.I)); Narrow(ref d, Lookup16(p, d.I));
        }
        // The last probe passed and failed so far, by the index (a 32-entry lookup each instead of two selects a level).
        var low = search.Bounds;
        var high = search.Bounds + 32;
        a.Low = Lookup32(low, a.I); b.Low = Lookup32(low, b.I); c.Low = Lookup32(low, c.I); d.Low = Lookup32(low, d.I);
        a.High = Lookup32(high, a.I); b.High = Lookup32(high, b.I); c.High = Lookup32(high, c.I); d.High = Lookup32(high, d.I);
        if (bits == 8)
        {
            float* p6 = probes + CodeSearch.ProbeOffset(6), p7 = probes + CodeSearch.ProbeOffset(7), p8 = probes + CodeSearch.ProbeOffset(8);
            Level(ref a, Lookup32(p6, a.I)); Level(ref b, Lookup32(p6, b.I)); Level(ref c, Lookup32(p6, c.I)); Level(ref d, Lookup32(p6, d.I));
            Level(ref a, Lookup64(p7, a.I)); Level(ref b, Lookup64(p7, b.I)); Level(ref c, Lookup64(p7, c.I)); Level(ref d, Lookup64(p7, d.I));
            Level(ref a, Lookup128(p8, a.I)); Level(ref b, Lookup128(p8, b.I)); Level(ref c, Lookup128(p8, c.I)); Level(ref d, Lookup128(p8, d.I));
        }
    }

    /// <summary>One level of the search, the index only: i ← 2i + (y ≥ probe) (the + 1 a masked add on the compare's mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Narrow(ref Search s, Vector512<float> probe)
    {
        var doubled = s.I + s.I;
        s.I = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(s.Y, probe).AsInt32(), doubled + Vector512<int>.One, doubled);
    }

    /// <summary>One level of the search, keeping the last probe passed (Low) and failed (High).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Level(ref Search s, Vector512<float> probe)
    {
        var ge = Vector512.GreaterThanOrEqual(s.Y, probe);
        // (Selects on the mask as a vector: the JIT keeps a mask used three times as a vector anyway.)
        s.Low = Vector512.ConditionalSelect(ge, probe, s.Low);
        s.High = Vector512.ConditionalSelect(ge, s.High, probe);
        var doubled = s.I + s.I;
        s.I = Vector512.ConditionalSelect(ge.AsInt32(), doubled + Vector512<int>.One, doubled);
    }

    /// <summary>
    /// The stochastic rounding of a searched vector, stored as 16 codes: up where y − map[c] &gt; u·(map[c + 1] − map[c]),
    /// u from the flat indices <paramref name="index"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Round(in Search s, Vector512<uint> key, Vector512<uint> index, Vector512<uint> stride, Vector512<float> ulp24,
        Vector512<int> top, byte* codes)
    {
        var u = Vector512.ConvertToSingle((RoundingNoise.Mix(key + index * stride) >> 8).AsInt32()) * ulp24;
        var up = Vector512.GreaterThan(s.Y - s.Low, u * (s.High - s.Low));
        Store(s.I, up, top, codes);
    }

    /// <summary>16 codes as 16 bytes: c + 1 where the rounding goes up, clamped at the top code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<int> c, Vector512<float> up, Vector512<int> top, byte* codes) =>
        Avx512F.ConvertToVector128Byte(Vector512.Min(c - up.AsInt32(), top)).Store(codes);

    /// <summary>table[i] for i &lt; 16 (one permute).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup16(float* table, Vector512<int> i) => Avx512F.PermuteVar16x32(Vector512.Load(table), i);

    /// <summary>table[i] for i &lt; 32 (one two-source permute, on i's low 5 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup32(float* table, Vector512<int> i) =>
        Avx512F.PermuteVar16x32x2(Vector512.Load(table), i, Vector512.Load(table + 16));

    /// <summary>table[i] for i &lt; 64: the two halves' lookups, chosen by bit 5.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup64(float* table, Vector512<int> i) => Choose(i, 32, Lookup32(table + 32, i), Lookup32(table, i));

    /// <summary>table[i] for i &lt; 128.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup128(float* table, Vector512<int> i) => Choose(i, 64, Lookup64(table + 64, i), Lookup64(table, i));

    /// <summary>table[i] for i &lt; 256.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup256(float* table, Vector512<int> i) => Choose(i, 128, Lookup128(table + 128, i), Lookup128(table, i));

    /// <summary><paramref name="set"/> where i has <paramref name="bit"/>, else <paramref name="clear"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Choose(Vector512<int> i, int bit, Vector512<float> set, Vector512<float> clear) =>
        Avx512F.BlendVariable(set, clear, Vector512.Equals(i & Vector512.Create(bit), Vector512<int>.Zero).AsSingle());

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
