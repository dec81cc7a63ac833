using LowRankOptim.Bench.Model;

namespace LowRankOptim.Bench.Training;

/// <summary>
/// Everything that defines a training run apart from the optimizer and its learning rate. Each step's batch of
/// <see cref="Batch"/> sequences is split into <see cref="Accumulation"/> micro-batches whose gradients are summed
/// (the same objective: the mean of the micro-batch means); <see cref="PerLayer"/> runs the optimizer's per-layer mode
/// (gradients taken and released during backward; execution policy, the results equal up to float rounding);
/// <see cref="DType"/> is the dtype the model is built in (float32 or bfloat16).
/// </summary>
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
    LowRankSettings LowRank,
    int Accumulation = 1,
    bool PerLayer = false,
    TorchSharp.torch.ScalarType DType = TorchSharp.torch.ScalarType.Float32)
{
    /// <summary>Linear warm-up to the peak, then cosine decay to MinLrRatio × peak at the last step (GaLore's schedule).</summary>
    public double LearningRateFactor(int step)
    {
        if (step < WarmupSteps) return (step + 1.0) / WarmupSteps;
        var progress = Math.Min(1.0, (step - WarmupSteps) / (double)Math.Max(1, Steps - WarmupSteps));
        return MinLrRatio + (1 - MinLrRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
