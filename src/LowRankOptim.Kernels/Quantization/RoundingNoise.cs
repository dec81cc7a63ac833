using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// Counter-based random numbers for stochastic rounding: element i of a store with key k draws
/// <c>Mix(k + i·0x9E3779B9)</c> (32 bits, i taken modulo 2³²), where <c>Mix</c> is a 32-bit integer hash (xor-shift and
/// multiply, Wellons' "lowbias32" constants). A store's key mixes the seed, the state entry's stream and the step
/// (<see cref="Key"/>), so nothing needs saving: a resumed run draws the same numbers as an uninterrupted one, on any
/// backend. A code rounds up when residual &gt; u·gap with u = (bits &gt;&gt; 8)·2⁻²⁴; a bfloat16 rounds away from zero when
/// (bits &gt;&gt; 16) &lt; the 16 low bits of the float32 (torchao's <c>_fp32_to_bf16_sr</c>).
/// </summary>
public static class RoundingNoise
{
    /// <summary>The golden-ratio increment between consecutive elements.</summary>
    public const uint ElementStride = 0x9E3779B9u;
    internal const uint Multiplier1 = 0x21F0AAADu;
    internal const uint Multiplier2 = 0xD35A2D97u;

    /// <summary>The 32-bit hash.</summary>
    /// <param name="x">The input.</param>
    public static uint Mix(uint x)
    {
        x ^= x >> 16;
        x *= Multiplier1;
        x ^= x >> 15;
        x *= Multiplier2;
        x ^= x >> 15;
        return x;
    }

    /// <summary><see cref="Mix(uint)"/> on 8 lanes (the fused CPU kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<uint> Mix(Vector256<uint> x)
    {
        x ^= x >> 16;
        x *= Vector256.Create(Multiplier1);
        x ^= x >> 15;
        x *= Vector256.Create(Multiplier2);
        x ^= x >> 15;
        return x;
    }

    /// <summary><see cref="Mix(uint)"/> on 16 lanes (the fused CPU kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<uint> Mix(Vector512<uint> x)
    {
        x ^= x >> 16;
        x *= Vector512.Create(Multiplier1);
        x ^= x >> 15;
        x *= Vector512.Create(Multiplier2);
        x ^= x >> 15;
        return x;
    }

    /// <summary>The key of one store: the seed, the state entry's stream and the step, mixed word by word.</summary>
    /// <param name="seed">The user's seed.</param>
    /// <param name="stream">The state entry's stream (parameter, component and entry).</param>
    /// <param name="step">The step that stores the values.</param>
    public static uint Key(long seed, ulong stream, long step)
    {
        var h = Mix((uint)seed ^ 0x6A09E667u);
        foreach (var word in new[] { (uint)((ulong)seed >> 32), (uint)stream, (uint)(stream >> 32), (uint)step, (uint)((ulong)step >> 32) })
            h = Mix(h ^ word);
        return h;
    }

    /// <summary>The 32 random bits of element <paramref name="index"/> of the store keyed <paramref name="key"/>.</summary>
    /// <param name="key">The store's key.</param>
    /// <param name="index">The element's flat index.</param>
    public static uint Bits(uint key, long index) => Mix(unchecked(key + (uint)index * ElementStride));

    /// <summary>The uniform number in [0, 1) that decides a code: (bits &gt;&gt; 8)·2⁻²⁴, exact in float32.</summary>
    /// <param name="bits">The element's random bits.</param>
    public static float Uniform(uint bits) => (bits >> 8) * (1.0f / 16777216.0f);

    /// <summary>
    /// The random bits of elements [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) as an
    /// int64 tensor of uint32 values (TorchSharp ops).
    /// </summary>
    /// <param name="key">The store's key.</param>
    /// <param name="count">Elements.</param>
    /// <param name="device">Where the tensor goes.</param>
    /// <param name="first">The flat index of the first element (a part of a larger store draws its own elements' numbers).</param>
    public static Tensor BitsTensor(uint key, long count, Device device, long first = 0)
    {
        using var scope = NewDisposeScope();
        using var k = ((long)key).ToScalar();
        using var start = first.ToScalar();
        using var end = (first + count).ToScalar();
        var mask = Mask(0xFFFFFFFFL, device);
        var x = Mul32(arange(start, end, ScalarType.Int64, device).bitwise_and_(mask), ElementStride).add_(k).bitwise_and_(mask);
        x = XorShift(x, 16);
        x = Mul32(x, Multiplier1);
        x = XorShift(x, 15);
        x = Mul32(x, Multiplier2);
        x = XorShift(x, 15);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>x ^ (x &gt;&gt; s) for non-negative int64 values.</summary>
    private static Tensor XorShift(Tensor x, int s)
    {
        using var divisor = (1L << s).ToScalar();
        using var shifted = x.div(divisor, rounding_mode: RoundingMode.floor);
        return x.bitwise_xor_(shifted);
    }

    /// <summary>(x·c) mod 2³² for x &lt; 2³², without int64 overflow: the constant split into 16-bit halves.</summary>
    private static Tensor Mul32(Tensor x, uint c)
    {
        using var low = ((long)(c & 0xFFFF)).ToScalar();
        using var high = ((long)(c >> 16)).ToScalar();
        using var shift = 65536L.ToScalar();
        using var lowMask = Mask(0xFFFFL, x.device);
        using var mask = Mask(0xFFFFFFFFL, x.device);
        using var upper = x.mul(high).bitwise_and_(lowMask).mul_(shift);
        return x.mul(low).add_(upper).bitwise_and_(mask);
    }

    /// <summary>A 0-dim int64 mask (TorchSharp's bitwise ops take tensors, not scalars).</summary>
    private static Tensor Mask(long value, Device device) => tensor(value, ScalarType.Int64, device);
}
