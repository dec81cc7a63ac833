using LowRankOptim.Kernels.Cuda.Native;

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
/// different order (a tree on the GPU), so their float or bfloat16 results may differ in the last place (1 ulp).
/// </summary>
internal static class Checks
{
    private static readonly long[] Sizes = [1, 7, 64, 4097, 1 << 20];

    public static IEnumerable<Check> Adam(int device)
    {
        // 2^24 + 5 elements: more than 65535 blocks of 256 threads, so the grid-stride loop runs twice.
        foreach (var bf16 in new[] { false, true })
            foreach (var n in bf16 ? Sizes : [.. Sizes, (1L << 24) + 5])
                foreach (var corrected in new[] { true, false })
                {
                    var scalars = new AdamScalars(0.9, 0.999, 1e-8, corrected ? Math.Sqrt(1 - Math.Pow(0.999, 3)) : 1.0);
                    long worstUlp = 0;
                    double worstAbs = 0;
                    foreach (var seed in new[] { 1, 2 })
                    {
                        var random = new Random(seed * 1000 + (int)(n % 997));
                        var g = Normal(random, n, 1.0f);
                        var m = Normal(random, n, 0.1f);
                        var v = Normal(random, n, 0.1f).Select(x => x * x).ToArray();
                        var (ulp, abs) = bf16 ? AdamBf16(device, g, m, v, scalars) : AdamF32(device, g, m, v, scalars);
                        worstUlp = Math.Max(worstUlp, ulp);
                        worstAbs = Math.Max(worstAbs, abs);
                    }
                    yield return new Check(bf16 ? "adam_direction_bf16" : "adam_direction_f32",
                        $"{(corrected ? "ε after bias correction" : "ε on √v")}, 2 steps, seeds 1–2 (m, v, d)", n, worstAbs, worstUlp, 1);
                }
    }

    private static (long Ulp, double Abs) AdamF32(int device, float[] g, float[] m, float[] v, AdamScalars s)
    {
        var n = g.LongLength;
        using var dg = DeviceBuffer.Of(g);
        using var dm = DeviceBuffer.Of(m);
        using var dv = DeviceBuffer.Of(v);
        using var dd = DeviceBuffer.Zeroed<float>(n);
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        var corrected = s.SqrtBiasCorrection2 != 1.0;
        var (rm, rv, rd) = ((float[])m.Clone(), (float[])v.Clone(), new float[n]);
        for (var step = 0; step < 2; step++)
        {
            KernelLaunches.AdamDirection(device, false, dg.Address, dm.Address, dv.Address, dd.Address, n, s);
            for (long i = 0; i < n; i++)
            {
                var gi = g[i];
                var mi = MathF.FusedMultiplyAdd(c1, gi, rm[i] * b1);
                var vi = rv[i] * b2 + c2 * gi * gi;
                var root = MathF.Sqrt(vi);
                var denom = (corrected ? root / sbc2 : root) + eps;
                rm[i] = mi; rv[i] = vi; rd[i] = mi / denom;
            }
        }
        CudaDriver.Synchronize();
        var a = Compare.F32(dm.Read<float>(n), rm);
        var b = Compare.F32(dv.Read<float>(n), rv);
        var c = Compare.F32(dd.Read<float>(n), rd);
        return (Math.Max(a.Ulp, Math.Max(b.Ulp, c.Ulp)), Math.Max(a.Abs, Math.Max(b.Abs, c.Abs)));
    }

    private static (long Ulp, double Abs) AdamBf16(int device, float[] g32, float[] m32, float[] v32, AdamScalars s)
    {
        var n = g32.LongLength;
        var g = g32.Select(Bf16.FromSingle).ToArray();
        var m = m32.Select(Bf16.FromSingle).ToArray();
        var v = v32.Select(Bf16.FromSingle).ToArray();
        using var dg = DeviceBuffer.Of(g);
        using var dm = DeviceBuffer.Of(m);
        using var dv = DeviceBuffer.Of(v);
        using var dd = DeviceBuffer.Zeroed<ushort>(n);
        float b1 = (float)s.Beta1, c1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, c2 = (float)(1 - s.Beta2), eps = (float)s.Eps, sbc2 = (float)s.SqrtBiasCorrection2;
        var corrected = s.SqrtBiasCorrection2 != 1.0;
        var (rm, rv, rd) = ((ushort[])m.Clone(), (ushort[])v.Clone(), new ushort[n]);
        for (var step = 0; step < 2; step++)
        {
            KernelLaunches.AdamDirection(device, true, dg.Address, dm.Address, dv.Address, dd.Address, n, s);
            for (long i = 0; i < n; i++)
            {
                var gi = Bf16.ToSingle(g[i]);
                var mi = Bf16.Round(MathF.FusedMultiplyAdd(c1, gi, Bf16.Round(Bf16.ToSingle(rm[i]) * b1)));
                var vi = Bf16.Round(Bf16.Round(Bf16.ToSingle(rv[i]) * b2) + c2 * gi * gi);
                var root = Bf16.Round(MathF.Sqrt(vi));
                var denom = Bf16.Round((corrected ? Bf16.Round(root / sbc2) : root) + eps);
                rm[i] = Bf16.FromSingle(mi); rv[i] = Bf16.FromSingle(vi); rd[i] = Bf16.FromSingle(mi / denom);
            }
        }
        CudaDriver.Synchronize();
        var a = Compare.Bf16(dm.Read<ushort>(n), rm);
        var b = Compare.Bf16(dv.Read<ushort>(n), rv);
        var c = Compare.Bf16(dd.Read<ushort>(n), rd);
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
