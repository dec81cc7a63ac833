using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Smmf;

/// <summary>No native tensor growth over many SMMF steps, on the fused kernel and on the reference path.</summary>
[Collection(SerialCollection.Name)]
public sealed class SmmfNativeMemoryTests
{
    [Theory]
    [InlineData("smmf")]
    [InlineData("smmf-reference-beta-none-no-vector-reshape")]
    [InlineData("smmf-l2-with-galore-linear-weights")]
    public void LiveTensorCountStaysFlatOver300Steps(string configuration)
    {
        using var outer = NewDisposeScope();
        var model = TestProblems.Mlp(8);
        var (x, y) = TestProblems.Data(8);
        using var opt = Optimizer.ResumeTests.Create(configuration, model);

        void Step()
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }

        for (var i = 0; i < 5; i++) Step();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var live = Tensor.TotalCount;
        var threadLive = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (var i = 0; i < 300; i++) Step();
        Tensor.TotalCount.Should().Be(live);
        DisposeScopeManager.Statistics.ThreadTotalLiveCount.Should().Be(threadLive);
    }
}
