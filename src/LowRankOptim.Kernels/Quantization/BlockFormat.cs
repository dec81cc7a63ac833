namespace LowRankOptim.Kernels;

/// <summary>The code book of a block-wise quantized state: which values a code stands for, in units of the block's absmax.</summary>
public enum QuantizationMap
{
    /// <summary>
    /// 256 signed dynamic-exponent values in [−1, 1] (bitsandbytes' <c>create_dynamic_map(signed=True)</c>, as torchao's
    /// <c>OptimState8bit</c> uses it for the first moment).
    /// </summary>
    DynamicSigned8,
    /// <summary>256 unsigned dynamic-exponent values in [0, 1] (<c>create_dynamic_map(signed=False)</c>: torchao's second moment).</summary>
    DynamicUnsigned8,
    /// <summary>16 signed dynamic values (<c>create_dynamic_map(True, 3, 4)</c>: torchao's <c>OptimState4bit</c> first moment).</summary>
    DynamicSigned4,
    /// <summary>16 linear values 1/16 … 1, without zero (<c>linspace(0, 1, 17)[1:]</c>: torchao's 4-bit second moment).</summary>
    LinearUnsigned4,
}

/// <summary>
/// A block-wise quantization format (torchao's <c>OptimState8bit</c> and <c>OptimState4bit</c>): the flat tensor is cut
/// into blocks of <paramref name="BlockSize"/> entries; each block keeps one float32 scale, its largest magnitude
/// (clipped below at 1e-12), and each entry the <paramref name="Bits"/>-bit code of the nearest map value to
/// entry / scale. 4-bit codes are packed two to a byte, the even entry in the high nibble (torchao's layout).
/// </summary>
/// <param name="Bits">8 or 4.</param>
/// <param name="BlockSize">Entries per block (torchao: 256 for 8-bit, 128 for 4-bit).</param>
/// <param name="Map">The code book.</param>
public sealed record BlockFormat(int Bits, int BlockSize, QuantizationMap Map)
{
    /// <summary>8-bit, blocks of 256, signed dynamic map: torchao's first moment.</summary>
    public static BlockFormat Signed8 { get; } = new(8, 256, QuantizationMap.DynamicSigned8);
    /// <summary>8-bit, blocks of 256, unsigned dynamic map: torchao's second moment.</summary>
    public static BlockFormat Unsigned8 { get; } = new(8, 256, QuantizationMap.DynamicUnsigned8);
    /// <summary>4-bit, blocks of 128, signed dynamic map: torchao's 4-bit first moment.</summary>
    public static BlockFormat Signed4 { get; } = new(4, 128, QuantizationMap.DynamicSigned4);
    /// <summary>4-bit, blocks of 128, linear map without zero: torchao's 4-bit second moment.</summary>
    public static BlockFormat Unsigned4 { get; } = new(4, 128, QuantizationMap.LinearUnsigned4);

    /// <summary>The smallest scale a block keeps (torchao's <c>clip(1e-12)</c>), so that entry / scale is finite.</summary>
    public const float MinScale = 1e-12f;

    /// <summary>The map's values, ascending (2^<see cref="Bits"/> of them).</summary>
    public float[] Values => QuantizationMaps.Of(Map);

    /// <summary>Bytes of the codes of <paramref name="count"/> entries.</summary>
    /// <param name="count">Entries (a multiple of <see cref="BlockSize"/>).</param>
    public long CodeBytes(long count) => count * Bits / 8;

    /// <summary>Blocks (and scales) of <paramref name="count"/> entries.</summary>
    /// <param name="count">Entries (a multiple of <see cref="BlockSize"/>).</param>
    public long Blocks(long count) => count / BlockSize;

    /// <summary>Exact bytes of <paramref name="count"/> entries: codes plus one float32 scale per block.</summary>
    /// <param name="count">Entries (a multiple of <see cref="BlockSize"/>).</param>
    public long Bytes(long count) => CodeBytes(count) + 4 * Blocks(count);

    /// <summary>Whether a tensor of <paramref name="count"/> entries can be stored in this format: whole blocks only.</summary>
    /// <param name="count">Entries.</param>
    public bool Fits(long count) => count > 0 && count % BlockSize == 0;
}
