using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// Fused CPU Adam on block-wise quantized moments (<see cref="IQuantizedAdamKernel"/>): one pass over the blocks, each
/// decoded into stack buffers, stepped with the dense CPU kernel's element arithmetic (<see cref="CpuKernels.AdamJob"/>),
/// and quantized back (<see cref="QuantizedAdamBlocks"/>). Float32 or bfloat16 gradients; 8- or 4-bit moments.
/// </summary>
/// <remarks>
/// The moments are those of the reference's dequantize → Adam → quantize sequence: dequantization is map[code]·absmax in
/// float32 (then rounded to bf16 for a bf16 gradient, as <c>.to(bf16)</c>), the Adam arithmetic rounds as the dense kernel
/// (float32 moments bit for bit with libtorch's, bf16 where libtorch rounds), and quantization makes libtorch's float32
/// division and comparisons, so codes and absmax equal the reference's bit for bit. The direction or weights differ from the
/// reference as the dense kernel's do (libtorch's float32 sqrt). Parallel over ranges of whole blocks; each element's
/// result, stochastic rounding included (it draws by flat index), does not depend on the split.
/// </remarks>
internal sealed unsafe class QuantizedAdamCpuKernel : IQuantizedAdamKernel
{
    /// <summary>The shared instance: AVX-512 where the hardware has it, else AVX2, else scalar code.</summary>
    public static QuantizedAdamCpuKernel Instance { get; } = new(
        Avx512F.IsSupported ? QuantizedAdamBlocks.Path.Avx512 : Avx2.IsSupported ? QuantizedAdamBlocks.Path.Avx2 : QuantizedAdamBlocks.Path.Scalar);

    /// <summary>
    /// The same kernel on its AVX-512 path with every code by the search (what runs without AVX-512 VBMI or DQ; null
    /// without AVX-512), for the tests.
    /// </summary>
    internal static QuantizedAdamCpuKernel? Avx512SearchPath { get; } = Avx512F.IsSupported ? new(QuantizedAdamBlocks.Path.Avx512Search) : null;

    /// <summary>The same kernel on its AVX2 path (what runs without AVX-512; null without AVX2), for the tests.</summary>
    internal static QuantizedAdamCpuKernel? Avx2Path { get; } = Avx2.IsSupported ? new(QuantizedAdamBlocks.Path.Avx2) : null;

    /// <summary>The same kernel on its scalar path only (what runs without AVX2), for the tests.</summary>
    internal static QuantizedAdamCpuKernel Scalar { get; } = new(QuantizedAdamBlocks.Path.Scalar);

    private readonly QuantizedAdamBlocks.Path _path;

    /// <summary>The largest block this kernel takes: its stack buffers hold one block of each moment.</summary>
    internal const int MaxBlockSize = 4096;

    /// <summary>Block sizes must be a multiple of this: the vector loops take 32 codes at a time.</summary>
    internal const int BlockMultiple = 32;

    private QuantizedAdamCpuKernel(QuantizedAdamBlocks.Path path) => _path = path;

    /// <inheritdoc />
    public KernelBackend Backend => KernelBackend.Cpu;

    /// <inheritdoc />
    public string? UnavailableReason => null;

    /// <inheritdoc />
    /// <remarks>The gradient (and the direction or weights) is the largest tensor read through a pointer: the CPU kernels' limit.</remarks>
    public long MaxElements(KernelStorage storage) => CpuKernels.Instance.MaxElements(storage);

    /// <inheritdoc />
    /// <remarks>The CPU kernels' layout rule: dense tensors on the CPU, under <see cref="RawTensor.MaxBytes"/>.</remarks>
    public bool Accepts(params ReadOnlySpan<Tensor?> tensors) => CpuKernels.Instance.Accepts(tensors);

    /// <inheritdoc />
    /// <remarks>8 or 4 bits, blocks of a multiple of <see cref="BlockMultiple"/> up to <see cref="MaxBlockSize"/> entries.</remarks>
    public string? FormatProblem(BlockFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        return format.Bits is not (8 or 4) || format.BlockSize <= 0 || format.BlockSize % BlockMultiple != 0 || format.BlockSize > MaxBlockSize
            ? $"{format.Bits}-bit blocks of {format.BlockSize} entries (the CPU kernel takes 8 or 4 bits and blocks of a multiple of {BlockMultiple} up to {MaxBlockSize})"
            : null;
    }

    /// <inheritdoc />
    public Tensor QuantizedAdamDirection(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        var direction = empty(gradient.shape, gradient.dtype, gradient.device);
        try
        {
            Run(gradient, moments, scalars, direction, "direction", updateWeights: false);
            return direction;
        }
        catch
        {
            direction.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void QuantizedAdamUpdate(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        Run(gradient, moments, scalars, weights, nameof(weights), updateWeights: true);
    }

    private void Run(Tensor gradient, in QuantizedMoments moments, in AdamScalars scalars, Tensor target, string targetName, bool updateWeights)
    {
        var dtype = gradient.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"gradient has dtype {dtype}; the CPU quantized Adam kernel needs float32 or bfloat16.", nameof(gradient));
        var (m, v) = (moments.ExpAvg, moments.ExpAvgSq);
        ArgumentNullException.ThrowIfNull(m.Format, "moments.ExpAvg.Format");
        ArgumentNullException.ThrowIfNull(v.Format, "moments.ExpAvgSq.Format");
        var format = m.Format;
        if (v.Format.Bits != format.Bits || v.Format.BlockSize != format.BlockSize)
            throw new ArgumentException($"moments: m is {format.Bits}-bit in blocks of {format.BlockSize}, v {v.Format.Bits}-bit in blocks of {v.Format.BlockSize}; the CPU kernel needs one width and block size.", nameof(moments));
        if (format.Bits is not (8 or 4) || format.BlockSize % BlockMultiple != 0 || format.BlockSize > MaxBlockSize)
            throw new ArgumentException($"moments: {format.Bits}-bit blocks of {format.BlockSize}; the CPU kernel needs 8 or 4 bits and blocks of a multiple of {BlockMultiple} up to {MaxBlockSize}.", nameof(moments));
        var n = gradient.numel();
        if (!format.Fits(n))
            throw new ArgumentException($"gradient has {n} elements; block-wise moments need a positive multiple of {format.BlockSize}.", nameof(gradient));
        var blocks = format.Blocks(n);
        var adam = CpuKernels.AdamJob.Create(scalars, dtype, updateWeights);
        var job = new QuantizedAdamBlocks(adam, format.BlockSize, format.Bits, _path)
        {
            Gradient = dtype == ScalarType.BFloat16 ? RawTensor.Pointer<ushort>(gradient, dtype, n, nameof(gradient)) : RawTensor.Pointer<float>(gradient, dtype, n, nameof(gradient)),
            Target = dtype == ScalarType.BFloat16 ? RawTensor.Pointer<ushort>(target, dtype, n, targetName) : RawTensor.Pointer<float>(target, dtype, n, targetName),
            M = Store(m, n, blocks, "moments.ExpAvg"),
            V = Store(v, n, blocks, "moments.ExpAvgSq"),
        };
        KernelThreads.ForRanges(blocks, Math.Max(1, CpuKernels.ChunkElements / format.BlockSize), job.Run);
        GC.KeepAlive(gradient); GC.KeepAlive(target);
        GC.KeepAlive(m.Codes); GC.KeepAlive(m.Absmax); GC.KeepAlive(v.Codes); GC.KeepAlive(v.Absmax);
    }

    /// <summary>The pointers and rounding of one quantized moment, checked (uint8 codes and float32 absmax of the sizes <paramref name="n"/> entries need).</summary>
    private static QuantizedAdamBlocks.Moment Store(in QuantizedTensor store, long n, long blocks, string name) => new(
        RawTensor.Pointer<byte>(store.Codes, ScalarType.Byte, store.Format.CodeBytes(n), name + ".Codes"),
        RawTensor.Pointer<float>(store.Absmax, ScalarType.Float32, blocks, name + ".Absmax"),
        CodeSearch.Of(store.Format.Map),
        store.Rounding);
}
