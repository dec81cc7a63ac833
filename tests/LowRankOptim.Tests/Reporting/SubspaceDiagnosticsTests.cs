using FluentAssertions;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Reporting;

/// <summary>
/// Subspace diagnostics at refreshes (issue 13, point 2; jiaweizzhao/GaLore#15): the share of the gradient the
/// subspace keeps, the overlap of successive bases, an optional rank suggestion; observing never changes a step.
/// </summary>
public sealed class SubspaceDiagnosticsTests
{
    /// <summary>A 40×24 gradient of exact rank <paramref name="rank"/> with singular values 1, 2, … (seeded).</summary>
    private static Tensor LowRankGradient(int rank, ulong seed, int rows = 40, int cols = 24)
    {
        using var g = new Generator(seed);
        var (u, _) = linalg.qr(randn(rows, rank, generator: g));
        var (v, _) = linalg.qr(randn(cols, rank, generator: g));
        return u.mm(diag(arange(1, rank + 1, dtype: float32))).mm(v.t());
    }

    [Fact]
    public void AGradientInsideTheRankIsKeptWholeAndAFixedGradientKeepsItsBasis()
    {
        var p = new Parameter(zeros(40, 24));
        using var opt = LowRank.GaLore([p], lr: 1e-3, rank: 6, update_proj_gap: 2);
        var seen = new List<SubspaceObservation>();
        opt.Diagnostics.Observed += (_, o) => seen.Add(o);
        var gradient = LowRankGradient(4, 1);
        for (var k = 0; k < 5; k++) opt.StepParameter(p, gradient);

        seen.Select(o => o.Step).Should().Equal(1, 3, 5); // GaLore refreshes at 1, T+1, 2T+1
        seen.Should().AllSatisfy(o => o.KeptShare.Should().BeApproximately(1.0, 1e-4));
        seen[0].BasisOverlap.Should().BeNull("there is no previous basis at the first refresh");
        // Rank 6 > the gradient's rank 4: the top 4 directions repeat, the other 2 are arbitrary, so overlap ≥ 4/6.
        seen.Skip(1).Should().AllSatisfy(o => o.BasisOverlap.Should().BeGreaterThanOrEqualTo(4.0 / 6 - 1e-4));
        seen.Should().AllSatisfy(o => o.SuggestedRank.Should().BeNull("suggestions are off by default"));
        var d = opt.Diagnostics.Of(0)!;
        (d.Refreshes, d.MinKeptShare > 0.9999).Should().Be((3, true));
        opt.Summary().Diagnostics.Should().ContainKey(0);
    }

    [Fact]
    public void ARankBelowTheGradientsKeepsTheTopSingularValuesShareAndSuggestsARank()
    {
        var p = new Parameter(zeros(40, 24));
        using var opt = LowRank.GaLore([p], lr: 1e-3, rank: 2, update_proj_gap: 10);
        opt.Diagnostics.SuggestRanks = true;
        opt.Diagnostics.TargetShare = 0.95;
        opt.StepParameter(p, LowRankGradient(8, 2));
        var d = opt.Diagnostics.Of(0)!;
        // σ = 1…8: the top two keep sqrt((64 + 49) / 204) of the norm.
        d.LastKeptShare.Should().BeApproximately(Math.Sqrt(113.0 / 204), 1e-4);
        // The smallest k with Σ top-k σ² / 204 ≥ 0.95² = 0.9025: top 5 give 190/204 = 0.931, top 4 give 174/204 = 0.853.
        d.SuggestedRank.Should().Be(5);
    }

    [Fact]
    public void DctColumnsReportTheirOverlapAsSharedColumns()
    {
        var p = new Parameter(zeros(40, 24));
        using var opt = LowRank.DctAdamW([p], lr: 1e-3, rank: 6, update_proj_gap: 1);
        var g = LowRankGradient(3, 3);
        opt.StepParameter(p, g);
        opt.StepParameter(p, g);
        var d = opt.Diagnostics.Of(0)!;
        d.Refreshes.Should().BeGreaterThanOrEqualTo(2);
        d.LastOverlap.Should().Be(1.0, "the same gradient selects the same columns");
        d.LastKeptShare.Should().BeInRange(0.0, 1.0);
    }

    [Fact]
    public void ObservingNeverChangesTheStepsAndCanBeTurnedOff()
    {
        var a = new Parameter(zeros(40, 24));
        var b = new Parameter(zeros(40, 24));
        using var on = LowRank.GaLore([a], lr: 1e-2, rank: 3, update_proj_gap: 2);
        using var off = LowRank.GaLore([b], lr: 1e-2, rank: 3, update_proj_gap: 2);
        on.Diagnostics.SuggestRanks = true;
        off.Diagnostics.Enabled = false;
        for (var k = 0; k < 6; k++)
        {
            var g = LowRankGradient(5, (ulong)(10 + k));
            on.StepParameter(a, g);
            off.StepParameter(b, g);
        }
        a.eq(b).all().item<bool>().Should().BeTrue("diagnostics only read the step's tensors");
        on.Diagnostics.All.Should().ContainSingle();
        off.Diagnostics.All.Should().BeEmpty();
        var reset = () => on.Diagnostics.TargetShare = 0;
        reset.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void RandomProjectionsAreNotObserved()
    {
        var p = new Parameter(zeros(40, 24));
        using var opt = LowRank.Apollo([p], lr: 1e-3, rank: 4);
        opt.StepParameter(p, LowRankGradient(3, 4));
        opt.Diagnostics.All.Should().BeEmpty("a random projection's ‖R‖/‖G‖ is not a kept share");
    }
}
