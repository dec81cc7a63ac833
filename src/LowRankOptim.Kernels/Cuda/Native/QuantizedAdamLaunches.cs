namespace LowRankOptim.Kernels;

/// <summary>
/// One block-wise quantized moment as quantized_adam.cu takes it: device addresses of its codes (uint8; 4-bit codes
/// two to a byte), its float32 absmax (one per block) and its map (2^bits float32 values, ascending), and how it rounds.
/// </summary>
/// <param name="Codes">The codes, updated in place.</param>
/// <param name="Absmax">The absmax of every block, updated in place.</param>
/// <param name="Map">The code book (read only).</param>
/// <param name="Stochastic">Whether codes round stochastically (else to nearest).</param>
/// <param name="Key">The store's key of the stochastic rounding (RoundingNoise.Key); unused for nearest rounding.</param>
internal readonly record struct QuantizedBuffers(IntPtr Codes, IntPtr Absmax, IntPtr Map, bool Stochastic, uint Key);

/// <summary>
/// The typed launch of quantized_adam.cu (shared by <see cref="CudaKernels"/> and the GPU harness, so no TorchSharp):
/// one thread block of <c>blockSize</c> threads per quantization block, grid-stride over the blocks, asynchronous on
/// the default stream.
/// </summary>
internal static unsafe class QuantizedAdamLaunches
{
    /// <summary>The largest block size the kernel takes (quantized_adam.cu's MAX_BLOCK, the size of its shared trees).</summary>
    public const int MaxBlockSize = 256;

    private const long MaxGrid = 65535;

    /// <summary>The kernels: every (dtype, bits, direction or update) variant.</summary>
    public static IReadOnlyList<string> Functions { get; } =
        [.. from update in new[] { false, true } from bf16 in new[] { false, true } from bits in new[] { 8, 4 } select Name(update, bf16, bits)];

    /// <summary>The kernel's name: quantized_adam_{direction|update}_{f32|bf16}_{8|4}.</summary>
    public static string Name(bool update, bool bf16, int bits) =>
        $"quantized_adam_{(update ? "update" : "direction")}_{(bf16 ? "bf16" : "f32")}_{bits}";

    /// <summary>Null when the kernel takes blocks of <paramref name="blockSize"/> entries of <paramref name="bits"/>-bit codes, else why not.</summary>
    public static string? FormatProblem(int bits, int blockSize)
    {
        if (bits is not (8 or 4)) return $"{bits}-bit codes (the kernel takes 8 or 4)";
        // One thread per entry and a halving tree: a power of two; 4-bit pairs: at least 2.
        if (blockSize < 2 || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
            return $"blocks of {blockSize} entries (the kernel takes a power of two from 2 to {MaxBlockSize})";
        return null;
    }

    /// <summary>
    /// One Adam step on <paramref name="blocks"/> blocks of <paramref name="blockSize"/> entries: the moments'
    /// codes and absmax in place, and the direction written to <paramref name="target"/> or, with
    /// <paramref name="update"/>, the weights at <paramref name="target"/> stepped in place.
    /// </summary>
    /// <exception cref="ArgumentException">The format is not one the kernel takes (<see cref="FormatProblem"/>).</exception>
    public static void Launch(int device, bool bf16, int bits, int blockSize, long blocks, IntPtr g, IntPtr target,
        in QuantizedBuffers m, in QuantizedBuffers v, in AdamScalars s, float minScale, bool update)
    {
        if (FormatProblem(bits, blockSize) is string problem) throw new ArgumentException($"the CUDA quantized Adam kernel cannot take {problem}.", nameof(blockSize));
        if (blocks == 0) return;
        var f = CudaDriver.Function(device, "quantized_adam.cu", Name(update, bf16, bits));
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        float decay = (float)s.DecayFactor, negativeStep = (float)-s.StepSize;
        int corrected = s.SqrtBiasCorrection2 != 1.0 ? 1 : 0, decays = s.DecayFactor != 1 ? 1 : 0;
        IntPtr mc = m.Codes, ma = m.Absmax, mm = m.Map, vc = v.Codes, va = v.Absmax, vm = v.Map;
        int ms = m.Stochastic ? 1 : 0, vs = v.Stochastic ? 1 : 0;
        uint mk = m.Key, vk = v.Key;
        var grid = (uint)Math.Min(blocks, MaxGrid);
        if (update)
            CudaDriver.Launch(f, grid, (uint)blockSize,
                [(IntPtr)(&g), (IntPtr)(&target), (IntPtr)(&mc), (IntPtr)(&ma), (IntPtr)(&mm), (IntPtr)(&vc), (IntPtr)(&va), (IntPtr)(&vm),
                 (IntPtr)(&blocks), (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2), (IntPtr)(&eps), (IntPtr)(&sbc2), (IntPtr)(&corrected),
                 (IntPtr)(&decay), (IntPtr)(&decays), (IntPtr)(&negativeStep), (IntPtr)(&minScale),
                 (IntPtr)(&ms), (IntPtr)(&mk), (IntPtr)(&vs), (IntPtr)(&vk)]);
        else
            CudaDriver.Launch(f, grid, (uint)blockSize,
                [(IntPtr)(&g), (IntPtr)(&target), (IntPtr)(&mc), (IntPtr)(&ma), (IntPtr)(&mm), (IntPtr)(&vc), (IntPtr)(&va), (IntPtr)(&vm),
                 (IntPtr)(&blocks), (IntPtr)(&b1), (IntPtr)(&c1), (IntPtr)(&b2), (IntPtr)(&c2), (IntPtr)(&eps), (IntPtr)(&sbc2), (IntPtr)(&corrected),
                 (IntPtr)(&minScale), (IntPtr)(&ms), (IntPtr)(&mk), (IntPtr)(&vs), (IntPtr)(&vk)]);
    }
}
