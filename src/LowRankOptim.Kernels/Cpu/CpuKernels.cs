using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Kernels;

/// <summary>
/// Fused CPU kernels: one pass over contiguous float32 or bfloat16 memory, vectorized with
/// <see cref="Vector512"/> (Adam, where the hardware has it; bf16 Adam needs AVX-512F) or <see cref="Vector256"/>, parallel over
/// ranges (element-wise kernels, <see cref="ForChunks"/>) or bands whose boundaries depend on the shape only (reductions).
/// Element-wise results do not depend on the split;
/// reductions are accumulated in float64 per row or per band and merged in band order, so every result is
/// the same for any thread count.
/// </summary>
/// <remarks>
/// <para>
/// The Adam kernel rounds where the reference rounds: for float32 each reference op is one float operation
/// here (the moments' add_ and addcmul_ are fused multiply-adds, as libtorch's vectorized loops), so the
/// moments are bit-identical; the square root here is IEEE, libtorch's float32 sqrt on x86 is not correctly
/// rounded in the last place, so directions and weights agree to float rounding. For bfloat16 every
/// intermediate the reference stores (β1·m, the new m, β2·v, the new v, √v, √v/√bc2, the denominator, the
/// result) is rounded to bfloat16 (nearest even), as libtorch does after each op, and the scalars are
/// rounded to bfloat16 where libtorch rounds them (mul_, add_, div; not the addcmul_/addcdiv_ values). The Adafactor statistics and ℓ1 norms sum in float64 where the reference sums in
/// float32, so they agree to float32 rounding. SMMF is <see cref="SmmfCpuKernel"/> (float32 only: SMMF keeps
/// float32 state and computes in float32 for bf16 parameters). Pointers come from <see cref="RawTensor"/> only.
/// </para>
/// <para>
/// Registered in <see cref="KernelRegistry"/> as <see cref="KernelBackend.Cpu"/>: Adam's direction and update,
/// Adafactor statistics and ℓ1 norms for dense float32 and bfloat16, SMMF for float32; every tensor under
/// <see cref="RawTensor.MaxBytes"/> bytes (TorchSharp's byte spans stop at 2 GiB).
/// </para>
/// </remarks>
internal sealed unsafe class CpuKernels : IAdamDirectionKernel, IAdamUpdateKernel, IAdafactorStatisticsKernel, ISmmfStepKernel, IL1NormsKernel
{
    /// <summary>The shared instance; the class has no state.</summary>
    public static CpuKernels Instance { get; } = new();

    /// <summary>The unit of the element-wise kernels' parallel ranges (their bounds are multiples of it), and the elements per band of the reductions.</summary>
    internal const long ChunkElements = 1 << 15;

    /// <summary>The most bands a reduction over one matrix is split into.</summary>
    internal const int MaxBands = 64;

    private CpuKernels() { }

    /// <inheritdoc />
    public KernelBackend Backend => KernelBackend.Cpu;

    /// <inheritdoc />
    public string? UnavailableReason => null;

    /// <inheritdoc />
    /// <remarks>Every tensor a kernel reads through a pointer must stay under <see cref="RawTensor.MaxBytes"/> bytes.</remarks>
    public long MaxElements(KernelStorage storage) => (RawTensor.MaxBytes - 1) / storage.ElementSize;

    /// <inheritdoc />
    public bool Accepts(params ReadOnlySpan<Tensor?> tensors)
    {
        foreach (var t in tensors)
            if (RawTensor.Problem(t, DeviceType.CPU, "tensor") is not null) return false;
        return true;
    }

    // ---------------------------------------------------------------- Adam

    /// <inheritdoc />
    public Tensor AdamDirection(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        var direction = empty(gradient.shape, gradient.dtype, gradient.device);
        try
        {
            RunAdam(gradient, expAvg, expAvgSq, scalars, direction, "direction", updateWeights: false);
            return direction;
        }
        catch
        {
            direction.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void AdamUpdate(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        RunAdam(gradient, expAvg, expAvgSq, scalars, weights, nameof(weights), updateWeights: true);
    }

    private static void RunAdam(Tensor gradient, Tensor expAvg, Tensor expAvgSq, in AdamScalars scalars, Tensor target, string targetName, bool updateWeights)
    {
        var dtype = gradient.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"gradient has dtype {dtype}; the CPU Adam kernel needs float32 or bfloat16.", nameof(gradient));
        var n = gradient.numel();
        var job = AdamJob.Create(scalars, dtype, updateWeights);
        if (job.BFloat16)
        {
            job.G = RawTensor.Pointer<ushort>(gradient, dtype, n, nameof(gradient));
            job.M = RawTensor.Pointer<ushort>(expAvg, dtype, n, nameof(expAvg));
            job.V = RawTensor.Pointer<ushort>(expAvgSq, dtype, n, nameof(expAvgSq));
            job.Target = RawTensor.Pointer<ushort>(target, dtype, n, targetName);
        }
        else
        {
            job.G = RawTensor.Pointer<float>(gradient, dtype, n, nameof(gradient));
            job.M = RawTensor.Pointer<float>(expAvg, dtype, n, nameof(expAvg));
            job.V = RawTensor.Pointer<float>(expAvgSq, dtype, n, nameof(expAvgSq));
            job.Target = RawTensor.Pointer<float>(target, dtype, n, targetName);
        }
        ForChunks(n, job.Run);
        GC.KeepAlive(gradient); GC.KeepAlive(expAvg); GC.KeepAlive(expAvgSq); GC.KeepAlive(target);
    }

    /// <summary>
    /// One Adam call. Target is the direction d = m / denom, or the weights: w ← w·decay, then
    /// w ← w + (−c·m) / denom, the order of libtorch's mul_ and addcdiv_ (whose bf16 path computes in float
    /// and rounds once). Also the element arithmetic of <see cref="QuantizedAdamCpuKernel"/>, which points it at
    /// one block's decoded moments at a time, so that both kernels round alike.
    /// </summary>
    internal sealed class AdamJob
    {
        public void* G, M, V, Target;
        public float Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Eps, Sbc2, Decay, NegativeStep;
        public bool Corrected, BFloat16, UpdateWeights, Decays;

        /// <summary>
        /// After <see cref="RunTrackingLargest"/>: the largest |m| and |v| of the range as float32 bits, lane by lane (for
        /// |x| the float order is the integer order, and a NaN, above +∞ as an integer, wins).
        /// </summary>
        public Vector512<uint> LargestM, LargestV;

        /// <summary>
        /// Whether <see cref="RunTrackingLargest"/> can run: float32 state with the 16-lane loop (a range of whole 16-lane
        /// steps; the quantized kernel's blocks are multiples of 32 entries).
        /// </summary>
        public bool CanTrackLargest => !BFloat16 && Vector512.IsHardwareAccelerated;

        /// <summary>A job with the scalars of one call, rounded as libtorch rounds them for <paramref name="dtype"/>; the pointers are the caller's to set.</summary>
        public static AdamJob Create(in AdamScalars scalars, ScalarType dtype, bool updateWeights)
        {
            var job = new AdamJob
            {
                Beta1 = (float)scalars.Beta1, OneMinusBeta1 = (float)(1 - scalars.Beta1),
                Beta2 = (float)scalars.Beta2, OneMinusBeta2 = (float)(1 - scalars.Beta2),
                Eps = (float)scalars.Eps, Sbc2 = (float)scalars.SqrtBiasCorrection2,
                Corrected = scalars.SqrtBiasCorrection2 != 1.0,
                BFloat16 = dtype == ScalarType.BFloat16,
                UpdateWeights = updateWeights,
                Decays = scalars.DecayFactor != 1,
                Decay = (float)scalars.DecayFactor,
                // addcdiv_ takes its scalar as a float, also for bf16 tensors (no bf16 rounding).
                NegativeStep = (float)-scalars.StepSize,
            };
            if (job.BFloat16)
            {
                // libtorch converts the scalars of a bf16 mul_/add_/div to bf16 first; addcmul_ and addcdiv_ keep theirs in float.
                job.Beta1 = Bf16.Round(job.Beta1); job.OneMinusBeta1 = Bf16.Round(job.OneMinusBeta1);
                job.Beta2 = Bf16.Round(job.Beta2);
                job.Eps = Bf16.Round(job.Eps); job.Sbc2 = Bf16.Round(job.Sbc2); job.Decay = Bf16.Round(job.Decay);
            }
            return job;
        }

        /// <summary>A copy with the same scalars (each parallel part points its own copy at its blocks).</summary>
        public AdamJob Clone() => (AdamJob)MemberwiseClone();

        public void Run(long start, long end)
        {
            if (BFloat16) RunBf16(start, end);
            else RunF32<No>(start, end);
        }

        /// <summary>
        /// <see cref="Run"/> on a float32 range of whole 16-lane steps (<see cref="CanTrackLargest"/>), also keeping the
        /// largest new |m| and |v| (<see cref="LargestM"/>, <see cref="LargestV"/>): the quantized kernel's block scales,
        /// taken while the moments are in registers instead of in a second pass over them.
        /// </summary>
        public void RunTrackingLargest(long start, long end)
        {
            if (!CanTrackLargest || (end - start) % Vector512<float>.Count != 0)
                throw new InvalidOperationException("RunTrackingLargest needs float32 state, 16-lane vectors and whole 16-lane steps.");
            RunF32<Yes>(start, end);
        }

        private void RunF32<TTrack>(long i, long end) where TTrack : struct, IFlag
        {
            float* g = (float*)G, m = (float*)M, v = (float*)V, t = (float*)Target;
            bool corrected = Corrected, update = UpdateWeights, decays = Decays;
            if (Vector512.IsHardwareAccelerated)
            {
                var b1 = Vector512.Create(Beta1); var c1 = Vector512.Create(OneMinusBeta1);
                var b2 = Vector512.Create(Beta2); var c2 = Vector512.Create(OneMinusBeta2);
                var eps = Vector512.Create(Eps); var s = Vector512.Create(Sbc2);
                var decay = Vector512.Create(Decay); var step = Vector512.Create(NegativeStep);
                var magnitude = Vector512.Create(0x7FFFFFFFu);
                var (largestM, largestV) = (Vector512<uint>.Zero, Vector512<uint>.Zero);
                for (; i + Vector512<float>.Count <= end; i += Vector512<float>.Count)
                {
                    var gi = Vector512.Load(g + i);
                    var mi = Vector512.FusedMultiplyAdd(c1, gi, Vector512.Load(m + i) * b1);
                    var vi = Vector512.FusedMultiplyAdd(c2 * gi, gi, Vector512.Load(v + i) * b2);
                    var root = Vector512.Sqrt(vi);
                    var denom = (corrected ? root / s : root) + eps;
                    mi.Store(m + i); vi.Store(v + i);
                    if (TTrack.Value)
                    {
                        largestM = Vector512.Max(largestM, mi.AsUInt32() & magnitude);
                        largestV = Vector512.Max(largestV, vi.AsUInt32() & magnitude);
                    }
                    if (!update) (mi / denom).Store(t + i);
                    else
                    {
                        var w = Vector512.Load(t + i);
                        if (decays) w *= decay;
                        (w + step * mi / denom).Store(t + i);
                    }
                }
                if (TTrack.Value) (LargestM, LargestV) = (largestM, largestV);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var b1 = Vector256.Create(Beta1); var c1 = Vector256.Create(OneMinusBeta1);
                var b2 = Vector256.Create(Beta2); var c2 = Vector256.Create(OneMinusBeta2);
                var eps = Vector256.Create(Eps); var s = Vector256.Create(Sbc2);
                var decay = Vector256.Create(Decay); var step = Vector256.Create(NegativeStep);
                for (; i + Vector256<float>.Count <= end; i += Vector256<float>.Count)
                {
                    var gi = Vector256.Load(g + i);
                    var mi = Vector256.FusedMultiplyAdd(c1, gi, Vector256.Load(m + i) * b1);
                    var vi = Vector256.FusedMultiplyAdd(c2 * gi, gi, Vector256.Load(v + i) * b2);
                    var root = Vector256.Sqrt(vi);
                    var denom = (corrected ? root / s : root) + eps;
                    mi.Store(m + i); vi.Store(v + i);
                    if (!update) (mi / denom).Store(t + i);
                    else
                    {
                        var w = Vector256.Load(t + i);
                        if (decays) w *= decay;
                        (w + step * mi / denom).Store(t + i);
                    }
                }
            }
            for (; i < end; i++)
            {
                var gi = g[i];
                var mi = MathF.FusedMultiplyAdd(OneMinusBeta1, gi, m[i] * Beta1);
                var vi = MathF.FusedMultiplyAdd(OneMinusBeta2 * gi, gi, v[i] * Beta2);
                var root = MathF.Sqrt(vi);
                var denom = (corrected ? root / Sbc2 : root) + Eps;
                m[i] = mi; v[i] = vi;
                if (!update) t[i] = mi / denom;
                else t[i] = (decays ? t[i] * Decay : t[i]) + NegativeStep * mi / denom;
            }
        }

        private void RunBf16(long i, long end)
        {
            ushort* g = (ushort*)G, m = (ushort*)M, v = (ushort*)V, t = (ushort*)Target;
            bool corrected = Corrected, update = UpdateWeights, decays = Decays;
            if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
            {
                // 16 elements per step: vpmovzxwd / vpmovdw convert between bf16 and float32 lanes in one instruction.
                var b1x = Vector512.Create(Beta1); var c1x = Vector512.Create(OneMinusBeta1);
                var b2x = Vector512.Create(Beta2); var c2x = Vector512.Create(OneMinusBeta2);
                var epsx = Vector512.Create(Eps); var sx = Vector512.Create(Sbc2);
                var decayx = Vector512.Create(Decay); var stepx = Vector512.Create(NegativeStep);
                for (; i + 16 <= end; i += 16)
                {
                    var gi = Bf16.Load(g + i, Vector512<float>.Zero);
                    var mi = Bf16.RoundIntermediate(Vector512.FusedMultiplyAdd(c1x, gi, Bf16.RoundIntermediate(Bf16.Load(m + i, Vector512<float>.Zero) * b1x)));
                    var vi = Bf16.RoundIntermediate(Vector512.FusedMultiplyAdd(c2x * gi, gi, Bf16.RoundIntermediate(Bf16.Load(v + i, Vector512<float>.Zero) * b2x)));
                    var root = Bf16.RoundIntermediate(Vector512.Sqrt(vi));
                    var denom = Bf16.RoundIntermediate((corrected ? Bf16.RoundIntermediate(root / sx) : root) + epsx);
                    Bf16.Store(mi, m + i); Bf16.Store(vi, v + i);
                    if (!update) Bf16.Store(mi / denom, t + i);
                    else
                    {
                        var w = Bf16.Load(t + i, Vector512<float>.Zero);
                        if (decays) w = Bf16.RoundIntermediate(w * decayx);
                        Bf16.Store(w + stepx * mi / denom, t + i);
                    }
                }
            }
            var b1 = Vector256.Create(Beta1); var c1 = Vector256.Create(OneMinusBeta1);
            var b2 = Vector256.Create(Beta2); var c2 = Vector256.Create(OneMinusBeta2);
            var eps = Vector256.Create(Eps); var s = Vector256.Create(Sbc2);
            var decay = Vector256.Create(Decay); var step = Vector256.Create(NegativeStep);
            for (; i + 8 <= end; i += 8)
            {
                var gi = Bf16.Load(g + i);
                var mi = Bf16.Round(Vector256.FusedMultiplyAdd(c1, gi, Bf16.Round(Bf16.Load(m + i) * b1)));
                var vi = Bf16.Round(Vector256.FusedMultiplyAdd(c2 * gi, gi, Bf16.Round(Bf16.Load(v + i) * b2)));
                var root = Bf16.Round(Vector256.Sqrt(vi));
                var denom = Bf16.Round((corrected ? Bf16.Round(root / s) : root) + eps);
                Bf16.Store(mi, m + i); Bf16.Store(vi, v + i);
                if (!update) Bf16.Store(mi / denom, t + i);
                else
                {
                    var w = Bf16.Load(t + i);
                    if (decays) w = Bf16.Round(w * decay);
                    Bf16.Store(w + step * mi / denom, t + i);
                }
            }
            for (; i < end; i++)
            {
                var gi = Bf16.ToSingle(g[i]);
                var mi = Bf16.Round(MathF.FusedMultiplyAdd(OneMinusBeta1, gi, Bf16.Round(Bf16.ToSingle(m[i]) * Beta1)));
                var vi = Bf16.Round(MathF.FusedMultiplyAdd(OneMinusBeta2 * gi, gi, Bf16.Round(Bf16.ToSingle(v[i]) * Beta2)));
                var root = Bf16.Round(MathF.Sqrt(vi));
                var denom = Bf16.Round((corrected ? Bf16.Round(root / Sbc2) : root) + Eps);
                m[i] = Bf16.FromSingle(mi); v[i] = Bf16.FromSingle(vi);
                if (!update) t[i] = Bf16.FromSingle(mi / denom);
                else
                {
                    var w = Bf16.ToSingle(t[i]);
                    if (decays) w = Bf16.Round(w * Decay);
                    t[i] = Bf16.FromSingle(w + NegativeStep * mi / denom);
                }
            }
        }
    }

    // ---------------------------------------------------------------- Adafactor

    /// <inheritdoc />
    public void AdafactorStatistics(Tensor gradient, Tensor rows, Tensor cols, in AdafactorScalars scalars)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        if (gradient.dim() < 2) throw new ArgumentException($"gradient must have at least 2 dims (got {gradient.dim()}).", nameof(gradient));
        var dtype = gradient.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"gradient has dtype {dtype}; the CPU Adafactor kernel needs float32 or bfloat16.", nameof(gradient));
        var c = gradient.shape[^1];
        var r = gradient.shape[^2];
        var n = gradient.numel();
        var b = r * c == 0 ? 0 : n / (r * c);
        var bf = dtype == ScalarType.BFloat16;
        var g = bf ? (void*)RawTensor.Pointer<ushort>(gradient, dtype, n, nameof(gradient)) : RawTensor.Pointer<float>(gradient, dtype, n, nameof(gradient));
        var rp = bf ? (void*)RawTensor.Pointer<ushort>(rows, dtype, b * r, nameof(rows)) : RawTensor.Pointer<float>(rows, dtype, b * r, nameof(rows));
        var cp = bf ? (void*)RawTensor.Pointer<ushort>(cols, dtype, b * c, nameof(cols)) : RawTensor.Pointer<float>(cols, dtype, b * c, nameof(cols));
        if (n == 0) return;
        var eps1 = (float)scalars.Eps1;
        var beta2 = (float)scalars.Beta2;
        var oneMinus = (float)(1 - scalars.Beta2);
        for (long batch = 0; batch < b; batch++)
        {
            var offset = batch * r * c;
            var gb = bf ? (void*)((ushort*)g + offset) : (float*)g + offset;
            var (colSums, rowSums) = Reduce(gb, bf, r, c, squarePlus: eps1, wantRows: true);
            try
            {
                for (long i = 0; i < r; i++) Blend(rp, bf, batch * r + i, rowSums[i] / c, beta2, oneMinus);
                for (long j = 0; j < c; j++) Blend(cp, bf, batch * c + j, colSums[j] / r, beta2, oneMinus);
            }
            finally
            {
                ArrayPool<double>.Shared.Return(colSums);
                ArrayPool<double>.Shared.Return(rowSums);
            }
        }
        GC.KeepAlive(gradient); GC.KeepAlive(rows); GC.KeepAlive(cols);
    }

    /// <summary>state ← β·state + (1−β)·mean with the reference's roundings (mean rounded to the state's dtype first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Blend(void* state, bool bf, long index, double mean, float beta, float oneMinus)
    {
        if (bf)
        {
            var p = (ushort*)state + index;
            var meanRounded = Bf16.Round((float)mean);
            var scaled = Bf16.Round(Bf16.ToSingle(*p) * beta);
            *p = Bf16.FromSingle(MathF.FusedMultiplyAdd(oneMinus, meanRounded, scaled));
        }
        else
        {
            var p = (float*)state + index;
            *p = MathF.FusedMultiplyAdd(oneMinus, (float)mean, *p * beta);
        }
    }

    // ---------------------------------------------------------------- ℓ1 norms

    /// <inheritdoc />
    public Tensor L1Norms(Tensor matrix, L1Axis axis)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        if (matrix.dim() != 2) throw new ArgumentException($"matrix must be 2-D (got {matrix.dim()} dims).", nameof(matrix));
        var dtype = matrix.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"matrix has dtype {dtype}; the CPU ℓ1 kernel needs float32 or bfloat16.", nameof(matrix));
        var (r, c) = (matrix.shape[0], matrix.shape[1]);
        var bf = dtype == ScalarType.BFloat16;
        var x = bf ? (void*)RawTensor.Pointer<ushort>(matrix, dtype, r * c, nameof(matrix)) : RawTensor.Pointer<float>(matrix, dtype, r * c, nameof(matrix));
        var length = axis == L1Axis.Columns ? c : r;
        var result = zeros(length, ScalarType.Float32);
        var output = RawTensor.Pointer<float>(result, ScalarType.Float32, length, "result");
        if (r * c == 0) return result;
        var (colSums, rowSums) = Reduce(x, bf, r, c, squarePlus: null, wantRows: axis == L1Axis.Rows);
        try
        {
            var source = axis == L1Axis.Columns ? colSums : rowSums;
            for (long k = 0; k < length; k++) output[k] = (float)source[k];
        }
        finally
        {
            ArrayPool<double>.Shared.Return(colSums);
            ArrayPool<double>.Shared.Return(rowSums);
        }
        GC.KeepAlive(matrix);
        return result;
    }

    // ---------------------------------------------------------------- shared reduction

    /// <summary>
    /// Column sums and row sums (when <paramref name="wantRows"/>, else an unused 1-element array), in float64,
    /// of f(x) over an r×c row-major matrix: f(x) = x² + ε rounded as the reference rounds it (Adafactor), or
    /// |x| (ℓ1). Bands of rows run in parallel; each keeps its own column sums, merged in band order. The arrays
    /// come from <see cref="ArrayPool{T}.Shared"/> (a fresh native block per call is page-faulted in again
    /// whenever the C allocator has returned it in between, see SmmfCpuKernel) and are longer than needed; the
    /// caller returns both.
    /// </summary>
    private static (double[] ColSums, double[] RowSums) Reduce(void* x, bool bf, long r, long c, float? squarePlus, bool wantRows)
    {
        var wanted = (int)Math.Clamp(r * c / ChunkElements, 1, MaxBands);
        var rowsPerBand = (r + wanted - 1) / wanted;
        var bands = (int)((r + rowsPerBand - 1) / rowsPerBand);
        var partialArray = ArrayPool<double>.Shared.Rent(checked((int)(bands * c)));
        var rowArray = ArrayPool<double>.Shared.Rent(checked((int)(wantRows ? r : 1)));
        Array.Clear(partialArray, 0, (int)(bands * c));
        Array.Clear(rowArray, 0, (int)(wantRows ? r : 1));
        try
        {
            fixed (double* partial = partialArray, rowSums = rowArray)
            {
                var job = new ReduceJob { X = x, BFloat16 = bf, Cols = c, Rows = r, RowsPerBand = rowsPerBand, Partial = partial, RowSums = wantRows ? rowSums : null, Square = squarePlus.HasValue, Eps = squarePlus ?? 0 };
                if (bands == 1) job.RunBand(0);
                else KernelThreads.For(bands, band => job.RunBand((int)band));
                SumBands(partial, bands, c);
            }
        }
        catch
        {
            ArrayPool<double>.Shared.Return(partialArray);
            ArrayPool<double>.Shared.Return(rowArray);
            throw;
        }
        return (partialArray, rowArray);
    }

    /// <summary>Columns per parallel block of <see cref="SumBands"/>.</summary>
    private const long SumBlockColumns = 1024;

    /// <summary>Below this many partial sums <see cref="SumBands"/> runs on the calling thread.</summary>
    private const long SumBandsParallelElements = 1 << 16;

    /// <summary>
    /// partial[j] ← Σ_b partial[b·count + j] over the <paramref name="bands"/> rows of per-band column sums, each
    /// column in band order whatever the split: vectorized, and in parallel over blocks of columns (each band's
    /// row read contiguously) when there is enough to merge.
    /// </summary>
    internal static void SumBands(double* partial, int bands, long count)
    {
        var blocks = (count + SumBlockColumns - 1) / SumBlockColumns;
        void SumBlock(long block)
        {
            var j0 = block * SumBlockColumns;
            var j1 = Math.Min(count, j0 + SumBlockColumns);
            for (var b = 1; b < bands; b++)
            {
                var row = partial + b * count;
                var j = j0;
                for (; j + Vector256<double>.Count <= j1; j += Vector256<double>.Count)
                    (Vector256.Load(partial + j) + Vector256.Load(row + j)).Store(partial + j);
                for (; j < j1; j++) partial[j] += row[j];
            }
        }
        if (blocks == 1 || bands * count < SumBandsParallelElements) for (long k = 0; k < blocks; k++) SumBlock(k);
        else KernelThreads.For(blocks, SumBlock);
    }

    private sealed class ReduceJob
    {
        public void* X;
        public bool BFloat16, Square;
        public long Rows, Cols, RowsPerBand;
        public double* Partial, RowSums;
        public float Eps;

        public void RunBand(int band)
        {
            var r0 = band * RowsPerBand;
            var r1 = Math.Min(Rows, r0 + RowsPerBand);
            var cols = Partial + band * Cols;
            var eps = Vector256.Create(Eps);
            for (var i = r0; i < r1; i++)
            {
                var acc = Vector256<double>.Zero;
                long j = 0;
                for (; j + 8 <= Cols; j += 8)
                {
                    var v = BFloat16 ? Bf16.Load((ushort*)X + i * Cols + j) : Vector256.Load((float*)X + i * Cols + j);
                    if (Square)
                    {
                        v = v * v;
                        if (BFloat16) v = Bf16.Round(Bf16.Round(v) + eps);
                        else v += eps;
                    }
                    else
                    {
                        v = Vector256.Abs(v);
                    }
                    var (lo, hi) = Vector256.Widen(v);
                    acc += lo + hi;
                    (Vector256.Load(cols + j) + lo).Store(cols + j);
                    (Vector256.Load(cols + j + 4) + hi).Store(cols + j + 4);
                }
                var sum = Vector256.Sum(acc);
                for (; j < Cols; j++)
                {
                    var x = BFloat16 ? Bf16.ToSingle(((ushort*)X)[i * Cols + j]) : ((float*)X)[i * Cols + j];
                    float f;
                    if (Square)
                    {
                        f = x * x;
                        f = BFloat16 ? Bf16.Round(Bf16.Round(f) + Eps) : f + Eps;
                    }
                    else
                    {
                        f = MathF.Abs(x);
                    }
                    sum += f;
                    cols[j] += f;
                }
                if (RowSums is not null) RowSums[i] = sum;
            }
        }
    }

    // ---------------------------------------------------------------- SMMF

    /// <inheritdoc />
    public void SmmfStep(Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, Tensor target, bool updateWeights)
    {
        if (updateWeights) SmmfCpuKernel.StepParameter(gradient, state, scalars, target);
        else SmmfCpuKernel.StepDirection(gradient, state, scalars, target);
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>
    /// Runs <paramref name="body"/> over [0, n) in ranges whose bounds are multiples of <see cref="ChunkElements"/> (so of 16),
    /// long first and short last (<see cref="KernelThreads.ForRanges"/>), on <see cref="KernelThreads"/> when there are several
    /// (also the bench's STREAM loops: the same threading).
    /// </summary>
    internal static void ForChunks(long n, Action<long, long> body)
    {
        KernelThreads.ForRanges(n, ChunkElements, body);
    }

    /// <summary>bfloat16 as the upper 16 bits of a float32; rounding to nearest even as libtorch does (NaN → 0x7FC0).</summary>
    internal static class Bf16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ushort FromSingle(float value)
        {
            if (float.IsNaN(value)) return 0x7FC0;
            var bits = BitConverter.SingleToUInt32Bits(value);
            return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Round(float value) => ToSingle(FromSingle(value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(ushort* p)
        {
            var (lo, hi) = Vector128.Widen(Vector128.Load(p));
            return (Vector256.Create(lo, hi) << 16).AsSingle();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<uint> RoundedBits(Vector256<float> x)
        {
            var bits = x.AsUInt32();
            var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) & Vector256.Create(0xFFFF0000u);
            var nan = ~Vector256.Equals(x, x).AsUInt32();
            return Vector256.ConditionalSelect(nan, Vector256.Create(0x7FC00000u), rounded);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Round(Vector256<float> x) => RoundedBits(x).AsSingle();

        /// <summary>16 bf16 values as float32 lanes (AVX-512F only; the second argument only picks the overload).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(ushort* p, Vector512<float> _) => (Avx512F.ConvertToVector512UInt32(Vector256.Load(p)) << 16).AsSingle();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<uint> RoundedBits(Vector512<float> x)
        {
            var bits = x.AsUInt32();
            var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) & Vector512.Create(0xFFFF0000u);
            var nan = ~Vector512.Equals(x, x).AsUInt32();
            return Vector512.ConditionalSelect(nan, Vector512.Create(0x7FC00000u), rounded);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Round(Vector512<float> x) => RoundedBits(x).AsSingle();

        /// <summary>
        /// Rounds to bf16 (nearest even) without making NaNs canonical: for intermediates only. A NaN stays a
        /// NaN (arithmetic NaNs and NaNs read from bf16 have zero low 16 bits, so the carry cannot reach the
        /// exponent); its sign and payload are made canonical when the result is stored.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> RoundIntermediate(Vector512<float> x)
        {
            var bits = x.AsUInt32();
            return ((bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) & Vector512.Create(0xFFFF0000u)).AsSingle();
        }

        /// <summary>Rounds 16 float32 lanes to bf16 (nearest even) and stores them (AVX-512F only).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector512<float> x, ushort* p) => Avx512F.ConvertToVector256UInt16(RoundedBits(x) >> 16).Store(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector256<float> x, ushort* p)
        {
            var bits = RoundedBits(x) >> 16;
            Vector128.Narrow(bits.GetLower(), bits.GetUpper()).Store(p);
        }
    }
}
