namespace LowRankOptim;

/// <summary>
/// SMMF's square-matricization: a tensor of N elements, whatever its rank, is viewed in row-major order
/// as an n̂×m̂ matrix with m̂ the largest divisor of N not above ⌊√N⌋ and n̂ = N/m̂ (so n̂ ≥ m̂ and the
/// two are as close as the factor pairs of N allow). Everything is integer arithmetic.
/// </summary>
internal static class SquareMatricization
{
    /// <summary>⌊√n⌋ for n ≥ 0, exact for every 64-bit value (a floating-point estimate, then corrected).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> is negative.</exception>
    public static long IntegerSqrt(long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var r = (long)Math.Sqrt(n);
        // The double estimate can be off by one in either direction for large n; Int128 avoids overflow.
        while ((Int128)r * r > n) r--;
        while ((Int128)(r + 1) * (r + 1) <= n) r++;
        return r;
    }

    /// <summary>
    /// (n̂, m̂) for a tensor of <paramref name="count"/> elements: 1×1 for a scalar, N×1 for a prime N,
    /// √N×√N for a perfect square. An empty tensor is 0×1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public static (long Rows, long Cols) Of(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0) return (0, 1);
        for (var d = IntegerSqrt(count); d > 1; d--)
            if (count % d == 0) return (count / d, d);
        return (count, 1);
    }

    /// <summary>The number of elements of a tensor of <paramref name="shape"/> (1 for a 0-dim scalar).</summary>
    public static long Count(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }
}
