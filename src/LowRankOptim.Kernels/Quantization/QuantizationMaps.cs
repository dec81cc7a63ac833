namespace LowRankOptim.Kernels;

/// <summary>
/// The code books of <see cref="QuantizationMap"/>, computed as torchao computes them (its <c>create_dynamic_map</c>,
/// taken from bitsandbytes without the zero padding, and <c>linspace(0, 1, 17)[1:]</c>): float32 <c>linspace</c>
/// boundaries, float32 midpoints times a power of ten (in double, rounded once to float32), sorted.
/// The values are checked against the maps torchao's own function produced (tests/fixtures/quantization/maps.json), to
/// the ulp or two by which torch's vectorized linspace differs, and pinned exactly (they are part of the checkpoint format).
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
        // torch: (b[:-1] + b[1:]) / 2.0 in float32; the product with the Python float is taken in double and rounded once.
        var means = boundaries.Zip(boundaries.Skip(1), (a, b) => (a + b) / 2.0f).ToArray();
        data.AddRange(means.Select(m => (float)(scale * m)));
        if (signed) data.AddRange(means.Select(m => (float)(-scale * m)));
    }

    /// <summary>
    /// float32 linspace by the scalar path of ATen's CPU kernel: step = (end − start) / (steps − 1) in float32, start + step·i
    /// below the halfway index and end − step·(steps − 1 − i) from it. torch's own result also depends on the vector width
    /// its CPU dispatch picks (its vectorized path rounds some boundaries an ulp or two differently), so the maps are computed
    /// here, the same on every machine: they are part of the checkpoint format.
    /// </summary>
    private static float[] Linspace(double start, double end, int steps)
    {
        var (first, last) = ((float)start, (float)end);
        var step = (last - first) / (steps - 1);
        var values = new float[steps];
        for (var i = 0; i < steps; i++)
            values[i] = i < steps / 2 ? first + step * i : last - step * (steps - 1 - i);
        return values;
    }
}
