using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Measure;

/// <summary>
/// The planner's predicted peak of one training run, in bytes, by part. The process's own baseline (the .NET runtime,
/// libtorch and the tokenized corpus, measured before the model is built) is added by <see cref="Total"/>.
/// </summary>
/// <param name="Weights">Σ numel × the weights' element size (exact).</param>
/// <param name="Gradients">The gradients alive at once: all of them in the standard loop; in the per-layer mode the
/// embedding's (its integer input cannot be tapped, so it waits in .grad for step()) plus the largest other one.</param>
/// <param name="State">The optimizer state (<see cref="MemoryPlanner"/>, exact).</param>
/// <param name="Activations">What autograd saves for the backward pass plus its largest transient (<see cref="PeakMemoryModel.Activations"/>).</param>
/// <param name="Workspace">The optimizer's largest transient of one parameter (<see cref="PeakMemoryModel.Workspace"/>).</param>
public sealed record PeakPrediction(long Weights, long Gradients, long State, long Activations, long Workspace)
{
    /// <summary>The peak: <paramref name="baseline"/> + every part.</summary>
    public long Total(long baseline) => baseline + Weights + Gradients + State + Activations + Workspace;
}

/// <summary>
/// Predicts the peak memory of training the bench's LLaMA model with a <see cref="MemoryRecipe"/> from shapes alone,
/// before anything is allocated. Weights, gradients and state are exact byte counts; activations and workspace are
/// counted tensor by tensor from what this model's forward saves and what the optimizer's step allocates, as
/// documented on each method (docs/benchmarks.md compares them with measured peaks).
/// </summary>
public static class PeakMemoryModel
{
    /// <summary>The prediction for <paramref name="config"/> trained with <paramref name="recipe"/> at <paramref name="rank"/> on batches of <paramref name="batch"/> × <paramref name="sequence"/> tokens.</summary>
    public static PeakPrediction Predict(LlamaConfig config, MemoryRecipe recipe, int rank, int batch, int sequence)
    {
        var shapes = config.ParameterShapes().ToList();
        var optionsOf = OptimizerCatalog.OptionsOf(recipe.Kind, 1e-3, recipe.Settings(rank), config);
        var plan = MemoryPlanner.Plan(shapes, recipe.DType, optionsOf);
        long e = ElementSize(recipe.DType);
        long Bytes(long[] shape) => shape.Aggregate(1L, (a, b) => a * b) * e;
        var gradients = recipe.PerLayer
            ? Bytes(shapes[0].Shape) + shapes.Skip(1).Max(p => Bytes(p.Shape)) // embed.weight is first
            : plan.GradientBytes;
        var parameters = plan.Parameters.Select(p => (p.Shape, p.Projected && optionsOf(p.Name, p.Shape).Options.Projection is { } projection
            && projection.MatrixViewOf(p.Shape) is MatrixShape m ? projection.ProjectedShape(m).Aggregate(1L, (a, b) => a * b) : (long?)null)).ToList();
        return new PeakPrediction(plan.WeightBytes, gradients, plan.StateBytes, Activations(config, e, batch, sequence), Workspace(parameters, recipe, e));
    }

    /// <summary>
    /// Bytes autograd keeps from the forward pass of B×T tokens (e the weights' element size), plus the backward's
    /// largest transient. Per decoder block: two RMSNorms keep (4 + 2e)·h per token each (the float32 input and the
    /// normalized and scaled outputs); attention keeps q and k after rotation, v, the attention output and o_proj's
    /// contiguous input (5e·h) and a float32 log-sum-exp per head; the MLP keeps gate, up, silu(gate) and their product
    /// (4e·f). The head keeps the final norm's (4 + 2e)·h and the logits in e and float32 plus the float32
    /// log-probabilities ((e + 8)·V). The backward's transient adds a float32 and an e-sized gradient of the logits
    /// and two e-sized MLP gradients.
    /// </summary>
    public static long Activations(LlamaConfig c, long e, int batch, int sequence)
    {
        long tokens = (long)batch * sequence, h = c.Hidden, f = c.Intermediate, v = c.VocabSize;
        var block = 2 * (4 + 2 * e) * h + 5 * e * h + 4L * c.Heads + 4 * e * f;
        var head = (4 + 2 * e) * h + (e + 8) * v;
        var backward = (4 + e) * v + 2 * e * f;
        return tokens * (c.Layers * block + head + backward);
    }

    /// <summary>
    /// The optimizer's transient memory during a step. A full-space parameter is updated in place by the fused kernels
    /// (nothing). A projected one allocates its projected gradient R and update direction (2·e per projected entry; the
    /// back-projection adds into the weights, same dtypes). The standard step runs phase by phase over all parameters
    /// and keeps every R and direction until it ends (Σ); the per-layer mode steps one parameter at a time (max).
    /// Stochastically rounded weights (<see cref="WeightRounding"/>) add, for one parameter at a time, the projected
    /// update's buffer of the parameter's size (e per entry) or a full-space direction: the whole parameter's with
    /// block-wise moments, 2 MiB with dense ones. At a DCT re-selection the transform of one whole gradient is a
    /// float32 copy, the complex half spectrum and the float32 result (12 bytes per entry), and the shared s×s DCT
    /// bases stay cached; projecting by the fast transform (<see cref="DctTransformMethod.FastTransformProjection"/>)
    /// builds no basis and holds 4·(5s + r + 4) bytes per row of a block of at most 64 MiB (DctTransform's workspace
    /// formula and budget).
    /// </summary>
    /// <param name="parameters">Each parameter's shape and, when projected, its projected shape's entries.</param>
    /// <param name="recipe">The recipe.</param>
    /// <param name="e">The weights' element size.</param>
    public static long Workspace(IReadOnlyList<(long[] Shape, long? ProjectedEntries)> parameters, MemoryRecipe recipe, long e)
    {
        static long Entries(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
        var settings = recipe.Settings(1);
        var projected = parameters.Where(p => p.ProjectedEntries is not null).ToList();
        var directions = projected.Select(p => 2 * e * p.ProjectedEntries!.Value).DefaultIfEmpty(0).ToList();
        var rounding = !settings.StochasticWeights ? 0
            : parameters.Max(p => p.ProjectedEntries is not null || recipe.OptimBits < 16 ? e * Entries(p.Shape) : 2L << 20);
        var step = recipe.PerLayer ? Math.Max(directions.Max(), rounding) : directions.Sum() + rounding;
        if (recipe.Kind != OptimizerKind.Dct || projected.Count == 0) return step;
        var bases = settings.DctMethod == DctTransformMethod.FastTransformProjection
            ? projected.Max(p => FastTransformBlock(p.Shape.Max(), p.Shape.Min(), p.ProjectedEntries!.Value / p.Shape.Max()))
            : projected.Select(p => p.Shape.Min()).Distinct().Sum(s => s * s * e);
        var reselection = projected.Max(p => 12 * Entries(p.Shape));
        return (recipe.PerLayer ? Math.Max(step, reselection) : step + reselection) + bases;
    }

    /// <summary>The fast transform's block: lines rows of 4·(5s + r + 4) bytes, at most 64 MiB of them (at least one row).</summary>
    private static long FastTransformBlock(long lines, long s, long r)
    {
        var perLine = 4 * (5 * s + r + 4);
        return Math.Min(lines, Math.Max(1, (64L << 20) / perLine)) * perLine;
    }

    /// <summary>Bytes per element of a float dtype.</summary>
    public static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Float64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a floating-point dtype"),
    };
}
