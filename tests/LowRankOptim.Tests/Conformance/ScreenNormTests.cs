using FluentAssertions;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// The gradient screen's norm (a BLAS dot product for dense float32, libtorch's norm otherwise) agrees with ‖G‖₂ in
/// float64, carries NaN and ∞ through, and is ∞ (so the step is skipped) when the float32 sum of squares overflows.
/// </summary>
public sealed class ScreenNormTests
{
    private static double Float64Norm(Tensor g)
    {
        using var wide = g.to(ScalarType.Float64);
        using var norm = wide.norm();
        return norm.item<double>();
    }

    [Theory]
    [InlineData("float32", false)]
    [InlineData("float32", true)]
    [InlineData("bfloat16", false)]
    [InlineData("float16", false)]
    public void TheScreenNormIsTheGradientsNorm(string dtypeName, bool strided)
    {
        var dtype = dtypeName switch { "float32" => ScalarType.Float32, "bfloat16" => ScalarType.BFloat16, _ => ScalarType.Float16 };
        // libtorch's norm of a 16-bit tensor is rounded to that dtype (8 or 11 significant bits).
        var relative = dtype switch { ScalarType.Float32 => 1e-5, ScalarType.BFloat16 => 1.0 / 128, _ => 1.0 / 1024 };
        using var scope = NewDisposeScope();
        using var generator = new Generator(11);
        foreach (var (rows, cols) in new[] { (1L, 1L), (7L, 5L), (300L, 1001L) })
        {
            var g = randn([rows, cols], generator: generator).mul_(3).to(dtype);
            if (strided) g = g.t();
            StepEngine.Norm(g).Should().BeApproximately(Float64Norm(g), relative * Float64Norm(g), $"{rows}×{cols} {dtype}{(strided ? " transposed" : "")}");
        }
    }

    [Fact]
    public void NonFiniteEntriesAndOverflowingSquaresGiveANormTheScreenRefuses()
    {
        using var scope = NewDisposeScope();
        var g = ones(64, 64);
        g[3, 4] = float.NaN;
        double.IsNaN(StepEngine.Norm(g)).Should().BeTrue("a NaN entry");
        g[3, 4] = float.PositiveInfinity;
        StepEngine.Norm(g).Should().Be(double.PositiveInfinity, "an infinite entry");
        // 4096 entries of 1e18: ‖G‖ = 6.4e19 is finite, but Σ g² overflows float32: ∞, above the screen's bound as ‖G‖ is.
        var huge = full(64, 64, 1e18f);
        StepEngine.Norm(huge).Should().Be(double.PositiveInfinity);
        StepEngine.Norm(empty(0, 3)).Should().Be(0);
    }
}
