using LowRankOptim.Bench.Model;

namespace LowRankOptim.Bench.Training;

/// <summary>Everything that defines a training run apart from the optimizer and its learning rate.</summary>
public sealed record TrainSettings(
    LlamaConfig Model,
    int Steps,
    int Batch,
    int Sequence,
    int WarmupSteps,
    double MinLrRatio,
    double ClipNorm,
    long Seed,
    int EvalEvery,
    int EvalBatches,
    int CheckpointEvery,
    LowRankSettings LowRank)
{
    /// <summary>Linear warm-up to the peak, then cosine decay to MinLrRatio × peak at the last step (GaLore's schedule).</summary>
    public double LearningRateFactor(int step)
    {
        if (step < WarmupSteps) return (step + 1.0) / WarmupSteps;
        var progress = Math.Min(1.0, (step - WarmupSteps) / (double)Math.Max(1, Steps - WarmupSteps));
        return MinLrRatio + (1 - MinLrRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
