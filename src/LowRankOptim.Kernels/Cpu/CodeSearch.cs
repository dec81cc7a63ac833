using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace LowRankOptim.Kernels;

/// <summary>
/// A quick way to the code <see cref="BlockQuantizer"/>'s binary search finds, the largest c with map[c] ≤ y (0 when
/// there is none): a start code per 16-bit prefix of y's float32 bits (sign, exponent and 7 mantissa bits), the largest c
/// with map[c] ≤ the smallest float of that prefix, then at most <see cref="Refinements"/> steps up while map[c + 1] ≤ y.
/// The result is the binary search's for every y (the comparisons are the same float comparisons); NaN is left to the
/// caller (the search gives 0). Built once per map, in native memory, so the vector loops can gather from it.
/// <para>
/// For the AVX-512 path, <see cref="Probes"/> holds the binary search's probes level by level: level k (1 … bits) probes
/// map[i·2^(bits−k+1) + 2^(bits−k)] for the 2^(k−1) prefixes i of the code found so far, so that each level is one
/// in-register lookup by i (one permute up to 16 entries, a two-source permute for 32, a small tree of them above).
/// </para>
/// <para>
/// For nearest rounding, the code with its rounding is one search too: the rounded code of y is the number of
/// <see cref="Thresholds"/> ≤ y, where threshold q is the smallest float whose rounded code is at least q (the rounded code
/// never decreases as y grows: the search's code does not, and for one code the test y − map[c] ≥ gap·0.5 is a float
/// subtraction, which is monotone). <see cref="NearestProbes"/> and <see cref="NearestTails"/> hold that search's tables.
/// </para>
/// </summary>
internal sealed unsafe class CodeSearch
{
    private static readonly ConcurrentDictionary<QuantizationMap, CodeSearch> Cache = new();

    /// <summary>The start code of each 16-bit prefix (65536 bytes, then 3 bytes of padding for 32-bit gathers).</summary>
    public readonly byte* Start;

    /// <summary>The map's values, then +∞ (so that the step up from the top code never succeeds).</summary>
    public readonly float* Values;

    /// <summary>The top code, 2^bits − 1.</summary>
    public readonly int Top;

    /// <summary>How many steps up may follow the start code: the most map values inside one prefix's range.</summary>
    public readonly int Refinements;

    /// <summary>The map's width: 2^Bits codes.</summary>
    public readonly int Bits;

    /// <summary>
    /// The binary search's probes, level after level (see the class remarks): level k's 2^(k−1) values start at
    /// <see cref="ProbeOffset"/>(k), each level padded to at least 16 floats (64-byte aligned) so that it loads as whole registers.
    /// </summary>
    public readonly float* Probes;

    /// <summary>
    /// The map's float32 bits as 4 byte planes of 256 bytes (plane b holds byte b, little-endian, of every map[c]; zeros
    /// past the map), for the VBMI decode: 64 codes look up each plane with byte permutes and the planes interleave to floats.
    /// </summary>
    public readonly byte* Planes;

    /// <summary>
    /// How many search levels the AVX-512 path takes before it looks up the last probe passed and failed by the index
    /// found (<see cref="Bounds"/>): min(bits, 5), so that each is one 32-entry lookup.
    /// </summary>
    public const int BoundLevels = 5;

    /// <summary>
    /// After the first L = min(<see cref="BoundLevels"/>, bits) levels with index i: the last probe passed, map[i·2^(bits−L)]
    /// (map[0] if none passed, i = 0), at [i]; the last probe failed, map[(i + 1)·2^(bits−L)] clamped at map[top] (none
    /// failed: i is the largest), at [32 + i]. (4-bit maps: L = 4, so these are map[c] and map[min(c + 1, top)].)
    /// </summary>
    public readonly float* Bounds;

    /// <summary>
    /// The nearest-rounding thresholds: [q], q = 1 … top, is the smallest float y whose code after nearest rounding (the
    /// search's code c, moved up to min(c + 1, top) when y − map[c] ≥ (map[c + 1] − map[c])·0.5) is at least q; [0] is −∞.
    /// </summary>
    public readonly float[] Thresholds;

    /// <summary>Nearest rounding's code as lines (<see cref="CodeLines"/>), for the AVX-512 8-bit path; null for 4-bit maps.</summary>
    public readonly CodeLines? Lines;

    /// <summary><see cref="Thresholds"/>, then +∞: what <see cref="Values"/> is to the map, for the AVX2 path's nearest rounding.</summary>
    public readonly float* NearestValues;

    /// <summary><see cref="Start"/> for <see cref="Thresholds"/>: the rounded code of each 16-bit prefix's smallest float.</summary>
    public readonly byte* NearestStart;

    /// <summary>How many steps up may follow <see cref="NearestStart"/>: the most thresholds inside one prefix's range.</summary>
    public readonly int NearestRefinements;

    /// <summary>
    /// The first L = min(<see cref="BoundLevels"/>, bits) levels of the binary search over <see cref="Thresholds"/>, with the
    /// index's bits reversed: after level k the index r holds level j's outcome in bit j − 1, so that a level sets one bit
    /// (a masked OR) instead of doubling the index and adding. Level k's 16 floats start at 16·(k − 1); entry r is the probe
    /// of the binary search's index i = r's k − 1 bits reversed (<see cref="Probes"/>' level k entry i).
    /// </summary>
    public readonly float* NearestProbes;

    /// <summary>
    /// After the first L levels with reversed index r (i = r reversed), the rounded code is i·2^(bits−L) plus how many of the
    /// next 2^(bits−L) − 1 thresholds y passes: threshold i·2^(bits−L) + k is at [32·(k − 1) + r] (8-bit: 7 tables of 32,
    /// each one two-source permute by r, all independent of each other).
    /// </summary>
    public readonly float* NearestTails;

    /// <summary>i·2^(bits−L) at [r], for the 32 reversed indices r (i = r's L bits reversed): the code the tail count adds to.</summary>
    public readonly int* NearestBase;

    /// <summary>Where level <paramref name="level"/> (1 … <see cref="Bits"/>) starts in <see cref="Probes"/>.</summary>
    public static int ProbeOffset(int level) => level <= 5 ? 16 * (level - 1) : 48 + (1 << (level - 1));

    private CodeSearch(float[] map)
    {
        Top = map.Length - 1;
        Values = WithInfinity(map);
        Start = StartTable(map, out Refinements);
        Bits = int.Log2(map.Length);
        Planes = AlignedZeroed<byte>(4 * 256);
        for (var c = 0; c < map.Length; c++)
            for (var b = 0; b < 4; b++)
                Planes[256 * b + c] = (byte)(BitConverter.SingleToUInt32Bits(map[c]) >> (8 * b));
        Probes = LevelProbes(map, Bits);
        var thresholds = Thresholds = NearestThresholds(map, Bits);
        Lines = Bits == 8 ? CodeLines.TryBuild(thresholds) : null;
        NearestValues = WithInfinity(thresholds);
        NearestStart = StartTable(thresholds, out NearestRefinements);
        var levels = Math.Min(BoundLevels, Bits);
        var tail = 1 << (Bits - levels);
        NearestProbes = AlignedZeroed<float>(16 * levels);
        for (var k = 1; k <= levels; k++)
            for (var r = 0; r < 1 << (k - 1); r++)
                NearestProbes[16 * (k - 1) + r] = thresholds[(Reverse(r, k - 1) << (Bits - k + 1)) + (1 << (Bits - k))];
        NearestTails = AlignedZeroed<float>(32 * Math.Max(1, tail - 1));
        for (var k = 1; k < tail; k++)
            for (var r = 0; r < 1 << levels; r++)
                NearestTails[32 * (k - 1) + r] = thresholds[Reverse(r, levels) * tail + k];
        NearestBase = AlignedZeroed<int>(32);
        for (var r = 0; r < 1 << levels; r++) NearestBase[r] = Reverse(r, levels) * tail;
        Bounds = AlignedZeroed<float>(64);
        for (var i = 0; i < 1 << levels; i++)
        {
            Bounds[i] = map[i << (Bits - levels)];
            Bounds[32 + i] = map[Math.Min((i + 1) << (Bits - levels), Top)];
        }
    }

    /// <summary><paramref name="count"/> zeroed elements in native memory, 64-byte aligned (whole registers load from them).</summary>
    internal static T* AlignedZeroed<T>(int count) where T : unmanaged
    {
        var bytes = (nuint)(count * sizeof(T));
        var memory = NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(memory, bytes);
        return (T*)memory;
    }

    /// <summary>The low <paramref name="bits"/> bits of <paramref name="r"/> in reverse order.</summary>
    private static int Reverse(int r, int bits)
    {
        var reversed = 0;
        for (var b = 0; b < bits; b++) reversed |= ((r >> b) & 1) << (bits - 1 - b);
        return reversed;
    }

    /// <summary><paramref name="sorted"/> in native memory, then +∞ (so that a step up from the last entry never succeeds).</summary>
    private static float* WithInfinity(float[] sorted)
    {
        var values = (float*)NativeMemory.Alloc((nuint)(sorted.Length + 1), sizeof(float));
        for (var c = 0; c < sorted.Length; c++) values[c] = sorted[c];
        values[sorted.Length] = float.PositiveInfinity;
        return values;
    }

    /// <summary>
    /// The largest c with sorted[c] ≤ the smallest float of each 16-bit prefix (0 where there is none, and for prefixes of
    /// infinities and NaNs, which y never is), and in <paramref name="refinements"/> the most entries inside one prefix's range.
    /// </summary>
    private static byte* StartTable(float[] sorted, out int refinements)
    {
        var start = (byte*)NativeMemory.AllocZeroed(65536 + 3);
        refinements = 0;
        for (var prefix = 0; prefix < 65536; prefix++)
        {
            // The prefix's floats run from (bits << 16) to (bits << 16 | 0xFFFF): ascending when positive, descending when negative.
            var a = BitConverter.UInt32BitsToSingle((uint)prefix << 16);
            var b = BitConverter.UInt32BitsToSingle(((uint)prefix << 16) | 0xFFFF);
            var (low, high) = prefix < 0x8000 ? (a, b) : (b, a);
            if (!float.IsFinite(low) || !float.IsFinite(high)) continue; // |y| ≤ 1 or NaN: such y never occur
            var atLow = CountAtMost(sorted, low);
            start[prefix] = (byte)Math.Max(atLow - 1, 0);
            refinements = Math.Max(refinements, CountAtMost(sorted, high) - atLow);
        }
        return start;
    }

    /// <summary>How many entries of the ascending <paramref name="sorted"/> are ≤ <paramref name="x"/> (a binary search).</summary>
    internal static int CountAtMost(float[] sorted, float x)
    {
        int low = 0, high = sorted.Length;
        while (low < high)
        {
            var middle = (low + high) / 2;
            if (sorted[middle] <= x) low = middle + 1;
            else high = middle;
        }
        return low;
    }

    /// <summary>Level k's probes of a binary search over <paramref name="table"/> (see <see cref="Probes"/>), 64-byte aligned.</summary>
    private static float* LevelProbes(float[] table, int bits)
    {
        var probes = AlignedZeroed<float>(ProbeOffset(bits + 1));
        for (var k = 1; k <= bits; k++)
        {
            var level = probes + ProbeOffset(k);
            var count = 1 << (k - 1);
            for (var i = 0; i < Math.Max(16, count); i++)
                level[i] = i < count ? table[(i << (bits - k + 1)) + (1 << (bits - k))] : 0;
        }
        return probes;
    }

    /// <summary>
    /// The thresholds of <see cref="Thresholds"/>, each found by bisection over the floats in their order (the rounded code
    /// is monotone in y, ±0 alike), with <see cref="NearestCode"/> as the test.
    /// </summary>
    private static float[] NearestThresholds(float[] map, int bits)
    {
        var thresholds = new float[map.Length];
        thresholds[0] = float.NegativeInfinity;
        for (var q = 1; q < map.Length; q++)
        {
            // Invariant: code(low) < q ≤ code(high), on the order keys of the floats (−∞ has code 0, +∞ the top code).
            uint low = OrderKey(float.NegativeInfinity), high = OrderKey(float.PositiveInfinity);
            while (high - low > 1)
            {
                var middle = low + (high - low) / 2;
                if (NearestCode(map, bits, FromOrderKey(middle)) >= q) high = middle;
                else low = middle;
            }
            thresholds[q] = FromOrderKey(high);
        }
        return thresholds;
    }

    /// <summary>
    /// The code <see cref="BlockQuantizer.Quantize"/> gives y with nearest rounding, by its own steps: the branchless binary
    /// search (c += step where y ≥ map[c + step]), then up to min(c + 1, top) when y − map[c] ≥ (map[c + 1] − map[c])·0.5.
    /// </summary>
    private static int NearestCode(float[] map, int bits, float y)
    {
        var c = 0;
        for (var step = 1 << (bits - 1); step >= 1; step >>= 1)
            if (y >= map[c + step]) c += step;
        var up = Math.Min(c + 1, map.Length - 1);
        var low = map[c];
        return y - low >= (map[up] - low) * 0.5f ? up : c;
    }

    /// <summary>A float's place in the order of floats (−0 just below +0) as an unsigned integer.</summary>
    private static uint OrderKey(float x)
    {
        var bits = BitConverter.SingleToUInt32Bits(x);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    private static float FromOrderKey(uint key) =>
        BitConverter.UInt32BitsToSingle((key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key);

    /// <summary>The search of <paramref name="map"/> (built on first use, kept for the process).</summary>
    public static CodeSearch Of(QuantizationMap map) => Cache.GetOrAdd(map, m => new CodeSearch(QuantizationMaps.Of(m)));

    /// <summary>The code of <paramref name="y"/> after nearest rounding: the number of <see cref="Thresholds"/> ≤ y (0 for NaN).</summary>
    public int FindNearest(float y) => Walk(y, NearestStart, NearestValues, NearestRefinements);

    /// <summary>The binary search's code for <paramref name="y"/> (0 for NaN, as the search's comparisons all fail).</summary>
    public int Find(float y) => Walk(y, Start, Values, Refinements);

    /// <summary>The largest c with <paramref name="sorted"/>[c] ≤ y: the start code of y's 16-bit prefix, then steps up.</summary>
    private static int Walk(float y, byte* start, float* sorted, int refinements)
    {
        if (float.IsNaN(y)) return 0;
        int c = start[BitConverter.SingleToUInt32Bits(y) >> 16];
        for (var k = 0; k < refinements; k++)
            if (y >= sorted[c + 1]) c++;
        return c;
    }
}
