namespace LowRankOptim.Bench.Training;

/// <summary>One training run's outcome; <see cref="OptimBits"/> is how its moments were stored (32: dense).</summary>
public sealed record RunResult(
    string Name,
    string Optimizer,
    double LearningRate,
    int Steps,
    double FinalTrainLoss,
    double ValidationLoss,
    double TokensPerSecond,
    long OptimizerStateBytes,
    IReadOnlyList<(int Step, double Loss)> TrainCurve,
    IReadOnlyList<(int Step, double Loss)> ValidationCurve,
    long PeakGradientBytes = 0,
    int OptimBits = 32)
{
    public double Perplexity => Math.Exp(ValidationLoss);
}
