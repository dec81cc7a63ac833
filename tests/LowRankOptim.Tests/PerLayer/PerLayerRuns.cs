using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.PerLayer;

/// <summary>A custom module with a parameter of its own: x ⊙ w.</summary>
public sealed class Scale : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public Scale(long size) : base(nameof(Scale))
    {
        weight = new Parameter(ones(size));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => x.mul(weight);
}

/// <summary>
/// The per-layer tests' model and the side-by-side run of the standard path and the per-layer mode. The model has the
/// catalog's fc1 (20×12) and fc2 (6×20) between a custom module, a LayerNorm and tanh: the custom module's input (the
/// data) cannot be tapped, so its parameter waits for step(); fc1, the norm and fc2 are taken during backward.
/// </summary>
public static class PerLayerRuns
{
    public const int Input = 12, Hidden = 20, Output = 6, Batch = 8;

    public static Sequential Model(long seed)
    {
        var model = nn.Sequential(("scale", new Scale(Input)), ("fc1", nn.Linear(Input, Hidden)), ("norm", nn.LayerNorm(Hidden)),
            ("act", nn.Tanh()), ("fc2", nn.Linear(Hidden, Output)));
        TestProblems.Reseed(model, seed);
        return model;
    }

    /// <summary>Micro-batch <paramref name="micro"/> of step <paramref name="step"/>: seeded inputs and targets.</summary>
    public static (Tensor X, Tensor Y) Data(int step, int micro)
    {
        using var gen = new Generator((ulong)(7919 * step + 31 * micro + 17));
        return (randn([Batch, Input], generator: gen), randn([Batch, Output], generator: gen));
    }

    public static void Backward(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        nn.functional.mse_loss(model.call(x), y).backward();
    }

    /// <summary>
    /// What a side-by-side run found: the worst relative difference over parameters, ‖W_perlayer − W_standard‖ /
    /// ‖W_standard‖, and its parameter; the steps at which clipping scaled the gradient, the range of the standard path's
    /// total norms and the worst relative difference of the per-layer mode's (<see cref="GradientRelease.LastGradNorm"/>)
    /// from them; the states' step counters and
    /// subspace progress (refreshes + basis steps), standard then per-layer; the peak gradient bytes of each path.
    /// </summary>
    public sealed record Outcome(double WorstRelativeDifference, string WorstParameter, int Clipped, double MinNorm, double MaxNorm, double WorstNormDifference, long[] Steps, long[] PerLayerSteps,
        long?[] Refreshes, long?[] PerLayerRefreshes, long PeakStandard, long PeakPerLayer);

    /// <summary>
    /// Trains two copies of <see cref="Model"/> with <paramref name="method"/> and OneCycleLR (β1 cycling where the
    /// rules have betas) for <paramref name="steps"/> steps of <paramref name="k"/> micro-batches: the standard path
    /// (backward k times, clip_grad_norm_, step) and the per-layer mode (backward k times, step). With
    /// <paramref name="stepEveryMicroBatch"/> the per-layer copy instead steps after every micro-batch (k = 1), the
    /// mistake of per-layer optimizers that ignore accumulation.
    /// </summary>
    public static Outcome Compare(CatalogMethod method, int k, double? clip, int steps, bool stepEveryMicroBatch = false)
    {
        using var scope = NewDisposeScope();
        var standard = Model(3);
        var perLayer = Model(3);
        using var optA = method.Create(standard);
        using var optB = method.Create(perLayer);
        // A rule that sets its own step size (Adafactor's relative step) takes no learning rate, so no schedule.
        var schedA = method.UsesLearningRate ? optim.lr_scheduler.OneCycleLR(optA, 0.02, total_steps: steps + 1, cycle_momentum: method.HasBetas) : null;
        var schedB = method.UsesLearningRate ? optim.lr_scheduler.OneCycleLR(optB, 0.02, total_steps: steps + 1, cycle_momentum: method.HasBetas) : null;
        using var release = optB.ReleaseGradientsDuringBackward(perLayer, accumulation_steps: stepEveryMicroBatch ? 1 : k, max_grad_norm: clip);
        var clipped = 0;
        var norms = new List<double>();
        var worstNorm = 0.0;
        long peakA = 0, peakB = 0;
        for (var step = 0; step < steps; step++)
        {
            for (var micro = 0; micro < k; micro++)
            {
                var (x, y) = Data(step, micro);
                Backward(standard, x, y);
                Backward(perLayer, x, y);
                if (stepEveryMicroBatch) optB.step();
            }
            if (clip is { } c)
            {
                var norm = nn.utils.clip_grad_norm_(standard.parameters(), c);
                if (norm > c) clipped++;
                norms.Add(norm);
            }
            optA.step();
            if (!stepEveryMicroBatch) optB.step();
            if (clip is not null && !stepEveryMicroBatch) worstNorm = Math.Max(worstNorm, Math.Abs(release.LastGradNorm - norms[^1]) / norms[^1]);
            optA.zero_grad();
            optB.zero_grad();
            schedA?.step();
            schedB?.step();
            peakA = Math.Max(peakA, optA.PeakGradientBytes);
            peakB = Math.Max(peakB, optB.PeakGradientBytes);
        }
        var worst = 0.0;
        var worstName = "";
        foreach (var ((name, a), b) in standard.named_parameters().Zip(perLayer.parameters()))
        {
            var d = (b - a).norm().item<float>() / a.norm().item<float>();
            if (!(d <= worst)) (worst, worstName) = (double.IsNaN(d) ? double.PositiveInfinity : d, name);
        }
        return new Outcome(worst, worstName, clipped, norms.Count > 0 ? norms.Min() : 0, norms.Count > 0 ? norms.Max() : 0, worstNorm, optA.States.Select(s => s.Step).ToArray(), optB.States.Select(s => s.Step).ToArray(),
            optA.States.Select(MethodCatalog.SubspaceProgress).ToArray(), optB.States.Select(MethodCatalog.SubspaceProgress).ToArray(), peakA, peakB);
    }
}
