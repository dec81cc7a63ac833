using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// Every CPU SIMD kernel equals the TorchSharp-ops reference, outputs and state, over sizes
/// {1, 7, 64, 4097, 2^20}, float32 and bfloat16, several seeds. Float32 tolerances are float rounding; the
/// bf16 Adam kernel rounds where the reference's vectorized loop rounds (scalars included), so it is held to
/// two bf16 steps (2^-6 relative, 5e-4 absolute for results that cancel): libtorch's scalar remainder loop rounds β·g separately, which moves a
/// few tail elements by one step.
/// </summary>
public sealed class KernelParityTests
{
    public static readonly long[] Sizes = [1, 7, 64, 4097, 1 << 20];

    /// <summary>A 2-D (or batched 3-D) shape for each size: all of them hit the vector tails and the parallel bands.</summary>
    private static long[] Matrix(long size, long seed) => size switch
    {
        1 => [1, 1],
        7 => seed % 2 == 0 ? [7, 1] : [1, 7],
        64 => seed % 2 == 0 ? [8, 8] : [2, 4, 8],
        4097 => [17, 241],
        _ => seed % 2 == 0 ? [1024, 1024] : [4, 512, 512],
    };

    public static TheoryData<long, string, long> Cases()
    {
        var data = new TheoryData<long, string, long>();
        foreach (var size in Sizes)
            foreach (var dtype in new[] { "float32", "bfloat16" })
                foreach (var seed in new long[] { 1, 2, 3 })
                    data.Add(size, dtype, seed);
        return data;
    }

    private static ScalarType Parse(string dtype) => dtype == "float32" ? ScalarType.Float32 : ScalarType.BFloat16;

    private static (double Atol, double Rtol) Tolerance(ScalarType dtype) => dtype == ScalarType.Float32 ? (1e-7, 2e-6) : (5e-4, 1.0 / 64);

    [Theory]
    [MemberData(nameof(Cases))]
    public void AdamMatchesTheReference(long size, string dtypeName, long seed)
    {
        using var scope = NewDisposeScope();
        var dtype = Parse(dtypeName);
        var gen = new Generator((ulong)seed);
        var (atol, rtol) = Tolerance(dtype);
        var m0 = randn([size], generator: gen).mul_(0.1).to(dtype);
        var v0 = randn([size], generator: gen).square().mul_(0.01).to(dtype);
        var (mr, vr, mc, vc) = (m0.clone(), v0.clone(), m0.clone(), v0.clone());
        for (var step = 1; step <= 3; step++)
        {
            var g = randn([size], generator: gen).to(dtype);
            // Both ε conventions: after bias correction (√bc2 ≠ 1) on odd steps, before it (1) on even ones.
            var scalars = new AdamScalars(0.9, 0.999, 1e-8 * seed, step % 2 == 1 ? Math.Sqrt(1 - Math.Pow(0.999, step)) : 1.0);
            var expected = TorchKernels.Instance.AdamDirection(g, mr, vr, scalars);
            var actual = CpuKernels.Instance.AdamDirection(g, mc, vc, scalars);
            actual.dtype.Should().Be(dtype);
            TensorAssert.Close(mc, mr, atol, rtol, $"m after step {step}");
            TensorAssert.Close(vc, vr, atol, rtol, $"v after step {step}");
            if (dtype == ScalarType.Float32)
            {
                TensorAssert.Close(actual, expected, atol, rtol, $"direction of step {step}");
            }
            else
            {
                // The direction from the kernel's own moments, in the reference's ops: exact up to a bf16 step,
                // so a tail element whose m moved by a step does not hide a wrong direction elsewhere.
                var root = vc.sqrt();
                var own = mc.div(scalars.SqrtBiasCorrection2 == 1.0 ? root.add(scalars.Eps) : root.div(scalars.SqrtBiasCorrection2).add_(scalars.Eps));
                TensorAssert.Close(actual, own, 1e-6, 1.0 / 64, $"direction of step {step}");
                // Against the reference over libtorch's vectorized prefix (32 bf16 lanes with AVX-512); its scalar tail rounds otherwise.
                var prefix = size / 32 * 32;
                if (prefix > 0) TensorAssert.Close(actual.narrow(0, 0, prefix), expected.narrow(0, 0, prefix), 2e-3, 2 * rtol, $"direction of step {step} vs the reference");
            }
        }
    }

    /// <summary>
    /// The full-space update (moments and weights in one pass) equals the reference's mul_ + addcdiv_: float32
    /// moments bit for bit (the same ops in the same order, fused where libtorch fuses); the weights within float
    /// rounding (libtorch's float32 sqrt is not correctly rounded in the last place); bfloat16 within the
    /// tolerance of the direction.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void AdamUpdateMatchesTheReference(long size, string dtypeName, long seed)
    {
        using var scope = NewDisposeScope();
        var dtype = Parse(dtypeName);
        var gen = new Generator((ulong)seed + 100);
        var (atol, rtol) = Tolerance(dtype);
        var m0 = randn([size], generator: gen).mul_(0.1).to(dtype);
        var v0 = randn([size], generator: gen).square().mul_(0.01).to(dtype);
        var w0 = randn([size], generator: gen).to(dtype);
        var (mr, vr, wr, mc, vc, wc) = (m0.clone(), v0.clone(), w0.clone(), m0.clone(), v0.clone(), w0.clone());
        for (var step = 1; step <= 3; step++)
        {
            var g = randn([size], generator: gen).to(dtype);
            // Both ε conventions; decay before the update on some steps only (a factor of 1 skips the multiply).
            var scalars = new AdamScalars(0.9, 0.999, 1e-8 * seed, step % 2 == 1 ? Math.Sqrt(1 - Math.Pow(0.999, step)) : 1.0,
                StepSize: 1e-3 * step, DecayFactor: step == 2 ? 1.0 : 1 - 1e-3 * 0.1 * seed);
            TorchKernels.Instance.AdamUpdate(g, mr, vr, scalars, wr);
            CpuKernels.Instance.AdamUpdate(g, mc, vc, scalars, wc);
            if (dtype == ScalarType.Float32)
            {
                TensorAssert.Identical(mc, mr, $"m after step {step}");
                TensorAssert.Identical(vc, vr, $"v after step {step}");
            }
            else
            {
                TensorAssert.Close(mc, mr, atol, rtol, $"m after step {step}");
                TensorAssert.Close(vc, vr, atol, rtol, $"v after step {step}");
            }
            TensorAssert.Close(wc, wr, atol, rtol, $"weights after step {step}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AdafactorStatisticsMatchTheReference(long size, string dtypeName, long seed)
    {
        using var scope = NewDisposeScope();
        var dtype = Parse(dtypeName);
        var gen = new Generator((ulong)seed);
        var shape = Matrix(size, seed);
        var rows0 = rand(shape[..^1], generator: gen).to(dtype);
        var cols0 = rand([.. shape[..^2], shape[^1]], generator: gen).to(dtype);
        var (rr, cr, rc, cc) = (rows0.clone(), cols0.clone(), rows0.clone(), cols0.clone());
        var tolerance = dtype == ScalarType.Float32 ? (1e-7, 1e-5) : (5e-4, 1.0 / 64);
        for (var step = 1; step <= 2; step++)
        {
            var g = randn(shape, generator: gen).to(dtype);
            var scalars = new AdafactorScalars(1 - Math.Pow(step, -0.8), 1e-30);
            TorchKernels.Instance.AdafactorStatistics(g, rr, cr, scalars);
            CpuKernels.Instance.AdafactorStatistics(g, rc, cc, scalars);
            TensorAssert.Close(rc, rr, tolerance.Item1, tolerance.Item2, $"row statistics after step {step}");
            TensorAssert.Close(cc, cr, tolerance.Item1, tolerance.Item2, $"column statistics after step {step}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void L1NormsMatchTheReference(long size, string dtypeName, long seed)
    {
        using var scope = NewDisposeScope();
        var dtype = Parse(dtypeName);
        var shape = Matrix(size, seed);
        var x = randn([shape[..^1].Aggregate(1L, (a, b) => a * b), shape[^1]], generator: new Generator((ulong)seed)).to(dtype);
        foreach (var axis in new[] { L1Axis.Columns, L1Axis.Rows })
        {
            var expected = TorchKernels.Instance.L1Norms(x, axis);
            var actual = CpuKernels.Instance.L1Norms(x, axis);
            actual.dtype.Should().Be(ScalarType.Float32);
            actual.shape.Should().Equal(expected.shape);
            TensorAssert.Close(actual, expected, 1e-6, 1e-5, $"{axis} ℓ1 norms");
        }
    }

    public static TheoryData<long, long, bool> SmmfCases()
    {
        var data = new TheoryData<long, long, bool>();
        foreach (var size in Sizes)
            foreach (var seed in new long[] { 1, 2, 3 })
                data.Add(size, seed, seed != 2);
        return data;
    }

    /// <summary>SMMF through the boundary (float32: SMMF's state is float32 for every parameter dtype).</summary>
    /// <summary>
    /// The CPU SMMF kernel's paths by view shape: rows taken four at a time (columns a multiple of 16) with
    /// rows left over in every band, the same with a direction large enough for non-temporal stores
    /// (≥ <see cref="SmmfCpuKernel.StreamingBytes"/>), and a row length that is not a multiple of 16.
    /// Two steps, then a weight update, with and without a first moment: directions, weights and factors to float
    /// rounding, sign bits exactly.
    /// </summary>
    [Theory]
    [InlineData(37L, 48L, true)]
    [InlineData(37L, 48L, false)]
    [InlineData(2051L, 2048L, true)]
    [InlineData(2051L, 2048L, false)]
    [InlineData(45L, 40L, true)]
    public void SmmfKernelPathsMatchTheReference(long rows, long cols, bool momentum)
    {
        using var scope = NewDisposeScope();
        SmmfFactors State() => new(rows, cols, momentum ? zeros(rows) : null, momentum ? zeros(cols) : null,
            momentum ? SignBits.Zeros(rows * cols, CPU) : null, zeros(rows), zeros(cols));
        var (expected, actual) = (State(), State());
        var gen = new Generator((ulong)(rows + cols));
        for (var step = 1; step <= 3; step++)
        {
            var g = randn([rows, cols], generator: gen);
            var scalars = new SmmfScalars(momentum ? 0.9 : 0, 1 - Math.Pow(step, -0.8), 1e-8, 1e-3, 1 - 1e-4);
            var update = step == 3;
            var (te, ta) = update ? (randn([rows, cols], generator: gen), (Tensor?)null) : (empty_like(g), empty_like(g));
            ta ??= te.clone();
            TorchKernels.Instance.SmmfStep(g, expected, scalars, te, update);
            CpuKernels.Instance.SmmfStep(g, actual, scalars, ta, update);
            TensorAssert.Close(ta, te, 1e-6, 1e-4, update ? "SMMF weights" : $"SMMF direction of step {step}");
            TensorAssert.Close(actual.VarianceRows, expected.VarianceRows, 1e-7, 1e-5, "ρ_V");
            TensorAssert.Close(actual.VarianceCols, expected.VarianceCols, 1e-7, 1e-5, "γ_V");
            if (!momentum) continue;
            TensorAssert.Close(actual.MomentRows!, expected.MomentRows!, 1e-7, 1e-5, "ρ_M");
            TensorAssert.Close(actual.MomentCols!, expected.MomentCols!, 1e-7, 1e-5, "γ_M");
            TensorAssert.Identical(actual.MomentSigns!, expected.MomentSigns!, $"sign bits after step {step}");
        }
    }

    [Theory]
    [MemberData(nameof(SmmfCases))]
    public void SmmfStepMatchesTheReference(long size, long seed, bool momentum)
    {
        using var scope = NewDisposeScope();
        var (rows, cols) = SquareMatricization.Of(size);
        SmmfFactors State() => new(rows, cols,
            momentum ? zeros(rows) : null, momentum ? zeros(cols) : null, momentum ? SignBits.Zeros(rows * cols, CPU) : null, zeros(rows), zeros(cols));
        var (expected, actual) = (State(), State());
        var gen = new Generator((ulong)seed);
        var (we, wa) = (randn([size], generator: gen), (Tensor?)null);
        wa = we.clone();
        for (var step = 1; step <= 3; step++)
        {
            var g = randn([size], generator: gen);
            var scalars = new SmmfScalars(momentum ? 0.9 : 0, 1 - Math.Pow(step, -0.8), 1e-8, 1e-3, 1 - 1e-4);
            var de = empty_like(g);
            var da = empty_like(g);
            TorchKernels.Instance.SmmfStep(g, expected, scalars, de, updateWeights: false);
            CpuKernels.Instance.SmmfStep(g, actual, scalars, da, updateWeights: false);
            TensorAssert.Close(da, de, 1e-6, 1e-4, $"SMMF direction of step {step}");
            TensorAssert.Close(actual.VarianceRows, expected.VarianceRows, 1e-7, 1e-5, "ρ_V");
            TensorAssert.Close(actual.VarianceCols, expected.VarianceCols, 1e-7, 1e-5, "γ_V");
            if (momentum)
            {
                TensorAssert.Close(actual.MomentRows!, expected.MomentRows!, 1e-7, 1e-5, "ρ_M");
                TensorAssert.Close(actual.MomentCols!, expected.MomentCols!, 1e-7, 1e-5, "γ_M");
                TensorAssert.Identical(actual.MomentSigns!, expected.MomentSigns!, "sign bits");
            }
        }
        // The fused weight update through the boundary, one more step on copies of the state.
        var g2 = randn([size], generator: gen);
        var s2 = new SmmfScalars(momentum ? 0.9 : 0, 0.5, 1e-8, 1e-3, 1 - 1e-4);
        TorchKernels.Instance.SmmfStep(g2, expected, s2, we, updateWeights: true);
        CpuKernels.Instance.SmmfStep(g2, actual, s2, wa, updateWeights: true);
        TensorAssert.Close(wa, we, 1e-6, 1e-5, "SMMF weights");
    }
}
