using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// The DCT projector's ℓ1 scores through the fused CPU kernel select exactly the indices (in slot order) and
/// the low-rank gradient of the TorchSharp reference path, over shapes on both sides, seeds, dtypes and both
/// transform methods.
/// </summary>
public sealed class DctScoreKernelTests
{
    public static TheoryData<long, long, int, string, DctTransformMethod> Cases()
    {
        var data = new TheoryData<long, long, int, string, DctTransformMethod>();
        (long Rows, long Cols, int Rank)[] shapes =
        [
            (37, 23, 4),     // right, odd sizes, one band
            (23, 37, 4),     // left
            (300, 200, 16),  // right, s = 200, several bands (60 000 elements)
            (129, 1000, 32), // left, s = 129, many bands
            (64, 64, 64),    // r = s: the whole basis, in score order
        ];
        foreach (var (rows, cols, rank) in shapes)
            foreach (var dtype in new[] { "float32", "bfloat16" })
                foreach (var method in new[] { DctTransformMethod.MatrixProduct, DctTransformMethod.FastTransform })
                    data.Add(rows, cols, rank, dtype, method);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheKernelAndTheReferenceSelectTheSameIndices(long rows, long cols, int rank, string dtypeName, DctTransformMethod method)
    {
        var dtype = dtypeName == "float32" ? ScalarType.Float32 : ScalarType.BFloat16;
        var matrix = new MatrixShape(rows, cols);
        var context = new SubspaceContext(0, 1, 0.01, 0.01);
        foreach (var seed in new long[] { 1, 2, 3 })
        {
            using var scope = NewDisposeScope();
            var g = TestProblems.Gradient(seed * 7919 + rows * 31 + cols, rows, cols, dtype);
            using var reference = (DctSubspace)new DctProjection(rank, Method: method) { Kernel = KernelPreference.Reference }.Create(matrix, dtype, CPU);
            using var fused = (DctSubspace)new DctProjection(rank, Method: method) { Kernel = KernelPreference.Cpu }.Create(matrix, dtype, CPU);
            var a = reference.Refresh(g, context)!;
            var b = fused.Refresh(g, context)!;
            fused.Indices.Should().Equal(reference.Indices, $"seed {seed}: the kernel's scores must select the reference's indices in slot order");
            fused.Indices.Should().OnlyHaveUniqueItems();
            // Same indices, same columns: the low-rank gradients are the same tensor.
            TensorAssert.Identical(b, a, $"seed {seed}: low-rank gradient at a re-selection");
        }
    }

    [Theory]
    [InlineData(300L, 200L)]
    [InlineData(129L, 1000L)]
    public void TheKernelScoresEqualTheReferenceScoresToFloat32Rounding(long rows, long cols)
    {
        using var scope = NewDisposeScope();
        var s = TestProblems.Gradient(rows + cols, rows, cols);
        foreach (var (axis, reduce) in new[] { (L1Axis.Columns, 0L), (L1Axis.Rows, 1L) })
        {
            var kernel = LowRankOptim.Kernels.CpuKernels.Instance.L1Norms(s, axis);
            var reference = DctSubspace.ReferenceScores(s, reduce, 1.0);
            TensorAssert.Close(kernel, reference, 1e-5, 1e-4, $"{axis} ℓ1 scores");
        }
    }

    [Fact]
    public void AnExplicitKernelThatCannotRunFailsWhenTheSubspaceIsCreated()
    {
        var create = () => new DctProjection(4) { Kernel = KernelPreference.Cuda }.Create(new MatrixShape(16, 8), ScalarType.Float32, CPU);
        create.Should().ThrowExactly<ArgumentException>().WithMessage("kernel = Cuda needs float32 or bfloat16 state on a CUDA device to run L1Norms, but the transformed gradient of shape [16, 8] is Float32 on cpu*")
            .Which.ParamName.Should().Be("kernel");
        var float64 = () => new DctProjection(4) { Kernel = KernelPreference.Cpu }.Create(new MatrixShape(16, 8), ScalarType.Float64, CPU);
        float64.Should().ThrowExactly<ArgumentException>().WithMessage("kernel = Cpu needs float32 or bfloat16 state on the CPU*Float64 on cpu*");
        // ℓ2 scores have no kernel: an explicit choice is not consulted.
        using var l2 = new DctProjection(4, ScoreNorm: 2) { Kernel = KernelPreference.Cuda }.Create(new MatrixShape(16, 8), ScalarType.Float32, CPU);
    }
}
