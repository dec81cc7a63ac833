using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;
using Bf16 = LowRankOptim.Kernels.CpuKernels.Bf16;

namespace LowRankOptim.Kernels;

/// <summary>
/// The fused CPU weight update of bfloat16 parameters (<see cref="IWeightUpdateKernel"/>): one pass that reads each bf16
/// weight and its update (bf16 or float32), computes the new weight in float32 registers and writes it back rounded, in
/// place. Workspace: 0 bytes (no float32 copy of the weights, no noise tensor: the random bits are hashed per element from
/// the key and the flat index, <see cref="RoundingNoise"/>). Bit-identical to the reference (<c>TorchKernels</c>), NaN
/// payloads aside (a NaN is written as 0x7FC0, libtorch's canonical bf16 NaN).
/// </summary>
/// <remarks>
/// Stochastic rounding on the bits, as torchao's <c>_fp32_to_bf16_sr</c>: the float32's 16 low bits are cleared, and one is
/// added to the bf16 pattern (one step away from zero; the carry moves into the exponent at a power of two and reaches ∞
/// above the largest bf16) when the 16 high bits of the element's random word are below those low bits. ±∞ has no low bits
/// and stays. Parallel over chunks; each element's result does not depend on the split. AVX-512 where the hardware has it,
/// else <see cref="Vector256"/> (AVX2, or .NET's emulation), then scalar code for the tail.
/// </remarks>
internal sealed unsafe class WeightUpdateCpuKernel : IWeightUpdateKernel
{
    /// <summary>The shared instance: AVX-512 where the hardware has it.</summary>
    public static WeightUpdateCpuKernel Instance { get; } = new(Avx512F.IsSupported && Vector512.IsHardwareAccelerated);

    /// <summary>The same kernel without its AVX-512 path (what runs without AVX-512), for the tests.</summary>
    internal static WeightUpdateCpuKernel Vector256Path { get; } = new(false);

    private readonly bool _avx512;

    private WeightUpdateCpuKernel(bool avx512) => _avx512 = avx512;

    /// <inheritdoc />
    public KernelBackend Backend => KernelBackend.Cpu;

    /// <inheritdoc />
    public string? UnavailableReason => null;

    /// <inheritdoc />
    /// <remarks>The CPU kernels' limit: every tensor read through a pointer stays under <see cref="RawTensor.MaxBytes"/> bytes.</remarks>
    public long MaxElements(KernelStorage storage) => CpuKernels.Instance.MaxElements(KernelStorage.Dense(ScalarType.Float32));

    /// <inheritdoc />
    public bool Accepts(params ReadOnlySpan<Tensor?> tensors) => CpuKernels.Instance.Accepts(tensors);

    /// <inheritdoc />
    public void UpdateWeights(Tensor weights, Tensor update, in WeightUpdateScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(update);
        if (update.dtype is not (ScalarType.BFloat16 or ScalarType.Float32))
            throw new ArgumentException($"update has dtype {update.dtype}; the CPU weight update kernel takes bfloat16 or float32 updates.", nameof(update));
        var n = weights.numel();
        var job = new Job
        {
            W = RawTensor.Pointer<ushort>(weights, ScalarType.BFloat16, n, nameof(weights)),
            U = update.dtype == ScalarType.BFloat16
                ? RawTensor.Pointer<ushort>(update, ScalarType.BFloat16, n, nameof(update))
                : RawTensor.Pointer<float>(update, ScalarType.Float32, n, nameof(update)),
            UpdateIsBFloat16 = update.dtype == ScalarType.BFloat16,
            Before = (float)scalars.DecayBefore,
            Step = (float)-scalars.Coefficient,
            After = (float)scalars.DecayAfter,
            Stochastic = scalars.Rounding.Mode == StateRounding.Stochastic,
            Key = scalars.Rounding.Key,
            FirstIndex = scalars.FirstIndex,
            Avx512 = _avx512,
        };
        CpuKernels.ForChunks(n, job.Run);
        GC.KeepAlive(weights);
        GC.KeepAlive(update);
    }

    private sealed class Job
    {
        public ushort* W;
        public void* U;
        public bool UpdateIsBFloat16, Stochastic, Avx512;
        public float Before, Step, After;
        public uint Key;
        public long FirstIndex;

        public void Run(long start, long end)
        {
            var i = start;
            if (Avx512) i = Run512(i, end);
            i = Run256(i, end);
            for (; i < end; i++)
            {
                var u = UpdateIsBFloat16 ? Bf16.ToSingle(((ushort*)U)[i]) : ((float*)U)[i];
                var x = (Bf16.ToSingle(W[i]) * Before + Step * u) * After;
                W[i] = Stochastic ? RoundStochastic(x, RoundingNoise.Bits(Key, FirstIndex + i) >> 16) : Bf16.FromSingle(x);
            }
        }

        /// <summary>x rounded to bf16 away from zero when <paramref name="noise"/> (16 bits) is below x's 16 low bits, else truncated.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ushort RoundStochastic(float x, uint noise)
        {
            if (float.IsNaN(x)) return 0x7FC0;
            var bits = BitConverter.SingleToUInt32Bits(x);
            return (ushort)((noise < (bits & 0xFFFFu) ? bits + 0x10000u : bits) >> 16);
        }

        /// <summary>The random words of the 8 elements from flat index <paramref name="index"/>, shifted to their 16 high bits.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<uint> Noise256(long index) =>
            RoundingNoise.Mix(Vector256.Create(unchecked(Key + (uint)index * RoundingNoise.ElementStride)) + Lanes256) >> 16;

        private static readonly Vector256<uint> Lanes256 = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7) * RoundingNoise.ElementStride;
        private static readonly Vector512<uint> Lanes512 = Vector512.Create(0u, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) * RoundingNoise.ElementStride;

        private long Run256(long i, long end)
        {
            var before = Vector256.Create(Before);
            var step = Vector256.Create(Step);
            var after = Vector256.Create(After);
            for (; i + 8 <= end; i += 8)
            {
                var u = UpdateIsBFloat16 ? Bf16.Load((ushort*)U + i) : Vector256.Load((float*)U + i);
                var x = (Bf16.Load(W + i) * before + step * u) * after;
                if (!Stochastic)
                {
                    Bf16.Store(x, W + i);
                    continue;
                }
                var bits = x.AsUInt32();
                // Both sides are below 2¹⁶: a signed compare is exact.
                var up = Vector256.LessThan(Noise256(FirstIndex + i).AsInt32(), (bits & Vector256.Create(0xFFFFu)).AsInt32()).AsUInt32();
                var rounded = (bits + (up & Vector256.Create(0x10000u))) >> 16;
                var nan = ~Vector256.Equals(x, x).AsUInt32();
                rounded = Vector256.ConditionalSelect(nan, Vector256.Create(0x7FC0u), rounded);
                Vector128.Narrow(rounded.GetLower(), rounded.GetUpper()).Store(W + i);
            }
            return i;
        }

        private long Run512(long i, long end)
        {
            var before = Vector512.Create(Before);
            var step = Vector512.Create(Step);
            var after = Vector512.Create(After);
            for (; i + 16 <= end; i += 16)
            {
                var u = UpdateIsBFloat16 ? Bf16.Load((ushort*)U + i, Vector512<float>.Zero) : Vector512.Load((float*)U + i);
                var x = (Bf16.Load(W + i, Vector512<float>.Zero) * before + step * u) * after;
                if (!Stochastic)
                {
                    Bf16.Store(x, W + i);
                    continue;
                }
                var bits = x.AsUInt32();
                var index = Vector512.Create(unchecked(Key + (uint)(FirstIndex + i) * RoundingNoise.ElementStride)) + Lanes512;
                var up = Vector512.LessThan((RoundingNoise.Mix(index) >> 16).AsInt32(), (bits & Vector512.Create(0xFFFFu)).AsInt32()).AsUInt32();
                var rounded = (bits + (up & Vector512.Create(0x10000u))) >> 16;
                var nan = ~Vector512.Equals(x, x).AsUInt32();
                rounded = Vector512.ConditionalSelect(nan, Vector512.Create(0x7FC0u), rounded);
                Avx512F.ConvertToVector256UInt16(rounded).Store(W + i);
            }
            return i;
        }
    }
}
