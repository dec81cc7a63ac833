using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method whose update follows the group learning rates, under every TorchSharp LR scheduler that
/// applies (<see cref="Schedulers"/>; OneCycleLR cycles β1 where every group's rule has betas): at every step each
/// group's learning rate (and betas) equal those the scheduler gives TorchSharp's AdamW with the same groups, and
/// the run equals, bit for bit, a run whose learning rates and betas are set by hand to the same values, so the
/// steps take them from the groups and from nowhere else.
/// </summary>
public sealed class EverySchedulerTests
{
    private const int Steps = 16;

    public static TheoryData<string, string> MethodsAndSchedulers()
    {
        var data = new TheoryData<string, string>();
        foreach (var m in MethodCatalog.All.Where(m => m.UsesLearningRate))
            foreach (var s in Schedulers.Names) data.Add(m.Name, s);
        return data;
    }

    private sealed record GroupValues(double Lr, double InitialLr, (double, double)? Betas);

    private static GroupValues[] Values(IEnumerable<optim.ILearningRateController> groups, bool betas) =>
        groups.Select(g => new GroupValues(g.LearningRate, g.InitialLearningRate, betas ? ((optim.IBetas)g).Betas : null)).ToArray();

    [Theory]
    [MemberData(nameof(MethodsAndSchedulers))]
    public void SchedulerSetsTheGroupsAsOnTorchSharpAdamWAndTheStepsFollowThem(string method, string scheduler)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        var (x, y) = TestProblems.Data(11);
        var model = TestProblems.Mlp(11);
        using var opt = row.Create(model);
        var groups = opt.ParamGroups.Cast<LowRankParamGroup>().ToList();
        // TorchSharp's AdamW with the same groups (learning rates, betas) over stand-in parameters: the scheduler's reference.
        using var torchOpt = optim.AdamW(groups.Select(g =>
        {
            var (beta1, beta2) = row.HasBetas ? g.Betas : (0.9, 0.999);
            return new AdamW.ParamGroup([new Parameter(zeros(1))], lr: g.LearningRate, beta1: beta1, beta2: beta2);
        }));
        var ours = Schedulers.Create(scheduler, opt, cycleMomentum: row.HasBetas);
        var theirs = Schedulers.Create(scheduler, torchOpt, cycleMomentum: row.HasBetas);

        var applied = new List<GroupValues[]>();
        for (var step = 0; step < Steps; step++)
        {
            var values = Values(opt.ParamGroups, row.HasBetas);
            var expected = Values(torchOpt.ParamGroups, row.HasBetas);
            values.Select(v => (v.Lr, v.Betas)).Should().Equal(expected.Select(v => (v.Lr, v.Betas)), $"{method} under {scheduler}, step {step}");
            applied.Add(values);
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            Schedulers.Step(scheduler, ours);
            Schedulers.Step(scheduler, theirs);
        }
        applied.Select(v => v[0].Lr).Distinct().Should().HaveCountGreaterThan(1, $"{scheduler} changed the learning rate");
        if (scheduler == "OneCycleLR" && row.HasBetas)
            applied.Select(v => v[0].Betas!.Value.Item1).Distinct().Should().HaveCountGreaterThan(1, "OneCycleLR cycles β1");

        var manual = TestProblems.Mlp(11);
        using var manualOpt = row.Create(manual);
        foreach (var values in applied)
        {
            foreach (var (g, v) in manualOpt.ParamGroups.Cast<LowRankParamGroup>().Zip(values))
            {
                (g.LearningRate, g.InitialLearningRate) = (v.Lr, v.InitialLr);
                if (v.Betas is { } betas) g.Betas = betas;
            }
            TestProblems.LossAndBackward(manual, x, y);
            manualOpt.step();
            manualOpt.zero_grad();
        }
        foreach (var ((name, p), q) in model.named_parameters().Zip(manual.parameters()))
        {
            p.isfinite().all().item<bool>().Should().BeTrue($"{method} under {scheduler}: {name} is finite");
            TensorAssert.Identical(p, q, $"{method} under {scheduler} vs the same learning rates set by hand: {name}");
        }
    }
}
