using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

/// <summary>No native tensor growth: the live-tensor count stays flat over 1,000 steps, refreshes and SMMF's fused and reference paths included.</summary>
[Collection(SerialCollection.Name)]
public sealed class NativeMemoryTests
{
    [Theory]
    [InlineData("galore-std")]
    [InlineData("galore-adafactor-momentum")]
    [InlineData("galore-randomized")]
    [InlineData("dct-adamw-fast")]
    [InlineData("osd-adamw")]
    [InlineData("smmf")]                                          // fused CPU kernel
    [InlineData("smmf-reference-beta-none-no-vector-reshape")]    // reference path, unfactorized vectors
    [InlineData("smmf-l2-with-galore-linear-weights")]            // SMMF and GaLore in one optimizer
    public void LiveTensorCountStaysFlatOver1000Steps(string configuration)
    {
        using var outer = NewDisposeScope();
        var model = TestProblems.Mlp(8);
        var (x, y) = TestProblems.Data(8);
        using var opt = Optimizer.ResumeTests.Create(configuration, model);
        var schedule = optim.lr_scheduler.CosineAnnealingLR(opt, 1000);

        void Step()
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            schedule.step();
        }

        for (var i = 0; i < 10; i++) Step(); // state and bases exist from here on
        // Finalize earlier tests' undisposed tensors now, so only this loop can move the count.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var live = Tensor.TotalCount;
        var threadLive = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (var i = 0; i < 1000; i++) Step(); // update_proj_gap 3: over 300 refreshes (OSD: a basis step every step)
        if (opt.States.Any(s => s.Subspace is not null)) // the loop must have exercised the refresh path
            opt.States.Sum(s => s.Refreshes + ((s.Subspace as OnlinePcaSubspace)?.BasisSteps ?? 0)).Should().BeGreaterThan(300);
        Tensor.TotalCount.Should().Be(live);
        DisposeScopeManager.Statistics.ThreadTotalLiveCount.Should().Be(threadLive);
    }
}
