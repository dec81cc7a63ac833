using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// The reference block-wise quantizer in TorchSharp ops (any device), the truth every fused kernel is tested against.
/// It follows torchao's <c>scale_tensor</c>, <c>quantize_8bit_with_qmap</c> / <c>quantize_4bit_with_qmap</c> and
/// <c>dequant_with_qmap</c> (torchao/optim/quant_utils.py): scale = max |x| over the block, clipped at
/// <see cref="BlockFormat.MinScale"/>; y = x / scale in float32; the code of the largest map value ≤ y found by a
/// branchless binary search, moved up one when y − low ≥ (high − low)·0.5 (or, stochastically, when
/// y − low &gt; u·(high − low), see <see cref="RoundingNoise"/>); dequantized, map[code]·scale in float32.
/// </summary>
public static class BlockQuantizer
{
    // Constants rooted for the process (a Scalar made per call must be held in a local: see ScalarLifetimeTests).
    private static readonly Scalar One = 1L.ToScalar(), Two8 = 256L.ToScalar(), Two16 = 65536L.ToScalar(), Mask16 = 0xFFFFL.ToScalar();
    private static readonly Scalar Eight = 8L.ToScalar(), MinBf16Exponent = (-133L).ToScalar();
    private static readonly Scalar Ulp24 = (1.0f / 16777216.0f).ToScalar();

    /// <summary>Dequantizes <paramref name="codes"/> and <paramref name="scales"/> into a new tensor of <paramref name="shape"/> and <paramref name="dtype"/>.</summary>
    /// <param name="codes">The codes (uint8; 4-bit codes packed two to a byte).</param>
    /// <param name="scales">One float32 scale per block.</param>
    /// <param name="format">The format.</param>
    /// <param name="shape">The tensor's shape.</param>
    /// <param name="dtype">The dtype of the result (the values are computed in float32 and then converted).</param>
    public static Tensor Dequantize(Tensor codes, Tensor scales, BlockFormat format, long[] shape, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(format);
        using var scope = NewDisposeScope();
        var map = MapTensor(format, codes.device);
        var values = map.index_select(0, Unpack(codes, format)).view(-1, format.BlockSize).mul_(scales.view(-1, 1));
        return values.view(shape).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Quantizes <paramref name="values"/> into <paramref name="codes"/> and <paramref name="scales"/> (overwritten).</summary>
    /// <param name="values">The values (any float dtype; converted to float32 exactly or by rounding to nearest).</param>
    /// <param name="codes">Where the codes go (uint8, <see cref="BlockFormat.CodeBytes"/> elements).</param>
    /// <param name="scales">Where the scales go (float32, one per block).</param>
    /// <param name="format">The format; the element count must be a multiple of its block size.</param>
    /// <param name="rounding">Nearest or stochastic (with the store's key).</param>
    public static void Quantize(Tensor values, Tensor codes, Tensor scales, BlockFormat format, Rounding rounding)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(format);
        if (!format.Fits(values.numel()))
            throw new ArgumentException($"values has {values.numel()} elements; block-wise quantization needs a positive multiple of {format.BlockSize}.", nameof(values));
        using var scope = NewDisposeScope();
        using var minScale = BlockFormat.MinScale.ToScalar();
        using var half = 0.5f.ToScalar();
        var x = values.to(ScalarType.Float32).reshape(-1, format.BlockSize);
        var scale = x.abs().amax([-1]).clamp_min(minScale);
        var y = x.div(scale.view(-1, 1)).view(-1);
        var map = MapTensor(format, values.device);
        var top = (1L << format.Bits) - 1;
        var code = zeros_like(y, dtype: ScalarType.Int64);
        for (var step = 1L << (format.Bits - 1); step >= 1; step >>= 1)
        {
            using var s = step.ToScalar();
            var probe = map.index_select(0, code.add(s));
            code.add_(y.ge(probe).to(ScalarType.Int64).mul_(s));
        }
        using var topScalar = top.ToScalar();
        var upCode = code.add(One).clamp_max(topScalar);
        var low = map.index_select(0, code);
        var gap = map.index_select(0, upCode).sub(low);
        var residual = y.sub(low);
        var up = rounding.Mode == StateRounding.Stochastic
            ? residual.gt(Uniforms(rounding.Key, y.numel(), y.device).mul_(gap))
            : residual.ge(gap.mul(half));
        var chosen = where(up, upCode, code);
        scales.copy_(scale);
        codes.copy_(Pack(chosen, format));
    }

    /// <summary>
    /// <paramref name="values"/> rounded to bfloat16: to nearest even, or stochastically as torchao's <c>_fp32_to_bf16_sr</c>:
    /// the float32 truncated to bfloat16 (its 16 low bits cleared), then moved one bfloat16 step away from zero when the
    /// random 16 bits of <see cref="RoundingNoise"/> are below those low bits. Computed arithmetically (TorchSharp has no
    /// bit view): for |x| = m·2^E (frexp), the step is 2^max(E−8, −133) and the low bits are frac(|x| / step)·2¹⁶, both exact.
    /// </summary>
    /// <param name="values">The values (converted to float32 first).</param>
    /// <param name="rounding">Nearest or stochastic.</param>
    /// <param name="firstIndex">The flat index of the first value in its store (the noise of element i is that of index firstIndex + i).</param>
    public static Tensor ToBFloat16(Tensor values, Rounding rounding, long firstIndex = 0)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (rounding.Mode == StateRounding.Nearest) return values.to(ScalarType.BFloat16);
        using var scope = NewDisposeScope();
        var x = values.to(ScalarType.Float32);
        var magnitude = x.abs();
        var (_, exponent) = frexp(magnitude);
        var ulp = ldexp(ones_like(magnitude), exponent.sub(Eight).clamp_min(MinBf16Exponent));
        var units = magnitude.div(ulp);
        var whole = units.floor();
        var fraction = units.sub(whole).mul_(Two16); // the 16 low bits, exact
        var random = RoundingNoise.BitsTensor(rounding.Key, values.numel(), values.device, firstIndex).div(Two16, rounding_mode: RoundingMode.floor).view(values.shape);
        var truncated = whole.mul(ulp);
        var away = where(random.to(ScalarType.Float32).lt(fraction), truncated.add(ulp), truncated).copysign_(x);
        return where(x.isfinite(), away, x).to(ScalarType.BFloat16).MoveToOuterDisposeScope();
    }

    /// <summary>The uniform numbers u = (bits &gt;&gt; 8)·2⁻²⁴ of elements [0, count), float32.</summary>
    private static Tensor Uniforms(uint key, long count, Device device) =>
        RoundingNoise.BitsTensor(key, count, device).div(Two8, rounding_mode: RoundingMode.floor).to(ScalarType.Float32).mul_(Ulp24);

    /// <summary>The map as a float32 tensor on <paramref name="device"/>.</summary>
    private static Tensor MapTensor(BlockFormat format, Device device) => tensor(format.Values, device: device);

    /// <summary>Codes as int64 indices, one per entry (4-bit: high nibble first).</summary>
    private static Tensor Unpack(Tensor codes, BlockFormat format)
    {
        var wide = codes.to(ScalarType.Int64);
        if (format.Bits == 8) return wide;
        using var sixteen = 16L.ToScalar();
        return stack([wide.div(sixteen, rounding_mode: RoundingMode.floor), wide.remainder(sixteen)], dim: -1).view(-1);
    }

    /// <summary>int64 codes as stored bytes (4-bit: pairs packed, even entry in the high nibble).</summary>
    private static Tensor Pack(Tensor code, BlockFormat format)
    {
        if (format.Bits == 8) return code.to(ScalarType.Byte);
        using var sixteen = 16L.ToScalar();
        var pairs = code.view(-1, 2);
        return pairs.select(1, 0).mul(sixteen).add_(pairs.select(1, 1)).to(ScalarType.Byte);
    }
}
