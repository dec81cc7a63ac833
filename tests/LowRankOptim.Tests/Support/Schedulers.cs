using TorchSharp;
using static TorchSharp.torch.optim;

namespace LowRankOptim.Tests.Support;

/// <summary>Every TorchSharp LR scheduler that applies to an optimizer with learning rates, as the tests build them (16 steps).</summary>
public static class Schedulers
{
    public static readonly IReadOnlyList<string> Names =
        ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "LinearLR", "SequentialLR", "OneCycleLR", "ReduceLROnPlateau"];

    /// <summary>
    /// Builds <paramref name="name"/> over <paramref name="opt"/>. OneCycleLR cycles β1 through <c>IBetas</c> unless
    /// <paramref name="cycleMomentum"/> is false (rules without betas); TorchSharp's OneCycleLR reads the group
    /// index as its phase index, so it is only right on a single-group optimizer.
    /// </summary>
    public static lr_scheduler.LRScheduler Create(string name, torch.optim.Optimizer opt, bool cycleMomentum = true) => name switch
    {
        "StepLR" => lr_scheduler.StepLR(opt, 4, 0.5),
        "MultiStepLR" => lr_scheduler.MultiStepLR(opt, [3, 7, 12], 0.3),
        "ExponentialLR" => lr_scheduler.ExponentialLR(opt, 0.9),
        "CosineAnnealingLR" => lr_scheduler.CosineAnnealingLR(opt, 10, 1e-4),
        "LambdaLR" => lr_scheduler.LambdaLR(opt, e => 1.0 / (1 + e)),
        "LinearLR" => lr_scheduler.LinearLR(opt, 0.2, 1.0, 6),
        "SequentialLR" => lr_scheduler.SequentialLR(opt,
            [lr_scheduler.LinearLR(opt, 0.1, 1.0, 5), lr_scheduler.CosineAnnealingLR(opt, 10, 0)], [5]),
        "OneCycleLR" => lr_scheduler.OneCycleLR(opt, 0.05, total_steps: 16, cycle_momentum: cycleMomentum),
        "ReduceLROnPlateau" => lr_scheduler.ReduceLROnPlateau(opt, factor: 0.5, patience: 1),
        _ => throw new ArgumentException(name),
    };

    /// <summary>One scheduler step; a flat metric makes ReduceLROnPlateau reduce after its patience.</summary>
    public static void Step(string name, lr_scheduler.LRScheduler schedule)
    {
        if (name == "ReduceLROnPlateau") schedule.step(1.0);
        else schedule.step();
    }
}
