using FluentAssertions;
using LowRankOptim.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace LowRankOptim.Tests.PerLayer;

/// <summary>
/// Every catalog method: the per-layer mode (gradients taken and released during backward) equals the standard path
/// within 1e-6 relative over 50 steps that cross refreshes, under OneCycleLR, for accumulation 1 and 4, with and
/// without global-norm clipping (which must clip some steps and not others, with the total norm clip_grad_norm_ finds). Serial and on one libtorch thread: the
/// 68 runs take tiny ops, which a second intra-op thread slows down many times on a shared machine.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class PerLayerEquivalenceTests(ITestOutputHelper output)
{
    private const int Steps = 50;
    private const double Tolerance = 1e-6;
    private const double ClipNorm = 0.5; // per micro-batch: the k-step sum's norm grows with k

    public static TheoryData<string, int, bool> Cases()
    {
        var data = new TheoryData<string, int, bool>();
        foreach (var m in MethodCatalog.All)
            foreach (var k in new[] { 1, 4 })
                foreach (var clip in new[] { false, true })
                    data.Add(m.Name, k, clip);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PerLayerModeEqualsTheStandardPath(string method, int accumulation, bool clip)
    {
        var o = TorchThreads.OnOne(() => PerLayerRuns.Compare(MethodCatalog.Get(method), accumulation, clip ? ClipNorm * accumulation : null, Steps));
        output.WriteLine($"{method} k={accumulation} clip={clip}: worst {o.WorstRelativeDifference:E2} ({o.WorstParameter}), clipped {o.Clipped} (norms {o.MinNorm:F3}..{o.MaxNorm:F3}, worst norm difference {o.WorstNormDifference:E2}), peak {o.PeakStandard} vs {o.PeakPerLayer}");
        o.WorstRelativeDifference.Should().BeLessThanOrEqualTo(Tolerance, $"{method}, accumulation {accumulation}, clipping {clip}: worst parameter {o.WorstParameter}");
        o.PerLayerSteps.Should().Equal(o.Steps, "one update per step of k micro-batches");
        o.PerLayerRefreshes.Should().Equal(o.Refreshes, "the same refreshes");
        if (!clip) return;
        o.Clipped.Should().BeInRange(1, Steps - 1, "the threshold clips some steps and not others");
        o.WorstNormDifference.Should().BeLessThanOrEqualTo(Tolerance, "LastGradNorm is clip_grad_norm_'s total norm");
    }
}
