using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using Xunit.Sdk;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Smmf;

/// <summary>
/// The fused CPU kernel equals the TorchSharp-ops reference path: same parameters (float rounding apart)
/// and the same state (factors to rounding, sign bits exactly) after every step, over shapes that hit
/// every code path (scalars, 1 element, primes, row lengths not a multiple of the vector width, several
/// parallel bands, 4-D, non-contiguous and bf16 parameters), several seeds, β on and off, every decay order.
/// </summary>
public sealed class SmmfKernelEquivalenceTests
{
    private const int Steps = 6;

    public static TheoryData<string, long, bool> Cases()
    {
        var shapes = new[]
        {
            "", "1", "2", "7", "13", "1,1,1", "1,13", "64", "97", "3,5", "8,8", "9,7", "10,10", "31,17", "4,3,3,3",
            "5,4,3,3", "2,3,5,7", "257", "100,37", "64,100",
            "301,300",   // 90,300 elements: 300×301, two bands, rows of 301 (not a multiple of 8)
            "1009,131",  // 132,179 elements: 1009×131, three bands starting on sign-byte boundaries
            "4099",      // a prime: 4099×1, one element per row
        };
        var data = new TheoryData<string, long, bool>();
        foreach (var shape in shapes)
            foreach (var seed in new long[] { 1, 2, 3 })
                data.Add(shape, seed, seed != 2); // seed 2 runs without a first moment (β = None)
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedKernelEqualsTheReference(string shape, long seed, bool momentum)
    {
        var dims = Dims(shape);
        var order = (WeightDecayOrder)(seed % 3);
        Compare(dims, seed, momentum ? 0.9 : null, ScalarType.Float32, contiguous: true, weightDecay: 0.1, order);
    }

    [Theory]
    [InlineData("7", 4L)]
    [InlineData("8,8", 5L)]
    [InlineData("31,17", 6L)]
    [InlineData("4,3,3,3", 7L)]
    [InlineData("301,300", 8L)]
    public void BFloat16ParametersKeepFloat32StateThatEqualsTheReference(string shape, long seed) =>
        Compare(Dims(shape), seed, 0.9, ScalarType.BFloat16, contiguous: true, weightDecay: 0.1, WeightDecayOrder.BeforeUpdate);

    [Theory]
    [InlineData("17,9", 9L)]
    [InlineData("40,24", 10L)]
    public void NonContiguousParametersTakeTheDirectionPathAndEqualTheReference(string shape, long seed) =>
        Compare(Dims(shape), seed, 0.9, ScalarType.Float32, contiguous: false, weightDecay: 0.05, WeightDecayOrder.BeforeUpdate);

    [Fact]
    public void AutoEqualsTheCpuKernelBitForBitOnFloat32CpuParameters()
    {
        using var scope = NewDisposeScope();
        var (auto, autoOpt) = Single([33, 21], 11, ScalarType.Float32, true, KernelPreference.Auto, 0.9, 0.1, WeightDecayOrder.BeforeUpdate);
        var (cpu, cpuOpt) = Single([33, 21], 11, ScalarType.Float32, true, KernelPreference.Cpu, 0.9, 0.1, WeightDecayOrder.BeforeUpdate);
        using (autoOpt)
        using (cpuOpt)
        {
            for (var k = 0; k < Steps; k++)
            {
                auto.grad = Gradient([33, 21], 11, k);
                cpu.grad = Gradient([33, 21], 11, k);
                autoOpt.step();
                cpuOpt.step();
            }
            TensorAssert.Identical(auto, cpu, "Auto vs Cpu");
            StateBytes(autoOpt).Should().Equal(StateBytes(cpuOpt));
        }
    }

    private static byte[] StateBytes(LowRankOptimizer opt)
    {
        // The rule states only (the options differ in their kernel entry).
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream))
            foreach (var s in opt.States) s.Rule.Save(new StateWriter(writer));
        return stream.ToArray();
    }

    private static void Compare(long[] dims, long seed, double? beta, ScalarType dtype, bool contiguous, double weightDecay, WeightDecayOrder order)
    {
        using var scope = NewDisposeScope();
        var (reference, referenceOpt) = Single(dims, seed, dtype, contiguous, KernelPreference.Reference, beta, weightDecay, order);
        var (fused, fusedOpt) = Single(dims, seed, dtype, contiguous, KernelPreference.Cpu, beta, weightDecay, order);
        using (referenceOpt)
        using (fusedOpt)
        {
            var what = $"shape [{string.Join(", ", dims)}], seed {seed}, β {beta?.ToString() ?? "None"}, {dtype}, {order}";
            var parameterTolerance = dtype == ScalarType.BFloat16 ? 1e-2 : 1e-6;
            for (var k = 0; k < Steps; k++)
            {
                reference.grad = Gradient(dims, seed, k).to(dtype);
                fused.grad = Gradient(dims, seed, k).to(dtype);
                referenceOpt.step();
                fusedOpt.step();
                TensorAssert.Close(fused, reference, parameterTolerance, 1e-5, $"{what}: parameter after step {k + 1}");
                CompareStates((SmmfRule)referenceOpt.States[0].Rule, (SmmfRule)fusedOpt.States[0].Rule, $"{what}: state after step {k + 1}");
            }
        }
    }

    private static void CompareStates(SmmfRule reference, SmmfRule fused, string what)
    {
        var (r, f) = (reference.Factors, fused.Factors);
        (f.Rows, f.Cols).Should().Be((r.Rows, r.Cols));
        CloseRelative(f.VarianceRows, r.VarianceRows, $"{what}: ρ_V");
        CloseRelative(f.VarianceCols, r.VarianceCols, $"{what}: γ_V");
        f.HasMomentum.Should().Be(r.HasMomentum);
        if (!r.HasMomentum) return;
        CloseRelative(f.MomentRows!, r.MomentRows!, $"{what}: ρ_M");
        CloseRelative(f.MomentCols!, r.MomentCols!, $"{what}: γ_M");
        TensorAssert.Identical(f.MomentSigns!, r.MomentSigns!, $"{what}: sign bits");
    }

    /// <summary>
    /// Each entry within 1e-5 of the reference's, relative to itself plus 1e-6 of the vector's largest entry:
    /// a row sum of a single element is |β1·M̂ + (1−β1)·G|, which can cancel, so its own relative error
    /// may exceed float rounding; relative to the terms' size it may not.
    /// </summary>
    private static void CloseRelative(Tensor actual, Tensor expected, string what)
    {
        var a = actual.data<float>().ToArray();
        var e = expected.data<float>().ToArray();
        a.Length.Should().Be(e.Length, what);
        var scale = e.Length == 0 ? 0 : e.Max(Math.Abs);
        for (var i = 0; i < a.Length; i++)
            if (!(Math.Abs(a[i] - e[i]) <= 1e-5 * Math.Abs(e[i]) + 1e-6 * scale))
                throw new XunitException($"{what}: entry {i} is {a[i]:R}, the reference's {e[i]:R} (largest entry {scale:R})");
    }

    private static (Parameter P, LowRankOptimizer Opt) Single(long[] dims, long seed, ScalarType dtype, bool contiguous,
        KernelPreference kernel, double? beta, double weightDecay, WeightDecayOrder order)
    {
        using var gen = new Generator((ulong)seed);
        var initial = randn(dims, generator: gen);
        Tensor data;
        if (contiguous) data = initial.to(dtype);
        else
        {
            // A transposed view: the same values, non-contiguous storage.
            data = initial.reshape(dims[0], -1).t().contiguous().t().to(dtype);
            data.is_contiguous().Should().BeFalse();
        }
        var p = new Parameter(data);
        if (!contiguous) p.is_contiguous().Should().BeFalse("the test needs a non-contiguous parameter");
        var opt = new LowRankOptimizer([new LowRankParamGroup([p])], new LowRankOptions
        {
            LearningRate = 0.02,
            WeightDecay = weightDecay,
            DecayOrder = order,
            Projection = FullSpace.Instance,
            Rule = new SmmfConfig(beta, Eps: 1e-8, DecayRate: -0.5, GrowthRate: 0.999, Kernel: kernel),
        });
        return (p, opt);
    }

    /// <summary>Seeded gradients whose scale changes from step to step.</summary>
    private static Tensor Gradient(long[] dims, long seed, int step)
    {
        using var gen = new Generator((ulong)(seed * 1000 + step + 1));
        return randn(dims, generator: gen).mul_(0.5 + 0.3 * step);
    }

    private static long[] Dims(string shape) =>
        shape.Length == 0 ? [] : shape.Split(',').Select(long.Parse).ToArray();
}
