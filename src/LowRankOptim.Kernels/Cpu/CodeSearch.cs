using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace LowRankOptim.Kernels;

/// <summary>
/// A quick way to the code <see cref="BlockQuantizer"/>'s binary search finds, the largest c with map[c] ≤ y (0 when
/// there is none): a start code per 16-bit prefix of y's float32 bits (sign, exponent and 7 mantissa bits), the largest c
/// with map[c] ≤ the smallest float of that prefix, then at most <see cref="Refinements"/> steps up while map[c + 1] ≤ y.
/// The result is the binary search's for every y (the comparisons are the same float comparisons); NaN is left to the
/// caller (the search gives 0). Built once per map, in native memory, so the vector loops can gather from it.
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

    private CodeSearch(float[] map)
    {
        Top = map.Length - 1;
        Values = (float*)NativeMemory.Alloc((nuint)(map.Length + 1), sizeof(float));
        for (var c = 0; c < map.Length; c++) Values[c] = map[c];
        Values[map.Length] = float.PositiveInfinity;
        Start = (byte*)NativeMemory.AllocZeroed(65536 + 3);
        var refinements = 0;
        for (var prefix = 0; prefix < 65536; prefix++)
        {
            // The prefix's floats run from (bits << 16) to (bits << 16 | 0xFFFF): ascending when positive, descending when negative.
            var a = BitConverter.UInt32BitsToSingle((uint)prefix << 16);
            var b = BitConverter.UInt32BitsToSingle(((uint)prefix << 16) | 0xFFFF);
            var (low, high) = prefix < 0x8000 ? (a, b) : (b, a);
            if (!float.IsFinite(low) || !float.IsFinite(high)) continue; // |y| ≤ 1 or NaN: such y never occur
            var start = 0;
            var inside = 0;
            for (var c = 0; c < map.Length; c++)
            {
                if (map[c] <= low) start = c;
                else if (map[c] <= high) inside++;
            }
            Start[prefix] = (byte)start;
            refinements = Math.Max(refinements, inside);
        }
        Refinements = refinements;
    }

    /// <summary>The search of <paramref name="map"/> (built on first use, kept for the process).</summary>
    public static CodeSearch Of(QuantizationMap map) => Cache.GetOrAdd(map, m => new CodeSearch(QuantizationMaps.Of(m)));

    /// <summary>The binary search's code for <paramref name="y"/> (0 for NaN, as the search's comparisons all fail).</summary>
    public int Find(float y)
    {
        if (float.IsNaN(y)) return 0;
        int c = Start[BitConverter.SingleToUInt32Bits(y) >> 16];
        for (var k = 0; k < Refinements; k++)
            if (y >= Values[c + 1]) c++;
        return c;
    }
}
