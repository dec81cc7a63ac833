using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// The code books of <see cref="QuantizationMap"/>, computed as torchao computes them (its <c>create_dynamic_map</c>,
/// taken from bitsandbytes without the zero padding, and <c>linspace(0, 1, 17)[1:]</c>): float32 <c>linspace</c>
/// boundaries, float32 midpoints scaled by a power of ten in float32, sorted.
/// The values are checked against the maps produced by torchao's own function (tests/fixtures/quantization-maps.json).
/// </summary>
public static class QuantizationMaps
{
    private static readonly float[] Signed8 = Dynamic(signed: true, maxExponentBits: 7, totalBits: 8);
    private static readonly float[] Unsigned8 = Dynamic(signed: false, maxExponentBits: 7, totalBits: 8);
    private static readonly float[] Signed4 = Dynamic(signed: true, maxExponentBits: 3, totalBits: 4);
    private static readonly float[] Unsigned4 = [.. Linspace(0, 1, 17).Skip(1)];

    /// <summary>The values of <paramref name="map"/>, ascending (a shared array: do not modify).</summary>
    /// <param name="map">The map.</param>
    public static float[] Of(QuantizationMap map) => map switch
    {
        QuantizationMap.DynamicSigned8 => Signed8,
        QuantizationMap.DynamicUnsigned8 => Unsigned8,
        QuantizationMap.DynamicSigned4 => Signed4,
        QuantizationMap.LinearUnsigned4 => Unsigned4,
        _ => throw new ArgumentOutOfRangeException(nameof(map), map, "not a quantization map."),
    };

    /// <summary>
    /// The dynamic map: for each exponent i, the midpoints of a float32 linspace(0.1, 1, k) scaled by 10^(i − e + 1),
    /// with their negatives when signed; then the extra linear items, 0 and 1 (bitsandbytes' construction).
    /// </summary>
    private static float[] Dynamic(bool signed, int maxExponentBits, int totalBits)
    {
        var data = new List<float>();
        var nonSignBits = totalBits - 1;
        var additionalItems = (1 << (nonSignBits - maxExponentBits)) - 1;
        for (var i = 0; i < maxExponentBits; i++)
        {
            var fractionItems = signed ? (1 << (i + nonSignBits - maxExponentBits)) + 1 : (1 << (i + nonSignBits - maxExponentBits + 1)) + 1;
            Add(data, fractionItems, Math.Pow(10, -(maxExponentBits - 1) + i), signed);
        }
        if (additionalItems > 0) Add(data, additionalItems + 1, Math.Pow(10, -(maxExponentBits - 1) + maxExponentBits - 1), signed);
        data.Add(0);
        data.Add(1);
        if (data.Count != 1 << totalBits) throw new InvalidOperationException($"the dynamic map has {data.Count} values, not {1 << totalBits}.");
        return [.. data.Order()];
    }

    /// <summary>Adds scale·midpoints of a float32 linspace(0.1, 1, count) (and their negatives).</summary>
    private static void Add(List<float> data, int count, double scale, bool signed)
    {
        var boundaries = Linspace(0.1, 1, count);
        // torch: (b[:-1] + b[1:]) / 2.0 and scale * means are float32 ops (a Python scalar takes the tensor's dtype).
        var means = boundaries.Zip(boundaries.Skip(1), (a, b) => (a + b) / 2.0f).ToArray();
        var (up, down) = ((float)scale, (float)-scale);
        data.AddRange(means.Select(m => up * m));
        if (signed) data.AddRange(means.Select(m => down * m));
    }

    /// <summary>torch.linspace in float32, from libtorch itself (its rounding is the one torchao's maps were built with).</summary>
    private static float[] Linspace(double start, double end, int steps)
    {
        using var values = torch.linspace(start, end, steps, dtype: ScalarType.Float32);
        return values.data<float>().ToArray();
    }
}
