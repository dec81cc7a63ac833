using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.optim;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// Every TorchSharp LR scheduler that applies drives our optimizer exactly as it drives TorchSharp's AdamW:
/// same learning rates (and betas for OneCycleLR) per group at every step, same parameters.
/// </summary>
public sealed class SchedulerTests
{
    public static TheoryData<string> Schedulers() =>
        ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "LinearLR", "SequentialLR", "OneCycleLR", "ReduceLROnPlateau"];

    private static lr_scheduler.LRScheduler Create(string name, optim.Optimizer opt) => name switch
    {
        "StepLR" => lr_scheduler.StepLR(opt, 4, 0.5),
        "MultiStepLR" => lr_scheduler.MultiStepLR(opt, [3, 7, 12], 0.3),
        "ExponentialLR" => lr_scheduler.ExponentialLR(opt, 0.9),
        "CosineAnnealingLR" => lr_scheduler.CosineAnnealingLR(opt, 10, 1e-4),
        "LambdaLR" => lr_scheduler.LambdaLR(opt, e => 1.0 / (1 + e)),
        "LinearLR" => lr_scheduler.LinearLR(opt, 0.2, 1.0, 6),
        "SequentialLR" => lr_scheduler.SequentialLR(opt,
            [lr_scheduler.LinearLR(opt, 0.1, 1.0, 5), lr_scheduler.CosineAnnealingLR(opt, 10, 0)], [5]),
        // OneCycleLR uses the group index as its phase index with several groups (a TorchSharp bug), so
        // it is compared on a single-group optimizer; it cycles β1 through IBetas.
        "OneCycleLR" => lr_scheduler.OneCycleLR(opt, 0.05, total_steps: 16),
        "ReduceLROnPlateau" => lr_scheduler.ReduceLROnPlateau(opt, factor: 0.5, patience: 1),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Schedulers))]
    public void SchedulerDrivesLowRankOptimizerLikeTorchSharpAdamW(string name)
    {
        using var scope = NewDisposeScope();
        var oneGroup = name == "OneCycleLR";
        var reference = TestProblems.Mlp(11);
        var ours = TestProblems.Mlp(11);
        var (x, y) = TestProblems.Data(11);
        var torchOpt = oneGroup
            ? optim.AdamW(reference.parameters(), lr: 0.01)
            : optim.AdamW([
                new AdamW.ParamGroup(reference.parameters().Take(2), lr: 0.01, weight_decay: 0.01),
                new AdamW.ParamGroup(reference.parameters().Skip(2), lr: 0.03, weight_decay: 0.01)]);
        var ourOpt = oneGroup
            ? LowRank.AdamW(ours.parameters(), lr: 0.01)
            : new LowRankOptimizer([
                new LowRankParamGroup(ours.parameters().Take(2), new LowRankOptions { LearningRate = 0.01, WeightDecay = 0.01 }),
                new LowRankParamGroup(ours.parameters().Skip(2), new LowRankOptions { LearningRate = 0.03, WeightDecay = 0.01 })],
                LowRank.AdamW([], lr: 0.01).Defaults);
        using var _ = torchOpt;
        using var __ = ourOpt;
        var torchSchedule = Create(name, torchOpt);
        var ourSchedule = Create(name, ourOpt);

        for (var step = 0; step < 16; step++)
        {
            TestProblems.LossAndBackward(reference, x, y);
            TestProblems.LossAndBackward(ours, x, y);
            torchOpt.step(); ourOpt.step();
            torchOpt.zero_grad(); ourOpt.zero_grad();
            // A flat metric makes ReduceLROnPlateau reduce after its patience.
            if (name == "ReduceLROnPlateau") { torchSchedule.step(1.0); ourSchedule.step(1.0); }
            else { torchSchedule.step(); ourSchedule.step(); }

            ourOpt.ParamGroups.Select(g => g.LearningRate).Should().Equal(torchOpt.ParamGroups.Select(g => g.LearningRate), $"{name} step {step}");
            if (oneGroup)
                ((IBetas)ourOpt.ParamGroups.Single()).Betas.Should().Be(((IBetas)torchOpt.ParamGroups.Single()).Betas);
        }
        foreach (var (p, q) in reference.parameters().Zip(ours.parameters()))
            TensorAssert.Close(q, p, 1e-6, 1e-6, name);
        if (oneGroup) ((IBetas)ourOpt.ParamGroups.Single()).Betas.Item1.Should().NotBe(0.9, "OneCycleLR cycles β1");
        var distinct = ourOpt.ParamGroups.First().LearningRate;
        distinct.Should().NotBe(0.01, "the scheduler changed the learning rate");
    }

    [Fact]
    public void OneCycleLRWithAdafactorNeedsCycleMomentumOff()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(1);
        using var opt = LowRank.GaLoreAdafactor(LowRank.SplitParameters(model), lr: 0.01, relative_step: false, rank: 2);
        var act = () => lr_scheduler.OneCycleLR(opt, 0.05, total_steps: 10);
        act.Should().Throw<NotSupportedException>().WithMessage("*cycle_momentum: false*");
        lr_scheduler.OneCycleLR(opt, 0.05, total_steps: 10, cycle_momentum: false).Should().NotBeNull();
    }

    [Fact]
    public void StepWithClosureReturnsTheLossAndZeroGradReleasesGradients()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(2);
        var (x, y) = TestProblems.Data(2);
        using var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 4);
        var calls = 0;
        var loss = opt.step(() =>
        {
            calls++;
            opt.zero_grad();
            var l = nn.functional.mse_loss(model.call(x), y);
            l.backward();
            return l;
        });
        calls.Should().Be(1);
        loss.Should().NotBeNull();
        loss.item<float>().Should().BePositive();
        opt.States.Should().OnlyContain(s => s.Step == 1);
        opt.zero_grad();
        model.parameters().Should().OnlyContain(p => ReferenceEquals(p.grad, null));
    }
}
