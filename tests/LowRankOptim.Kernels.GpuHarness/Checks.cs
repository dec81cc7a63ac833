
namespace LowRankOptim.Kernels.GpuHarness;

/// <summary>One checked case: the largest difference between GPU and CPU reference over every output and state element.</summary>
internal sealed record Check(string Kernel, string Case, long Elements, double MaxAbsError, long MaxUlp, long AllowedUlp)
{
    public bool Passed => MaxUlp <= AllowedUlp;
}

/// <summary>A cuMemAlloc buffer, freed on dispose.</summary>
internal sealed class DeviceBuffer : IDisposable
{
    private DeviceBuffer(ulong pointer) => Pointer = pointer;

    public ulong Pointer { get; }

    public IntPtr Address => (IntPtr)(long)Pointer;

    public static DeviceBuffer Of<T>(T[] values) where T : unmanaged
    {
        var buffer = Zeroed<T>(values.Length);
        CudaDriver.CopyToDevice<T>(buffer.Pointer, values);
        return buffer;
    }

    public static unsafe DeviceBuffer Zeroed<T>(long count) where T : unmanaged
    {
        var buffer = new DeviceBuffer(CudaDriver.Allocate(count * sizeof(T)));
        CudaDriver.CopyToDevice<T>(buffer.Pointer, new T[count]);
        return buffer;
    }

    public T[] Read<T>(long count) where T : unmanaged
    {
        var values = new T[count];
        CudaDriver.CopyToHost<T>(values, Pointer);
        return values;
    }

    public void Dispose() => CudaDriver.Free(Pointer);
}

/// <summary>
/// The checks. Each CPU reference below is the kernel's arithmetic written out in plain C# float/double
/// operations (IEEE single precision, no contraction; FMA only where the kernel has __fmaf_rn), with the
/// bfloat16 rounding (nearest even) where the kernel rounds. The sources are compiled with --fmad=false, so
/// element-wise results are expected to be identical (0 ulp; 1 ulp allowed); reductions sum in double in a
/// different order (a tree on the GPU), so their float or bfloat16 results may differ in the last place (1 ulp;
/// 2 for SMMF's column factors, a quotient of two such sums).
/// </summary>
internal static class Checks
{
    private static readonly long[] Sizes = [1, 7, 64, 4097, 1 << 20];

    public static IEnumerable<Check> Adam(int device)
    {
        // 2^24 + 5 elements: more than 65535 blocks of 256 threads, so the grid-stride loop runs twice.
        foreach (var update in new[] { false, true })
            foreach (var bf16 in new[] { false, true })
                foreach (var n in bf16 ? Sizes : [.. Sizes, (1L << 24) + 5])
                    foreach (var corrected in new[] { true, false })
                    {
                        var scalars = new AdamScalars(0.9, 0.999, 1e-8, corrected ? Math.Sqrt(1 - Math.Pow(0.999, 3)) : 1.0,
                            StepSize: 1e-3, DecayFactor: corrected ? 1 - 1e-3 * 0.01 : 1.0);
                        long worstUlp = 0;
                        double worstAbs = 0;
                        foreach (var seed in new[] { 1, 2 })
                        {
                            var random = new Random(seed * 1000 + (int)(n % 997));
                            var g = Normal(random, n, 1.0f);
                            var m = Normal(random, n, 0.1f);
                            var v = Normal(random, n, 0.1f).Select(x => x * x).ToArray();
                            var w = Normal(random, n, 1.0f);
                            var (ulp, abs) = bf16 ? AdamBf16(device, g, m, v, w, scalars, update) : AdamF32(device, g, m, v, w, scalars, update);
                            worstUlp = Math.Max(worstUlp, ulp);
                            worstAbs = Math.Max(worstAbs, abs);
                        }
                        yield return new Check($"adam_{(update ? "update" : "direction")}_{(bf16 ? "bf16" : "f32")}",
                            $"{(corrected ? "ε after bias correction, decay" : "ε on √v, no decay")}, 2 steps, seeds 1–2 (m, v, {(update ? "w" : "d")})", n, worstAbs, worstUlp, 1);
                    }
    }

    /// <summary>Two steps of adam_direction_f32 (target: the direction) or adam_update_f32 (target: the weights w).</summary>
    private static (long Ulp, double Abs) AdamF32(int device, float[] g, float[] m, float[] v, float[] w, AdamScalars s, bool update)
    {
        var n = g.LongLength;
        using var dg = DeviceBuffer.Of(g);
        using var dm = DeviceBuffer.Of(m);
        using var dv = DeviceBuffer.Of(v);
        using var dt = update ? DeviceBuffer.Of(w) : DeviceBuffer.Zeroed<float>(n);
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        float decay = (float)s.DecayFactor, negativeStep = (float)-s.StepSize;
        var corrected = s.SqrtBiasCorrection2 != 1.0;
        var (rm, rv, rt) = ((float[])m.Clone(), (float[])v.Clone(), update ? (float[])w.Clone() : new float[n]);
        for (var step = 0; step < 2; step++)
        {
            if (update) KernelLaunches.AdamUpdate(device, false, dg.Address, dm.Address, dv.Address, dt.Address, n, s);
            else KernelLaunches.AdamDirection(device, false, dg.Address, dm.Address, dv.Address, dt.Address, n, s);
            for (long i = 0; i < n; i++)
            {
                var gi = g[i];
                var mi = MathF.FusedMultiplyAdd(c1, gi, rm[i] * b1);
                var vi = MathF.FusedMultiplyAdd(c2 * gi, gi, rv[i] * b2);
                var root = MathF.Sqrt(vi);
                var denom = (corrected ? root / sbc2 : root) + eps;
                rm[i] = mi; rv[i] = vi;
                rt[i] = update ? (s.DecayFactor != 1 ? rt[i] * decay : rt[i]) + negativeStep * mi / denom : mi / denom;
            }
        }
        CudaDriver.Synchronize();
        var a = Compare.F32(dm.Read<float>(n), rm);
        var b = Compare.F32(dv.Read<float>(n), rv);
        var c = Compare.F32(dt.Read<float>(n), rt);
        return (Math.Max(a.Ulp, Math.Max(b.Ulp, c.Ulp)), Math.Max(a.Abs, Math.Max(b.Abs, c.Abs)));
    }

    /// <summary>The bfloat16 twin of <see cref="AdamF32"/>, rounding where adam.cu rounds (its scalars are not rounded to bf16).</summary>
    private static (long Ulp, double Abs) AdamBf16(int device, float[] g32, float[] m32, float[] v32, float[] w32, AdamScalars s, bool update)
    {
        var n = g32.LongLength;
        var g = g32.Select(Bf16.FromSingle).ToArray();
        var m = m32.Select(Bf16.FromSingle).ToArray();
        var v = v32.Select(Bf16.FromSingle).ToArray();
        var w = w32.Select(Bf16.FromSingle).ToArray();
        using var dg = DeviceBuffer.Of(g);
        using var dm = DeviceBuffer.Of(m);
        using var dv = DeviceBuffer.Of(v);
        using var dt = update ? DeviceBuffer.Of(w) : DeviceBuffer.Zeroed<ushort>(n);
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        float decay = (float)s.DecayFactor, negativeStep = (float)-s.StepSize;
        var corrected = s.SqrtBiasCorrection2 != 1.0;
        var (rm, rv, rt) = ((ushort[])m.Clone(), (ushort[])v.Clone(), update ? (ushort[])w.Clone() : new ushort[n]);
        for (var step = 0; step < 2; step++)
        {
            if (update) KernelLaunches.AdamUpdate(device, true, dg.Address, dm.Address, dv.Address, dt.Address, n, s);
            else KernelLaunches.AdamDirection(device, true, dg.Address, dm.Address, dv.Address, dt.Address, n, s);
            for (long i = 0; i < n; i++)
            {
                var gi = Bf16.ToSingle(g[i]);
                var mi = Bf16.Round(MathF.FusedMultiplyAdd(c1, gi, Bf16.Round(Bf16.ToSingle(rm[i]) * b1)));
                var vi = Bf16.Round(MathF.FusedMultiplyAdd(c2 * gi, gi, Bf16.Round(Bf16.ToSingle(rv[i]) * b2)));
                var root = Bf16.Round(MathF.Sqrt(vi));
                var denom = Bf16.Round((corrected ? Bf16.Round(root / sbc2) : root) + eps);
                rm[i] = Bf16.FromSingle(mi); rv[i] = Bf16.FromSingle(vi);
                if (!update) rt[i] = Bf16.FromSingle(mi / denom);
                else
                {
                    var wi = Bf16.ToSingle(rt[i]);
                    if (s.DecayFactor != 1) wi = Bf16.Round(wi * decay);
                    rt[i] = Bf16.FromSingle(wi + negativeStep * mi / denom);
                }
            }
        }
        CudaDriver.Synchronize();
        var a = Compare.Bf16(dm.Read<ushort>(n), rm);
        var b = Compare.Bf16(dv.Read<ushort>(n), rv);
        var c = Compare.Bf16(dt.Read<ushort>(n), rt);
        return (Math.Max(a.Ulp, Math.Max(b.Ulp, c.Ulp)), Math.Max(a.Abs, Math.Max(b.Abs, c.Abs)));
    }

    /// <summary>(batches, rows, cols): tiny, odd, a row count above the 65535-block grid cap, batched.</summary>
    private static readonly (long B, long R, long C)[] Shapes = [(1, 1, 1), (1, 7, 3), (1, 64, 65), (1, 4097, 7), (1, 70_000, 3), (3, 33, 100), (1, 1024, 1024)];

    public static IEnumerable<Check> Reductions(int device)
    {
        foreach (var bf16 in new[] { false, true })
            foreach (var mode in new[] { 0, 1 })
                foreach (var (b, r, c) in Shapes)
                {
                    var random = new Random((int)(b * 7 + r * 31 + c));
                    var n = b * r * c;
                    var x32 = Normal(random, n, 1.0f);
                    var type = bf16 ? "bf16" : "f32";
                    var what = mode == 0 ? "ℓ1 norms" : "Adafactor blend";
                    var (rowUlp, rowAbs) = Reduction(device, rows: true, bf16, mode, b, r, c, x32, random);
                    yield return new Check("row_reduce", $"{type} {what}, {b}×{r}×{c}", n, rowAbs, rowUlp, 1);
                    var (colUlp, colAbs) = Reduction(device, rows: false, bf16, mode, b, r, c, x32, random);
                    yield return new Check("col_reduce", $"{type} {what}, {b}×{r}×{c}", n, colAbs, colUlp, 1);
                }
    }

    /// <summary>
    /// One launch of row_reduce (over b·r rows of c) or col_reduce (over b·c columns of r) and its CPU
    /// reference. Mode 0 writes float32 ℓ1 norms; mode 1 blends the means of x² + ε1 into state of x's dtype.
    /// </summary>
    private static (long Ulp, double Abs) Reduction(int device, bool rows, bool bf16, int mode, long b, long r, long c, float[] x32, Random random)
    {
        const float eps = 1e-3f, beta = 0.75f, oneMinus = 0.25f;
        var outputs = rows ? b * r : b * c;
        var inner = rows ? c : r;
        var sums = new double[outputs];
        for (long k = 0; k < outputs; k++)
        {
            double acc = 0;
            for (long t = 0; t < inner; t++)
            {
                var index = rows ? k * c + t : (k / c) * r * c + t * c + k % c;
                acc += Transform(x32, bf16, index, mode, eps);
            }
            sums[k] = acc;
        }
        var state32 = Normal(random, outputs, 1.0f).Select(MathF.Abs).ToArray();
        if (bf16)
        {
            var x = x32.Select(Bf16.FromSingle).ToArray();
            using var dx = DeviceBuffer.Of(x);
            if (mode == 0)
            {
                using var dout = DeviceBuffer.Zeroed<float>(outputs);
                Launch(device, rows, dx, dout, b, r, c, mode, true, eps, beta, oneMinus);
                CudaDriver.Synchronize();
                return Compare.F32(dout.Read<float>(outputs), sums.Select(s => (float)s).ToArray());
            }
            var state = state32.Select(Bf16.FromSingle).ToArray();
            using var dstate = DeviceBuffer.Of(state);
            Launch(device, rows, dx, dstate, b, r, c, mode, true, eps, beta, oneMinus);
            var expected = new ushort[outputs];
            for (long k = 0; k < outputs; k++)
            {
                var meanRounded = Bf16.Round((float)(sums[k] / inner));
                var scaled = Bf16.Round(Bf16.ToSingle(state[k]) * beta);
                expected[k] = Bf16.FromSingle(MathF.FusedMultiplyAdd(oneMinus, meanRounded, scaled));
            }
            CudaDriver.Synchronize();
            return Compare.Bf16(dstate.Read<ushort>(outputs), expected);
        }
        else
        {
            using var dx = DeviceBuffer.Of(x32);
            if (mode == 0)
            {
                using var dout = DeviceBuffer.Zeroed<float>(outputs);
                Launch(device, rows, dx, dout, b, r, c, mode, false, eps, beta, oneMinus);
                CudaDriver.Synchronize();
                return Compare.F32(dout.Read<float>(outputs), sums.Select(s => (float)s).ToArray());
            }
            using var dstate = DeviceBuffer.Of(state32);
            Launch(device, rows, dx, dstate, b, r, c, mode, false, eps, beta, oneMinus);
            var expected = new float[outputs];
            for (long k = 0; k < outputs; k++) expected[k] = MathF.FusedMultiplyAdd(oneMinus, (float)(sums[k] / inner), state32[k] * beta);
            CudaDriver.Synchronize();
            return Compare.F32(dstate.Read<float>(outputs), expected);
        }
    }

    private static void Launch(int device, bool rows, DeviceBuffer x, DeviceBuffer output, long b, long r, long c, int mode, bool bf16, float eps, float beta, float oneMinus)
    {
        if (rows) KernelLaunches.RowReduce(device, x.Address, output.Address, b * r, c, mode, bf16, eps, beta, oneMinus);
        else KernelLaunches.ColReduce(device, x.Address, output.Address, b, r, c, mode, bf16, eps, beta, oneMinus);
    }

    /// <summary>|x| (mode 0) or x² + ε1 rounded where the kernel rounds (mode 1), of x as the kernel reads it.</summary>
    private static double Transform(float[] x32, bool bf16, long index, int mode, float eps)
    {
        var x = bf16 ? Bf16.Round(x32[index]) : x32[index];
        if (mode == 0) return MathF.Abs(x);
        return bf16 ? Bf16.Round(Bf16.Round(x * x) + eps) : x * x + eps;
    }

    /// <summary>
    /// Views (rows×cols): one element, odd column counts that are not multiples of 8 (sign bytes straddle
    /// rows), fewer columns than one block of 256 and several column blocks with few rows, a partial last
    /// column block, several bands (up to the 64-band cap) and a partial last band.
    /// </summary>
    private static readonly (long R, long C)[] SmmfShapes = [(1, 1), (7, 13), (33, 31), (3, 1000), (1000, 3), (64, 64), (1024, 1000), (4096, 4097)];

    public static IEnumerable<Check> Smmf(int device)
    {
        foreach (var (r, c) in SmmfShapes)
            foreach (var momentum in new[] { true, false })
                foreach (var weights in new[] { false, true })
                {
                    var what = $"{r}×{c}, {(momentum ? "with M" : "no M")}, {(weights ? "weights" : "direction")}, steps 1–3 from zero state";
                    var (elementwise, factors) = SmmfCase(device, r, c, momentum, weights, firstStep: 1, steps: 3, zeroGradient: false);
                    yield return new Check("smmf_*", $"{what}: target, sign bytes", r * c, elementwise.Abs, elementwise.Ulp, 0);
                    yield return new Check("smmf_*", $"{what}: ρ, γ", r + c, factors.Abs, factors.Ulp, 2);
                }
        // A zero gradient from the zero state: every sum is 0, so γ keeps the raw (zero) sums.
        var (e0, f0) = SmmfCase(device, 5, 9, momentum: true, weights: false, firstStep: 1, steps: 1, zeroGradient: true);
        yield return new Check("smmf_*", "5×9, with M, zero gradient (total 0): target, sign bytes", 45, e0.Abs, e0.Ulp, 0);
        yield return new Check("smmf_*", "5×9, with M, zero gradient (total 0): ρ, γ", 14, f0.Abs, f0.Ulp, 2);
        // More sign bytes than 65535 blocks × 256 threads: smmf_apply's grid-stride loop runs twice.
        var (eb, fb) = SmmfCase(device, 11600, 11601, momentum: true, weights: true, firstStep: 2, steps: 1, zeroGradient: false);
        yield return new Check("smmf_*", "11600×11601, with M, weights, step 2: target, sign bytes", 11600L * 11601, eb.Abs, eb.Ulp, 0);
        yield return new Check("smmf_*", "11600×11601, with M, weights, step 2: ρ, γ", 11600 + 11601, fb.Abs, fb.Ulp, 2);
    }

    /// <summary>
    /// Steps <paramref name="firstStep"/>, … of SMMF (β = 0.9, growth 0.999, decay rate −0.8, ε = 1e-8,
    /// η = 1e-3, λ = 0.01) on one rows×cols view, from the zero state (the optimizer's first step) or, from
    /// step 2 on, a random one. Before every step the state is read back from the GPU and the CPU reference
    /// takes the step from that state, so each step is compared on equal inputs: the target and the sign bytes
    /// exactly (differing sign bytes and zeros of the other sign are counted in the ulp column), the factors to
    /// float rounding (the GPU sums in double in another order). Gradients include +0 and −0.
    /// </summary>
    private static ((long Ulp, double Abs) Elementwise, (long Ulp, double Abs) Factors) SmmfCase(
        int device, long rows, long cols, bool momentum, bool weights, int firstStep, int steps, bool zeroGradient)
    {
        var n = rows * cols;
        var random = new Random((int)(rows * 131 + cols * 7 + (momentum ? 1 : 0) + (weights ? 2 : 0)));
        var plan = new SmmfPlan(rows, cols, momentum);
        var signBytes = (n + 7) / 8;
        var fresh = firstStep == 1;
        // Positive factors with a spread of magnitudes; random signs with zero padding bits.
        float[] Factor(long count, float scale) => fresh ? new float[count] : Normal(random, count, scale).Select(x => MathF.Abs(x) + 1e-3f).ToArray();
        var signs = new byte[signBytes];
        if (!fresh)
        {
            random.NextBytes(signs);
            if (n % 8 != 0) signs[^1] &= (byte)((1 << (int)(n % 8)) - 1);
        }
        using var dg = DeviceBuffer.Zeroed<float>(n);
        using var dt = DeviceBuffer.Of(Normal(random, n, 1.0f));
        using var drm = momentum ? DeviceBuffer.Of(Factor(rows, 1.0f)) : null;
        using var dcm = momentum ? DeviceBuffer.Of(Factor(cols, 1.0f / cols)) : null;
        using var ds = momentum ? DeviceBuffer.Of(signs) : null;
        using var drv = DeviceBuffer.Of(Factor(rows, 1.0f));
        using var dcv = DeviceBuffer.Of(Factor(cols, 1.0f / cols));
        // NaN-filled: the launches must write every scratch slot they read.
        using var scratch = DeviceBuffer.Of(Enumerable.Repeat(double.NaN, (int)plan.ScratchDoubles).ToArray());
        (long Ulp, double Abs) elementwise = (0, 0), factors = (0, 0);
        for (var k = firstStep; k < firstStep + steps; k++)
        {
            var g = zeroGradient ? new float[n] : Normal(random, n, 1.0f);
            if (!zeroGradient)
                for (long e = 0; e < n; e += 97) g[e] = (e / 97) % 2 == 0 ? 0.0f : -0.0f;
            CudaDriver.CopyToDevice<float>(dg.Pointer, g);
            var scalars = new SmmfScalars(momentum ? 0.9 * Math.Pow(0.999, k - 1) : 0, 1 - Math.Pow(k, -0.8), 1e-8, 1e-3, 1 - 1e-3 * 0.01);
            // The GPU's state before the step, and the CPU reference's step from it.
            var target = dt.Read<float>(n);
            var rowM = drm?.Read<float>(rows) ?? [];
            var colM = dcm?.Read<float>(cols) ?? [];
            var oldSigns = ds?.Read<byte>(signBytes) ?? [];
            var rowV = drv.Read<float>(rows);
            var colV = dcv.Read<float>(cols);
            var newSigns = SmmfReference(g, target, rowM, colM, oldSigns, rowV, colV, rows, cols, momentum, weights, scalars);

            KernelLaunches.SmmfStep(device, plan, dg.Address, dt.Address, drm?.Address ?? IntPtr.Zero, dcm?.Address ?? IntPtr.Zero,
                ds?.Address ?? IntPtr.Zero, drv.Address, dcv.Address, scratch.Address, weights, scalars);
            CudaDriver.Synchronize();

            var actualTarget = dt.Read<float>(n);
            elementwise = Worst(elementwise, Compare.F32(actualTarget, target));
            // Compare.F32 holds +0 and −0 equal; the target must match bit for bit, the sign of zeros included.
            long zeroSigns = 0;
            for (long e = 0; e < n; e++)
                if (actualTarget[e] == target[e] && BitConverter.SingleToInt32Bits(actualTarget[e]) != BitConverter.SingleToInt32Bits(target[e])) zeroSigns++;
            elementwise = Worst(elementwise, (zeroSigns, 0));
            if (momentum)
            {
                var actualSigns = ds!.Read<byte>(signBytes);
                long differing = 0;
                for (long b = 0; b < signBytes; b++) if (actualSigns[b] != newSigns[b]) differing++;
                elementwise = Worst(elementwise, (differing, 0));
                factors = Worst(factors, Compare.F32(drm!.Read<float>(rows), rowM));
                factors = Worst(factors, Compare.F32(dcm!.Read<float>(cols), colM));
            }
            factors = Worst(factors, Compare.F32(drv.Read<float>(rows), rowV));
            factors = Worst(factors, Compare.F32(dcv.Read<float>(cols), colV));
        }
        return (elementwise, factors);
    }

    private static (long Ulp, double Abs) Worst((long Ulp, double Abs) a, (long Ulp, double Abs) b) => (Math.Max(a.Ulp, b.Ulp), Math.Max(a.Abs, b.Abs));

    /// <summary>
    /// SMMF's step as smmf.cu computes it, in two passes: every element reads the old factors and its old
    /// sign bit (M̂ = ±ρ_M,i·γ_M,j, bit 0 meaning negative; V̂ = ρ_V,i·γ_V,j) and computes, in float32 and this
    /// order, V = fma((1−β2)·g, g, (ρ_V,i·γ_V,j)·β2), M = fma(g, 1−β1, M̂·β1), U = (M or g)/(√V + ε), and the
    /// target U or W·decay − η·U; then the new state is written: the row sums of |M| and V, the column sums over
    /// their total (raw sums when the total is 0), all summed in double and rounded to float once, in place.
    /// Returns the new sign bytes (bit set where M &gt; 0, padding 0).
    /// </summary>
    private static byte[] SmmfReference(float[] g, float[] target, float[] rowM, float[] colM, byte[] signs, float[] rowV, float[] colV,
        long rows, long cols, bool momentum, bool weights, SmmfScalars s)
    {
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps;
        float step = (float)s.StepSize, decay = (float)s.DecayFactor;
        var newSigns = new byte[signs.Length];
        var (rowSumM, colSumM) = (new double[momentum ? rows : 0], new double[momentum ? cols : 0]);
        var (rowSumV, colSumV) = (new double[rows], new double[cols]);
        for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++)
            {
                var e = i * cols + j;
                var gi = g[e];
                float v = MathF.FusedMultiplyAdd(c2 * gi, gi, rowV[i] * colV[j] * b2);
                var numerator = gi;
                if (momentum)
                {
                    var mHat = rowM[i] * colM[j];
                    if (((signs[e >> 3] >> (int)(e & 7)) & 1) == 0) mHat = -mHat;
                    float m = MathF.FusedMultiplyAdd(gi, c1, mHat * b1);
                    numerator = m;
                    if (m > 0) newSigns[e >> 3] |= (byte)(1 << (int)(e & 7));
                    rowSumM[i] += MathF.Abs(m);
                    colSumM[j] += MathF.Abs(m);
                }
                float u = numerator / (MathF.Sqrt(v) + eps);
                target[e] = weights ? MathF.FusedMultiplyAdd(u, -step, target[e] * decay) : u;
                rowSumV[i] += v;
                colSumV[j] += v;
            }
        if (momentum) Factorize(rowSumM, colSumM, rowM, colM);
        Factorize(rowSumV, colSumV, rowV, colV);
        return newSigns;
    }

    private static void Factorize(double[] rowSums, double[] colSums, float[] rows, float[] cols)
    {
        for (long i = 0; i < rows.LongLength; i++) rows[i] = (float)rowSums[i];
        double total = 0;
        foreach (var sum in colSums) total += sum;
        var divisor = total == 0 ? 1.0 : total;
        for (long j = 0; j < cols.LongLength; j++) cols[j] = (float)(colSums[j] / divisor);
    }

    /// <summary><paramref name="count"/> normal deviates (Box–Muller) times <paramref name="scale"/>.</summary>
    private static float[] Normal(Random random, long count, float scale)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            var u = 1.0 - random.NextDouble();
            var w = random.NextDouble();
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * w)) * scale;
        }
        return values;
    }
}

/// <summary>Largest difference between two arrays in units in the last place of their type, and in absolute value.</summary>
internal static class Compare
{
    public static (long Ulp, double Abs) F32(float[] actual, float[] expected)
    {
        if (actual.Length != expected.Length) return (long.MaxValue, double.PositiveInfinity);
        long ulp = 0;
        double abs = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            ulp = Math.Max(ulp, Distance(BitConverter.SingleToInt32Bits(actual[i]), BitConverter.SingleToInt32Bits(expected[i]), float.IsNaN(actual[i]), float.IsNaN(expected[i])));
            if (!float.IsNaN(actual[i]) || !float.IsNaN(expected[i])) abs = Math.Max(abs, Math.Abs((double)actual[i] - expected[i]));
        }
        return (ulp, abs);
    }

    public static (long Ulp, double Abs) Bf16(ushort[] actual, ushort[] expected)
    {
        if (actual.Length != expected.Length) return (long.MaxValue, double.PositiveInfinity);
        long ulp = 0;
        double abs = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            float a = GpuHarness.Bf16.ToSingle(actual[i]), e = GpuHarness.Bf16.ToSingle(expected[i]);
            ulp = Math.Max(ulp, Distance(actual[i] << 16, expected[i] << 16, float.IsNaN(a), float.IsNaN(e)) >> 16);
            if (!float.IsNaN(a) || !float.IsNaN(e)) abs = Math.Max(abs, Math.Abs((double)a - e));
        }
        return (ulp, abs);
    }

    /// <summary>Steps between two float bit patterns along the real line (±0 equal; NaN equals only NaN).</summary>
    private static long Distance(int a, int b, bool aNaN, bool bNaN)
    {
        if (aNaN || bNaN) return aNaN && bNaN ? 0 : long.MaxValue / 2;
        static long Ordered(int bits) => bits < 0 ? -(long)(bits & 0x7FFFFFFF) : bits;
        return Math.Abs(Ordered(a) - Ordered(b));
    }
}

/// <summary>bfloat16 as the upper half of a float32, rounded to nearest even (NaN → 0x7FC0), as the kernels round.</summary>
internal static class Bf16
{
    public static float ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static ushort FromSingle(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        var bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    public static float Round(float value) => ToSingle(FromSingle(value));
}
