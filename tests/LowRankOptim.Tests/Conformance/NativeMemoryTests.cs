using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method: no native tensor growth. Once state, bases and residuals exist, the live-tensor count
/// stays flat over 200 more steps with a changing learning rate, in which every subspace is refreshed (or, for
/// Online Subspace Descent, its basis stepped) many times. One leaked tensor per step or per refresh shows.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class NativeMemoryTests
{
    private const int Warmup = 10, Steps = 200;

    public static TheoryData<string> Methods() => MethodCatalog.Names();

    [Theory]
    [MemberData(nameof(Methods))]
    public void LiveTensorCountStaysFlat(string method)
    {
        using var outer = NewDisposeScope();
        var model = TestProblems.Mlp(8);
        var (x, y) = TestProblems.Data(8);
        using var opt = MethodCatalog.Get(method).Create(model);
        var schedule = optim.lr_scheduler.CosineAnnealingLR(opt, Warmup + Steps);

        void Step()
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            schedule.step();
        }

        for (var i = 0; i < Warmup; i++) Step(); // state, bases and the residuals (warm-up ≤ 7 steps) exist from here on
        var progress = opt.States.Select(MethodCatalog.SubspaceProgress).ToArray();
        // Finalize earlier tests' undisposed tensors now, so only this loop can move the count.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var live = Tensor.TotalCount;
        var threadLive = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (var i = 0; i < Steps; i++) Step();
        Tensor.TotalCount.Should().Be(live);
        DisposeScopeManager.Statistics.ThreadTotalLiveCount.Should().Be(threadLive);

        // The loop exercised the refresh path of every projected parameter (update_proj_gap ≤ 5 in the catalog).
        foreach (var (state, before) in opt.States.Zip(progress))
            if (before is long b)
                MethodCatalog.SubspaceProgress(state).Should().BeGreaterThanOrEqualTo(b + Steps / 5, $"{method}: parameter {state.Index} refreshes in the loop");
    }
}
