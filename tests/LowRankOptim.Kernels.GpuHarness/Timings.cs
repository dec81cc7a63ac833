using System.Diagnostics;

namespace LowRankOptim.Kernels.GpuHarness;

/// <summary>One timed kernel: median time per call over rounds of launches, and the bandwidth of the bytes it moves.</summary>
internal sealed record Timing(string Kernel, string Shape, long Elements, double Bytes, double MedianMs)
{
    public double GBps => Bytes / (MedianMs * 1e-3) / 1e9;
}

/// <summary>
/// Times each kernel family at a size far past the caches (2^26 entries, or 8192×8192): every call's launches, then a synchronize, in
/// rounds of <see cref="Calls"/> calls (median over <see cref="Rounds"/> rounds, after warm-up calls). Bytes are
/// counted as the kernel moves them (each element read and written once per pass; SMMF's two passes over the gradient).
/// </summary>
internal static class Timings
{
    private const int Calls = 20, Rounds = 7, WarmUp = 3;

    public static IEnumerable<Timing> All(int device)
    {
        const long n = 1L << 26;
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - Math.Pow(0.999, 3)), StepSize: 1e-3, DecayFactor: 1 - 1e-5);
        foreach (var bf16 in new[] { false, true })
        {
            var size = bf16 ? 2 : 4;
            using var g = Zeroed(n, size);
            using var m = Zeroed(n, size);
            using var v = Zeroed(n, size);
            using var w = Zeroed(n, size);
            var type = bf16 ? "bf16" : "f32";
            yield return Time($"adam_update_{type}", $"2^26", n, 7.0 * size * n, () => KernelLaunches.AdamUpdate(device, bf16, g.Address, m.Address, v.Address, w.Address, n, scalars));
            yield return Time($"adam_direction_{type}", $"2^26", n, 6.0 * size * n, () => KernelLaunches.AdamDirection(device, bf16, g.Address, m.Address, v.Address, w.Address, n, scalars));
        }
        const long rows = 8192, cols = 8192;
        using (var x = Zeroed(rows * cols, 4))
        using (var output = Zeroed(Math.Max(rows, cols), 4))
        {
            yield return Time("row_reduce_f32 (ℓ1)", "8192×8192", rows * cols, 4.0 * rows * cols, () => KernelLaunches.RowReduce(device, x.Address, output.Address, rows, cols, 0, false, 0, 0, 1));
            yield return Time("col_reduce_f32 (ℓ1)", "8192×8192", rows * cols, 4.0 * rows * cols, () => KernelLaunches.ColReduce(device, x.Address, output.Address, 1, rows, cols, 0, false, 0, 0, 1));
        }
        foreach (var weights in new[] { false, true })
        {
            var plan = new SmmfPlan(rows, cols, Momentum: true);
            using var g = Zeroed(rows * cols, 4);
            using var target = Zeroed(rows * cols, 4);
            using var rowM = Zeroed(rows, 4);
            using var colM = Zeroed(cols, 4);
            using var signs = Zeroed((rows * cols + 7) / 8, 1);
            using var rowV = Zeroed(rows, 4);
            using var colV = Zeroed(cols, 4);
            using var scratch = Zeroed(plan.ScratchDoubles, 8);
            var s = new SmmfScalars(0.9, 0.5, 1e-8, 1e-3, 1 - 1e-5);
            // The gradient is read twice (sums, element pass); target written (and read when it holds the weights); signs read and written.
            var bytes = 2 * 4.0 * rows * cols + (weights ? 8.0 : 4.0) * rows * cols + 2.0 * rows * cols / 8;
            yield return Time($"smmf_step ({(weights ? "weights" : "direction")}, momentum)", "8192×8192", rows * cols, bytes,
                () => KernelLaunches.SmmfStep(device, plan, g.Address, target.Address, rowM.Address, colM.Address, signs.Address, rowV.Address, colV.Address, scratch.Address, weights, s));
        }
        foreach (var timing in Quantized(device)) yield return timing;
    }

    /// <summary>
    /// quantized_adam.cu over 2^26 entries of random moments (random codes, positive absmax, a normal gradient), both
    /// formats, both dtypes, direction and update with nearest rounding, and the float32 8-bit update with stochastic
    /// rounding. Bytes: the gradient read, the target written (read too for the update), each moment's codes and absmax
    /// read and written once.
    /// </summary>
    private static IEnumerable<Timing> Quantized(int device)
    {
        const long n = 1L << 26;
        var random = new Random(7);
        var gradient = QuantizedChecks.Normal(random, n, 1.0f);
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - Math.Pow(0.999, 3)), StepSize: 1e-3, DecayFactor: 1 - 1e-5);
        foreach (var format in QuantizedChecks.Formats)
        {
            var blocks = n / format.BlockSize;
            var codes = new byte[n * format.Bits / 8];
            random.NextBytes(codes);
            var mAbsmax = QuantizedChecks.Normal(random, blocks, 0.1f).Select(x => MathF.Abs(x) + 1e-3f).ToArray();
            var vAbsmax = QuantizedChecks.Normal(random, blocks, 0.01f).Select(x => MathF.Abs(x) + 1e-4f).ToArray();
            using var mCodes = DeviceBuffer.Of(codes);
            using var vCodes = DeviceBuffer.Of(codes);
            using var mScales = DeviceBuffer.Of(mAbsmax);
            using var vScales = DeviceBuffer.Of(vAbsmax);
            using var mMap = DeviceBuffer.Of(QuantizedChecks.Maps[format.M]);
            using var vMap = DeviceBuffer.Of(QuantizedChecks.Maps[format.V]);
            foreach (var bf16 in new[] { false, true })
            {
                var size = bf16 ? 2 : 4;
                using var g = QuantizedChecks.Upload(gradient, bf16);
                using var target = QuantizedChecks.Upload(gradient, bf16);
                foreach (var (update, stochastic) in bf16 || format.Bits == 4 ? [(false, false), (true, false)] : new[] { (false, false), (true, false), (true, true) })
                {
                    var bytes = size * n * (update ? 3.0 : 2.0) + 4.0 * n * format.Bits / 8 + 16.0 * blocks;
                    var name = QuantizedAdamLaunches.Name(update, bf16, format.Bits) + (stochastic ? " (stochastic)" : "");
                    yield return Time(name, "2^26", n, bytes, () => QuantizedAdamLaunches.Launch(device, bf16, format.Bits, format.BlockSize, blocks,
                        g.Address, target.Address, new QuantizedBuffers(mCodes.Address, mScales.Address, mMap.Address, stochastic, 1),
                        new QuantizedBuffers(vCodes.Address, vScales.Address, vMap.Address, stochastic, 2), scalars, QuantizedChecks.MinScale, update));
                }
            }
        }
    }

    private static DeviceBuffer Zeroed(long count, int elementSize) => elementSize switch
    {
        1 => DeviceBuffer.Zeroed<byte>(count),
        2 => DeviceBuffer.Zeroed<ushort>(count),
        8 => DeviceBuffer.Zeroed<double>(count),
        _ => DeviceBuffer.Zeroed<float>(count),
    };

    private static Timing Time(string kernel, string shape, long elements, double bytes, Action call)
    {
        for (var i = 0; i < WarmUp; i++) call();
        CudaDriver.Synchronize();
        var perCall = new double[Rounds];
        for (var r = 0; r < Rounds; r++)
        {
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < Calls; i++) call();
            CudaDriver.Synchronize();
            perCall[r] = clock.Elapsed.TotalMilliseconds / Calls;
        }
        Array.Sort(perCall);
        return new Timing(kernel, shape, elements, bytes, perCall[Rounds / 2]);
    }
}
