using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// SMMF's step for one float32 CPU tensor in a single pass over its elements, vectorized (Vector256) and
/// parallel (<see cref="KernelThreads"/>) over bands of rows of the n̂×m̂ view. Per element: decompress M̂ = ±ρ_M,i·γ_M,j and
/// V̂ = ρ_V,i·γ_V,j, update M = β1·M̂ + (1−β1)·G and V = β2·V̂ + (1−β2)·G², take U = M/(√V + ε) (G instead
/// of M without a first moment), write U or update the weight, and accumulate the new row and column sums
/// of |M| and V and the new sign bits. A short second pass over m̂ columns merges the bands' column sums
/// and normalizes them. No full-size temporary is created.
/// </summary>
/// <remarks>
/// Determinism: the bands depend on the shape only (never on the core count) and their column sums are
/// merged in band order, so results are bit-identical from run to run and machine to machine with the
/// same instruction set. Sums are accumulated in float64. Bands start on rows whose first element is a
/// multiple of 8, so every packed sign byte belongs to one band and no two threads write the same byte.
/// </remarks>
internal static unsafe class SmmfCpuKernel
{
    /// <summary>About this many elements per band; tensors smaller than that run on the calling thread.</summary>
    internal const long ElementsPerBand = 1 << 16;

    /// <summary>The most bands (and so scratch column-sum rows) one tensor is split into.</summary>
    internal const int MaxBands = 64;

    /// <summary>
    /// Directions of at least this many bytes are written with non-temporal stores (AVX-512F, quad-row path):
    /// with the gradient read alongside, such a call touches at least 32 MiB, more than a typical last-level
    /// cache keeps, so the stores need not first read each target line into the cache (a third of the
    /// traffic of a read-g, write-U pass). Smaller directions are stored normally and stay cached for the caller.
    /// </summary>
    internal const long StreamingBytes = 16L << 20;

    /// <summary>
    /// The most elements a tensor may have for this kernel (TorchSharp's byte spans stop at 2 GiB): what
    /// <see cref="CpuKernels.MaxElements"/> reports for float32, which the selection checks.
    /// </summary>
    public const long MaxElements = (RawTensor.MaxBytes - 1) / sizeof(float);

    /// <summary>
    /// Updates <paramref name="state"/> with <paramref name="gradient"/> and writes the direction U into
    /// <paramref name="direction"/> (both contiguous float32 CPU tensors of N = n̂·m̂ elements).
    /// </summary>
    /// <exception cref="ArgumentException">A tensor has the wrong device, dtype, size or layout.</exception>
    public static void StepDirection(torch.Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, torch.Tensor direction) =>
        Run(gradient, state, scalars, direction, "direction", updateWeights: false);

    /// <summary>
    /// Updates <paramref name="state"/> with <paramref name="gradient"/> and the weights in place:
    /// W ← W·<see cref="SmmfScalars.DecayFactor"/> − <see cref="SmmfScalars.StepSize"/>·U.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor has the wrong device, dtype, size or layout.</exception>
    public static void StepParameter(torch.Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, torch.Tensor parameter) =>
        Run(gradient, state, scalars, parameter, "parameter", updateWeights: true);

    private static void Run(torch.Tensor gradient, in SmmfFactors state, in SmmfScalars scalars, torch.Tensor target, string targetName, bool updateWeights)
    {
        var rows = state.Rows;
        var cols = state.Cols;
        if (rows < 0 || cols < 1)
            throw new ArgumentException($"the matrix view must have rows >= 0 and cols >= 1 (got {rows}×{cols}).", nameof(state));
        var n = rows * cols;
        var job = new Job
        {
            Rows = rows,
            Cols = cols,
            G = RawTensor.Pointer<float>(gradient, torch.ScalarType.Float32, n, nameof(gradient)),
            Target = RawTensor.Pointer<float>(target, torch.ScalarType.Float32, n, targetName),
            RowV = RawTensor.Pointer<float>(state.VarianceRows, torch.ScalarType.Float32, rows, "variance rows"),
            ColV = RawTensor.Pointer<float>(state.VarianceCols, torch.ScalarType.Float32, cols, "variance cols"),
            HasMomentum = state.HasMomentum,
            UpdateWeights = updateWeights,
            Streaming = !updateWeights && Avx512F.IsSupported && n * sizeof(float) >= StreamingBytes,
            Beta1 = (float)scalars.Beta1,
            OneMinusBeta1 = (float)(1 - scalars.Beta1),
            Beta2 = (float)scalars.Beta2,
            OneMinusBeta2 = (float)(1 - scalars.Beta2),
            Eps = (float)scalars.Eps,
            StepSize = (float)scalars.StepSize,
            DecayFactor = (float)scalars.DecayFactor,
        };
        if (state.HasMomentum)
        {
            if (state.MomentCols is null || state.MomentSigns is null)
                throw new ArgumentException("the first-moment rows, cols and signs must be all present or all null.", nameof(state));
            job.RowM = RawTensor.Pointer<float>(state.MomentRows!, torch.ScalarType.Float32, rows, "moment rows");
            job.ColM = RawTensor.Pointer<float>(state.MomentCols, torch.ScalarType.Float32, cols, "moment cols");
            job.Signs = RawTensor.Pointer<byte>(state.MomentSigns, torch.ScalarType.Byte, (n + 7) / 8, "moment signs");
        }
        if (n == 0) return;

        // Bands of whole rows; each starts at a flat index that is a multiple of 8 (a sign-byte boundary).
        var rowQuantum = 8 / (long)GreatestCommonDivisor(cols, 8);
        var wanted = (int)Math.Clamp((n + ElementsPerBand - 1) / ElementsPerBand, 1, MaxBands);
        var rowsPerBand = (rows + wanted - 1) / wanted;
        rowsPerBand = (rowsPerBand + rowQuantum - 1) / rowQuantum * rowQuantum;
        job.RowsPerBand = rowsPerBand;
        var bands = (int)((rows + rowsPerBand - 1) / rowsPerBand);

        // The bands' column sums (up to 64 × m̂ × 16 bytes: 4 MiB at 4096×4096), from a pool. A fresh native
        // block per call is page-faulted in again whenever the C allocator has handed the memory back to the
        // system in between, which it did after the large frees of other work in some processes (measured:
        // SMMF's step at 4096×4096 took 5.7–6.7 ms instead of 3.6–4.0 ms in about half of the benchmark runs).
        var sums = state.HasMomentum ? 2 : 1;
        var scratch = ArrayPool<double>.Shared.Rent(checked((int)(bands * cols * sums)));
        try
        {
            fixed (double* partial = scratch)
            {
                job.PartialV = partial;
                if (state.HasMomentum) job.PartialM = partial + bands * cols;
                if (bands == 1) job.RunBand(0);
                else KernelThreads.For(bands, band => job.RunBand((int)band));
                MergeColumns(job.PartialV, job.ColV, bands, cols);
                if (state.HasMomentum) MergeColumns(job.PartialM, job.ColM, bands, cols);
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(scratch);
        }
        GC.KeepAlive(gradient);
        GC.KeepAlive(target);
    }

    /// <summary>
    /// γ_j = Σ_bands partial_j / Σ_j Σ_bands partial_j (raw sums when the total is 0): each column's sum in band
    /// order (<see cref="CpuKernels.SumBands"/>), the total in column order.
    /// </summary>
    private static void MergeColumns(double* partial, float* cols, int bands, long count)
    {
        CpuKernels.SumBands(partial, bands, count);
        double total = 0;
        for (long j = 0; j < count; j++) total += partial[j];
        var divisor = total == 0 ? 1.0 : total;
        for (long j = 0; j < count; j++) cols[j] = (float)(partial[j] / divisor);
    }

    private static int GreatestCommonDivisor(long a, int b)
    {
        var x = (int)(a % b);
        while (x != 0) (b, x) = (x, b % x);
        return b;
    }

    /// <summary>One kernel call: pointers and scalars shared by the bands.</summary>
    private sealed class Job
    {
        public long Rows, Cols, RowsPerBand;
        public float* G, Target, RowM, ColM, RowV, ColV;
        public byte* Signs;
        public double* PartialM, PartialV;
        public bool HasMomentum, UpdateWeights, Streaming;
        public float Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Eps, StepSize, DecayFactor;

        private static readonly Vector256<int> BitWeights = Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);
        private static readonly Vector512<int> BitWeights16 = Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);

        public void RunBand(int band)
        {
            var r0 = band * RowsPerBand;
            var r1 = Math.Min(Rows, r0 + RowsPerBand);
            var cols = Cols;
            var partialV = PartialV + band * cols;
            var partialM = HasMomentum ? PartialM + band * cols : null;
            // Locals, so that the JIT keeps them in registers across the inner loops.
            float* g0 = G, target = Target, colM = ColM, colV = ColV;
            var signs = Signs;
            bool hasMomentum = HasMomentum, updateWeights = UpdateWeights;
            // Statics copied to locals: code compiled before the class is initialized would read them in the loops.
            Vector256<int> bitWeights = BitWeights;
            Vector512<int> bitWeights16 = BitWeights16;
            NativeMemory.Clear(partialV, (nuint)(cols * sizeof(double)));
            if (HasMomentum) NativeMemory.Clear(partialM, (nuint)(cols * sizeof(double)));

            var first = r0;
            if (Vector512.IsHardwareAccelerated && cols % Vector512<float>.Count == 0)
            {
                for (; first + 4 <= r1; first += 4) RowQuad(first, partialM, partialV);
                if (Streaming) Sse.StoreFence(); // non-temporal stores are weakly ordered: publish them before the band ends
            }

            // New sign bits are collected in `bits` and written a whole byte at a time, always behind the
            // element being read: a byte is written only once all its elements have read their old bit.
            // (Rows after the quads start on a byte boundary: the quads need cols % 16 == 0.)
            var output = HasMomentum ? Signs + (first * cols >> 3) : null;
            ulong bits = 0;
            var bitCount = 0;
            var vectorized = Vector256.IsHardwareAccelerated && cols >= Vector256<float>.Count;
            var beta1 = Vector256.Create(Beta1);
            var oneMinusBeta1 = Vector256.Create(OneMinusBeta1);
            var beta2 = Vector256.Create(Beta2);
            var oneMinusBeta2 = Vector256.Create(OneMinusBeta2);
            var eps = Vector256.Create(Eps);
            var negativeStep = Vector256.Create(-StepSize);
            var decay = Vector256.Create(DecayFactor);
            var signBit = Vector256.Create(-0.0f);
            var beta1x = Vector512.Create(Beta1);
            var oneMinusBeta1x = Vector512.Create(OneMinusBeta1);
            var beta2x = Vector512.Create(Beta2);
            var oneMinusBeta2x = Vector512.Create(OneMinusBeta2);
            var epsx = Vector512.Create(Eps);
            var negativeStepx = Vector512.Create(-StepSize);
            var decayx = Vector512.Create(DecayFactor);
            var signBitx = Vector512.Create(-0.0f);
            for (var i = first; i < r1; i++)
            {
                var rowStart = i * cols;
                var rowM = hasMomentum ? RowM[i] : 0f;
                var rowV = RowV[i];
                double sumM = 0, sumV = 0;
                long j = 0;
                if (vectorized)
                {
                    var accM0 = Vector256<double>.Zero;
                    var accM1 = Vector256<double>.Zero;
                    var accV0 = Vector256<double>.Zero;
                    var accV1 = Vector256<double>.Zero;
                    var vRowM = Vector256.Create(rowM);
                    var vRowV = Vector256.Create(rowV);
                    if (Vector512.IsHardwareAccelerated)
                    {
                        var accM = Vector512<double>.Zero;
                        var accV = Vector512<double>.Zero;
                        var rowM16 = Vector512.Create(rowM);
                        var rowV16 = Vector512.Create(rowV);
                        for (; j <= cols - Vector512<float>.Count; j += Vector512<float>.Count)
                        {
                            var e = rowStart + j;
                            var g = Vector512.Load(g0 + e);
                            var v = Vector512.FusedMultiplyAdd(oneMinusBeta2x * g, g, rowV16 * Vector512.Load(colV + j) * beta2x);
                            var numerator = g;
                            if (hasMomentum)
                            {
                                var old = ReadSixteenBits(signs, e);
                                var negative = Vector512.Equals(Vector512.Create((int)old) & bitWeights16, Vector512<int>.Zero).AsSingle() & signBitx;
                                var m = Vector512.FusedMultiplyAdd(g, oneMinusBeta1x, ((rowM16 * Vector512.Load(colM + j)) ^ negative) * beta1x);
                                numerator = m;
                                bits |= Vector512.GreaterThan(m, Vector512<float>.Zero).ExtractMostSignificantBits() << bitCount;
                                bitCount += 16;
                                while (bitCount >= 8)
                                {
                                    *output++ = (byte)bits;
                                    bits >>= 8;
                                    bitCount -= 8;
                                }
                                var (absLow, absHigh) = Vector512.Widen(Vector512.Abs(m));
                                accM += absLow + absHigh;
                                Vector512.Store(Vector512.Load(partialM + j) + absLow, partialM + j);
                                Vector512.Store(Vector512.Load(partialM + j + 8) + absHigh, partialM + j + 8);
                            }
                            var u = numerator / (Vector512.Sqrt(v) + epsx);
                            if (updateWeights) Vector512.Store(Vector512.FusedMultiplyAdd(u, negativeStepx, Vector512.Load(target + e) * decayx), target + e);
                            else Vector512.Store(u, target + e);
                            var (vLow, vHigh) = Vector512.Widen(v);
                            accV += vLow + vHigh;
                            Vector512.Store(Vector512.Load(partialV + j) + vLow, partialV + j);
                            Vector512.Store(Vector512.Load(partialV + j + 8) + vHigh, partialV + j + 8);
                        }
                        accM0 += accM.GetLower();
                        accM1 += accM.GetUpper();
                        accV0 += accV.GetLower();
                        accV1 += accV.GetUpper();
                    }
                    for (; j <= cols - Vector256<float>.Count; j += Vector256<float>.Count)
                    {
                        var e = rowStart + j;
                        var g = Vector256.Load(g0 + e);
                        var v = Vector256.FusedMultiplyAdd(oneMinusBeta2 * g, g, vRowV * Vector256.Load(colV + j) * beta2);
                        var numerator = g;
                        if (hasMomentum)
                        {
                            var old = ReadEightBits(signs, e);
                            // Where the stored bit is 0 (M ≤ 0), flip the sign of ρ·γ.
                            var negative = Vector256.Equals(Vector256.Create((int)old) & bitWeights, Vector256<int>.Zero).AsSingle() & signBit;
                            var m = Vector256.FusedMultiplyAdd(g, oneMinusBeta1, ((vRowM * Vector256.Load(colM + j)) ^ negative) * beta1);
                            numerator = m;
                            bits |= (ulong)Vector256.GreaterThan(m, Vector256<float>.Zero).ExtractMostSignificantBits() << bitCount;
                            bitCount += 8;
                            while (bitCount >= 8)
                            {
                                *output++ = (byte)bits;
                                bits >>= 8;
                                bitCount -= 8;
                            }
                            var (absLow, absHigh) = Vector256.Widen(Vector256.Abs(m));
                            accM0 += absLow;
                            accM1 += absHigh;
                            Vector256.Store(Vector256.Load(partialM + j) + absLow, partialM + j);
                            Vector256.Store(Vector256.Load(partialM + j + 4) + absHigh, partialM + j + 4);
                        }
                        var u = numerator / (Vector256.Sqrt(v) + eps);
                        if (updateWeights) Vector256.Store(Vector256.FusedMultiplyAdd(u, negativeStep, Vector256.Load(target + e) * decay), target + e);
                        else Vector256.Store(u, target + e);
                        var (vLow, vHigh) = Vector256.Widen(v);
                        accV0 += vLow;
                        accV1 += vHigh;
                        Vector256.Store(Vector256.Load(partialV + j) + vLow, partialV + j);
                        Vector256.Store(Vector256.Load(partialV + j + 4) + vHigh, partialV + j + 4);
                    }
                    sumM = Vector256.Sum(accM0 + accM1);
                    sumV = Vector256.Sum(accV0 + accV1);
                }
                for (; j < cols; j++)
                {
                    var e = rowStart + j;
                    var g = g0[e];
                    var v = MathF.FusedMultiplyAdd(OneMinusBeta2 * g, g, rowV * colV[j] * Beta2);
                    var numerator = g;
                    if (hasMomentum)
                    {
                        var mHat = rowM * colM[j];
                        if (((signs[e >> 3] >> (int)(e & 7)) & 1) == 0) mHat = -mHat;
                        var m = MathF.FusedMultiplyAdd(g, OneMinusBeta1, mHat * Beta1);
                        numerator = m;
                        bits |= (m > 0 ? 1UL : 0UL) << bitCount;
                        if (++bitCount == 8)
                        {
                            *output++ = (byte)bits;
                            bits = 0;
                            bitCount = 0;
                        }
                        var abs = MathF.Abs(m);
                        sumM += abs;
                        partialM[j] += abs;
                    }
                    var u = numerator / (MathF.Sqrt(v) + Eps);
                    if (updateWeights) target[e] = MathF.FusedMultiplyAdd(u, -StepSize, target[e] * DecayFactor);
                    else target[e] = u;
                    sumV += v;
                    partialV[j] += v;
                }
                if (hasMomentum) RowM[i] = (float)sumM;
                RowV[i] = (float)sumV;
            }
            // Only the last band can end inside a byte; its padding bits are 0.
            if (hasMomentum && bitCount > 0) *output = (byte)bits;
        }

        /// <summary>
        /// Rows i … i+3 side by side, 16 columns at a time (Vector512, cols % 16 == 0, so every row starts on a
        /// sign-byte boundary and each 16 elements own two whole sign bytes). The four rows' contributions to a
        /// column are added together before the band's float64 column sums are loaded and stored, which takes
        /// three quarters of that load/store traffic (the kernel's main cost besides the arithmetic) away.
        /// </summary>
        private void RowQuad(long i, double* partialM, double* partialV)
        {
            // One compiled loop per mode, its flags constants: with the branches in the loop, code optimized
            // without a profile (and so any run's first, or a profile from another mode) took twice as long.
            var streaming = Streaming && ((nuint)Target & 63) == 0;
            if (HasMomentum) RowQuad<Yes>(i, partialM, partialV, streaming);
            else RowQuad<No>(i, partialM, partialV, streaming);
        }

        private void RowQuad<TMomentum>(long i, double* partialM, double* partialV, bool streaming) where TMomentum : struct, IFlag
        {
            if (UpdateWeights) RowQuad<TMomentum, Yes, No>(i, partialM, partialV);
            else if (streaming) RowQuad<TMomentum, No, Yes>(i, partialM, partialV);
            else RowQuad<TMomentum, No, No>(i, partialM, partialV);
        }

        private void RowQuad<TMomentum, TWeights, TStreaming>(long i, double* partialM, double* partialV)
            where TMomentum : struct, IFlag where TWeights : struct, IFlag where TStreaming : struct, IFlag
        {
            var cols = Cols;
            float* colM = ColM, colV = ColV;
            float* g = G + i * cols, t = Target + i * cols;
            var s = TMomentum.Value ? Signs + (i * cols >> 3) : null;
            var rowBytes = cols >> 3;
            var c = new Constants(Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Eps, -StepSize, DecayFactor, BitWeights16);
            Vector512<float> rm0 = default, rm1 = default, rm2 = default, rm3 = default;
            if (TMomentum.Value) (rm0, rm1, rm2, rm3) = (Vector512.Create(RowM[i]), Vector512.Create(RowM[i + 1]), Vector512.Create(RowM[i + 2]), Vector512.Create(RowM[i + 3]));
            var (rv0, rv1, rv2, rv3) = (Vector512.Create(RowV[i]), Vector512.Create(RowV[i + 1]), Vector512.Create(RowV[i + 2]), Vector512.Create(RowV[i + 3]));
            Vector512<double> am0 = default, am1 = default, am2 = default, am3 = default;
            Vector512<double> av0 = default, av1 = default, av2 = default, av3 = default;
            for (long j = 0; j < cols; j += 16)
            {
                var cm = TMomentum.Value ? Vector512.Load(colM + j) : default;
                var cv = Vector512.Load(colV + j);
                Vector512<double> mLow = default, mHigh = default, vLow = default, vHigh = default;
                var b = j >> 3;
                Element16<TMomentum, TWeights, TStreaming>(g + j, t + j, s + b, rm0, rv0, cm, cv, c, ref am0, ref av0, ref mLow, ref mHigh, ref vLow, ref vHigh);
                Element16<TMomentum, TWeights, TStreaming>(g + cols + j, t + cols + j, s + rowBytes + b, rm1, rv1, cm, cv, c, ref am1, ref av1, ref mLow, ref mHigh, ref vLow, ref vHigh);
                Element16<TMomentum, TWeights, TStreaming>(g + 2 * cols + j, t + 2 * cols + j, s + 2 * rowBytes + b, rm2, rv2, cm, cv, c, ref am2, ref av2, ref mLow, ref mHigh, ref vLow, ref vHigh);
                Element16<TMomentum, TWeights, TStreaming>(g + 3 * cols + j, t + 3 * cols + j, s + 3 * rowBytes + b, rm3, rv3, cm, cv, c, ref am3, ref av3, ref mLow, ref mHigh, ref vLow, ref vHigh);
                if (TMomentum.Value)
                {
                    Vector512.Store(Vector512.Load(partialM + j) + mLow, partialM + j);
                    Vector512.Store(Vector512.Load(partialM + j + 8) + mHigh, partialM + j + 8);
                }
                Vector512.Store(Vector512.Load(partialV + j) + vLow, partialV + j);
                Vector512.Store(Vector512.Load(partialV + j + 8) + vHigh, partialV + j + 8);
            }
            if (TMomentum.Value)
            {
                RowM[i] = (float)Vector512.Sum(am0); RowM[i + 1] = (float)Vector512.Sum(am1);
                RowM[i + 2] = (float)Vector512.Sum(am2); RowM[i + 3] = (float)Vector512.Sum(am3);
            }
            RowV[i] = (float)Vector512.Sum(av0); RowV[i + 1] = (float)Vector512.Sum(av1);
            RowV[i + 2] = (float)Vector512.Sum(av2); RowV[i + 3] = (float)Vector512.Sum(av3);
        }

        /// <summary>The step's scalars as Vector512 lanes.</summary>
        private readonly struct Constants(float beta1, float oneMinusBeta1, float beta2, float oneMinusBeta2, float eps, float negativeStep, float decay, Vector512<int> bitWeights)
        {
            public readonly Vector512<float> Beta1 = Vector512.Create(beta1), OneMinusBeta1 = Vector512.Create(oneMinusBeta1),
                Beta2 = Vector512.Create(beta2), OneMinusBeta2 = Vector512.Create(oneMinusBeta2), Eps = Vector512.Create(eps),
                NegativeStep = Vector512.Create(negativeStep), Decay = Vector512.Create(decay);

            /// <summary>Bit k in lane k, to test the 16 stored sign bits (a local copy: no static access in the loop).</summary>
            public readonly Vector512<int> BitWeights = bitWeights;
        }

        /// <summary>
        /// 16 elements of one row (the same arithmetic as the row loops): the target, the two sign bytes at
        /// <paramref name="s"/>, the row's float64 sums, and the elements' float64 |M| and V added to the
        /// column accumulators.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Element16<TMomentum, TWeights, TStreaming>(float* g, float* t, byte* s, Vector512<float> rowM, Vector512<float> rowV, Vector512<float> colM, Vector512<float> colV,
            in Constants c, ref Vector512<double> rowSumM, ref Vector512<double> rowSumV,
            ref Vector512<double> mLow, ref Vector512<double> mHigh, ref Vector512<double> vLow, ref Vector512<double> vHigh)
            where TMomentum : struct, IFlag where TWeights : struct, IFlag where TStreaming : struct, IFlag
        {
            var gi = Vector512.Load(g);
            var v = Vector512.FusedMultiplyAdd(c.OneMinusBeta2 * gi, gi, rowV * colV * c.Beta2);
            var numerator = gi;
            if (TMomentum.Value)
            {
                var old = *(ushort*)s;
                // Where the stored bit is 0 (M ≤ 0), flip the sign of ρ·γ.
                var negative = Vector512.Equals(Vector512.Create((int)old) & c.BitWeights, Vector512<int>.Zero).AsSingle() & Vector512.Create(-0.0f);
                var m = Vector512.FusedMultiplyAdd(gi, c.OneMinusBeta1, ((rowM * colM) ^ negative) * c.Beta1);
                numerator = m;
                *(ushort*)s = (ushort)Vector512.GreaterThan(m, Vector512<float>.Zero).ExtractMostSignificantBits();
                var (low, high) = Vector512.Widen(Vector512.Abs(m));
                rowSumM += low + high;
                mLow += low;
                mHigh += high;
            }
            var u = numerator / (Vector512.Sqrt(v) + c.Eps);
            if (TWeights.Value) Vector512.Store(Vector512.FusedMultiplyAdd(u, c.NegativeStep, Vector512.Load(t) * c.Decay), t);
            else if (TStreaming.Value) Avx512F.StoreAlignedNonTemporal(t, u);
            else Vector512.Store(u, t);
            var (vl, vh) = Vector512.Widen(v);
            rowSumV += vl + vh;
            vLow += vl;
            vHigh += vh;
        }

        /// <summary>The stored sign bits of elements e … e+15 (all in this band), as the low 16 bits.</summary>
        private static uint ReadSixteenBits(byte* signs, long e)
        {
            var at = signs + (e >> 3);
            var shift = (int)(e & 7);
            if (shift == 0) return (uint)(at[0] | (at[1] << 8));
            return (uint)((at[0] | (at[1] << 8) | (at[2] << 16)) >> shift) & 0xFFFF;
        }

        /// <summary>The stored sign bits of elements e … e+7 (all in this band), as the low 8 bits.</summary>
        private static uint ReadEightBits(byte* signs, long e)
        {
            var at = signs + (e >> 3);
            var shift = (int)(e & 7);
            if (shift == 0) return *at;
            return (uint)((at[0] | (at[1] << 8)) >> shift) & 0xFF;
        }
    }
}
