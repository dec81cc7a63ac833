using LowRankOptim.Bench.Training;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Measure;

/// <summary>
/// What one measured row trains: an optimizer of the comparison, the weights' dtype, how the moments are stored and
/// whether gradients are released during backward (the per-layer mode).
/// </summary>
/// <param name="Kind">The optimizer.</param>
/// <param name="DType">The weights' (and gradients') dtype.</param>
/// <param name="OptimBits">The moments' storage (bitsandbytes' optim_bits: 32, 16, 8, 4).</param>
/// <param name="PerLayer">Release each layer's gradient during backward.</param>
/// <param name="IsSmallest">True for the <see cref="Smallest"/> recipe (its name in reports).</param>
public sealed record MemoryRecipe(OptimizerKind Kind, ScalarType DType, int OptimBits, bool PerLayer, bool IsSmallest = false)
{
    /// <summary>The name the command line takes for <see cref="Smallest"/>.</summary>
    public const string SmallestName = "smallest";

    /// <summary>
    /// The smallest-memory recipe: DCT-AdamW (SVD-free: no SVD of a 4096×11008 gradient inside a step) projecting
    /// with the fast transform (<see cref="DctTransformMethod.FastTransformProjection"/>: O(m·n·log s) whatever the
    /// rank), 8-bit block-wise moments, the per-layer mode and bfloat16 weights rounded stochastically (so small
    /// updates are not lost).
    /// </summary>
    public static MemoryRecipe Smallest { get; } = new(OptimizerKind.Dct, ScalarType.BFloat16, 8, PerLayer: true, IsSmallest: true);

    /// <summary>The row's label: "smallest", or the optimizer with what differs from float32, dense, standard.</summary>
    public string Label => IsSmallest ? SmallestName
        : string.Join(" ", new[]
        {
            Kind.CliName(),
            DType == ScalarType.BFloat16 ? "bf16" : null,
            OptimBits != 32 ? $"{OptimBits}-bit" : null,
            PerLayer ? "per-layer" : null,
        }.Where(s => s is not null));

    /// <summary>The comparison's low-rank settings at <paramref name="rank"/> with this recipe's storage.</summary>
    public LowRankSettings Settings(int rank) =>
        new(rank, 200, 0.25, OptimBits, StochasticWeights: IsSmallest,
            DctMethod: IsSmallest ? DctTransformMethod.FastTransformProjection : DctTransformMethod.MatrixProduct);
}
