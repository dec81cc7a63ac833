using FluentAssertions;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Reporting;

/// <summary>
/// The optimizer tells the user what they get (issue 13, point 2): which parameters are projected at which rank,
/// which were clamped to full rank (a warning through the library's channel, never the console), and the state
/// against AdamW's; the groups' options are readable without a cast; unset options are reported as unset.
/// </summary>
public sealed class SummaryAndWarningTests
{
    /// <summary>The case: the README's rank 128 on a small model (every matrix is 64 wide or less).</summary>
    private static Sequential SmallModel() => nn.Sequential(("fc1", nn.Linear(48, 64)), ("act", nn.ReLU()), ("fc2", nn.Linear(64, 40)));

    [Fact]
    public void RankAboveTheMatrixSizeIsReportedAsFullRankWithAWarningRaisedDuringConstruction()
    {
        var model = SmallModel();
        var seen = new List<(object? Sender, OptimizerWarning Warning)>();
        EventHandler<OptimizerWarning> handler = (sender, w) => { lock (seen) seen.Add((sender, w)); };
        LowRankOptimizer.AnyWarningRaised += handler;
        LowRankOptimizer opt;
        try
        {
            opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 1e-3, rank: 128, update_proj_gap: 200, scale: 0.25);
        }
        finally { LowRankOptimizer.AnyWarningRaised -= handler; }
        using var _ = opt;

        // Raised while the constructor ran, so only the static event and the list can carry it.
        var mine = seen.Where(s => ReferenceEquals(s.Sender, opt)).Select(s => s.Warning).ToList();
        mine.Should().ContainSingle().Which.Should().BeSameAs(opt.Warnings.Single());
        var warning = opt.Warnings.Single();
        warning.Kind.Should().Be(OptimizerWarningKind.FullRank);
        warning.Group.Should().Be(0);
        warning.Parameters.Should().Equal(0, 1);
        warning.Message.Should().Contain("rank 128 reaches min(m, n) for 2 of its 2 projected matrices (64×48, 40×64)")
            .And.Contain("save nothing").And.Contain("AdamW's").And.Contain("a quarter of it, here 10");

        var summary = opt.Summary(model.named_parameters());
        summary.Parameters.Select(p => p.Name).Should().Equal("fc1.weight", "fc2.weight", "fc1.bias", "fc2.bias");
        var fc1 = summary.Parameters[0];
        (fc1.Projected, fc1.RequestedRank, fc1.Rank, fc1.FullRank, fc1.SavesMemory).Should().Be((true, 128L, 48L, true, false));
        fc1.AdamWStateBytes.Should().Be(2 * 64 * 48 * 4);
        fc1.StateBytes.Should().BeGreaterThan(fc1.AdamWStateBytes, "a full-rank basis comes on top of full-size moments");
        summary.FullRank.Select(p => p.Name).Should().Equal("fc1.weight", "fc2.weight");
        summary.StateRatio.Should().BeGreaterThan(1.0);
        var text = summary.ToString();
        text.Should().Contain("2 projected (2 at full rank: no saving)").And.Contain("fc1.weight").And.Contain("48 (asked 128)").And.Contain("full rank: no saving");
    }

    [Fact]
    public void ASmallRankProjectsWithoutWarningAndTheSummaryMatchesTheAllocatedState()
    {
        var model = SmallModel();
        using var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 1e-3, rank: 8);
        opt.Warnings.Should().BeEmpty();
        var summary = opt.Summary();
        summary.Parameters.Select(p => p.Name).Should().Equal("#0", "#1", "#2", "#3");
        summary.Parameters.Take(2).Should().AllSatisfy(p => { p.Rank.Should().Be(8); p.FullRank.Should().BeFalse(); p.SavesMemory.Should().BeTrue(); });
        summary.Parameters.Skip(2).Should().AllSatisfy(p => { p.Projected.Should().BeFalse(); p.Rank.Should().BeNull(); p.StateBytes.Should().Be(p.AdamWStateBytes); });
        summary.StateRatio.Should().BeLessThan(0.5);

        var (x, y) = (randn(16, 48), randn(16, 40));
        using (var scope = NewDisposeScope()) nn.functional.mse_loss(model.call(x), y).backward();
        opt.step();
        summary.StateBytes.Should().Be(opt.StateBytes, "the summary's figures are the planner's, equal to the allocated state after one step");
    }

    [Fact]
    public void AWarningOfALaterGroupReachesTheInstanceEvent()
    {
        using var opt = LowRank.GaLore([new Parameter(randn(32, 32))], lr: 1e-3, rank: 4);
        var raised = new List<OptimizerWarning>();
        opt.WarningRaised += (_, w) => raised.Add(w);
        opt.add_param_group(new LowRankParamGroup([new Parameter(randn(6, 10))], new LowRankOptions { Projection = new SvdProjection(Rank: 16) }));
        raised.Should().ContainSingle().Which.Group.Should().Be(1);
        opt.Warnings.Should().Equal(raised);
    }

    [Fact]
    public void GroupsGiveTheirOptionsWithoutACast()
    {
        var model = SmallModel();
        var split = LowRank.SplitParameters(model);
        using var opt = new LowRankOptimizer(
        [
            new LowRankParamGroup(split[0].Parameters, LowRankPresets.GaLore(lr: 1e-3, rank: 8)),
            new LowRankParamGroup(split[1].Parameters, LowRankPresets.Smmf(lr: 2e-3)),
        ], LowRankPresets.AdamW(lr: 1e-3));
        opt.Groups.Should().HaveCount(2);
        opt.Groups[0].Options.Projection.Should().BeOfType<SvdProjection>().Which.Rank.Should().Be(8);
        opt.Groups[1].Options.LearningRate.Should().Be(2e-3);
        opt.Groups[1].Options.Rule.Should().BeOfType<SmmfConfig>();
    }

    [Fact]
    public void UnsetOptionsAreNamedTogetherAsNotSet()
    {
        var act = () => new LowRankOptimizer([new LowRankParamGroup([new Parameter(randn(4, 4))])], new LowRankOptions());
        act.Should().Throw<ArgumentException>()
            .WithMessage("parameter group 0: lr, weight_decay, decay_order, projection, rule are not set, neither on the group's options nor on the optimizer's defaults.*LowRankPresets*")
            .Which.ParamName.Should().Be("lr");

        var partly = () => new LowRankOptimizer([new LowRankParamGroup([new Parameter(randn(4, 4))])], new LowRankOptions { LearningRate = 1e-3, WeightDecay = 0 });
        partly.Should().Throw<ArgumentException>().WithMessage("parameter group 0: decay_order, projection, rule are not set*");

        // Set but invalid is still described as invalid.
        var invalid = () => LowRank.AdamW([new Parameter(randn(4, 4))], lr: 1e-3, weight_decay: -1);
        invalid.Should().Throw<ArgumentException>().WithMessage("*weight_decay must be finite and >= 0*");
    }
}
