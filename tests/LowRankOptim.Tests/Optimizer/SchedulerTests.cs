using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.optim;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// AdamW under every TorchSharp LR scheduler that applies equals TorchSharp's AdamW under it: same learning
/// rates (and betas for OneCycleLR) per group at every step, same parameters. Every catalog method's learning
/// rates under every scheduler: Conformance/EverySchedulerTests.
/// </summary>
public sealed class SchedulerTests
{
    public static TheoryData<string> Names() => [.. Schedulers.Names];

    [Theory]
    [MemberData(nameof(Names))]
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
        var torchSchedule = Schedulers.Create(name, torchOpt);
        var ourSchedule = Schedulers.Create(name, ourOpt);

        for (var step = 0; step < 16; step++)
        {
            TestProblems.LossAndBackward(reference, x, y);
            TestProblems.LossAndBackward(ours, x, y);
            torchOpt.step(); ourOpt.step();
            torchOpt.zero_grad(); ourOpt.zero_grad();
            Schedulers.Step(name, torchSchedule);
            Schedulers.Step(name, ourSchedule);

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
