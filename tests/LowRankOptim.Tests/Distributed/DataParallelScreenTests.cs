using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Distributed;

/// <summary>
/// The gradient screen decides alike on every rank: when one rank's own gradient of a parameter is not finite, every
/// rank skips that parameter's step, also where only projected gradients are exchanged (the others never see that
/// rank's G). Before the ranks combined their screens, the rank with the bad gradient skipped alone and the ranks'
/// collectives no longer matched.
/// </summary>
[Collection(SerialCollection.Name)] // rank threads
public sealed class DataParallelScreenTests
{
    private const int Steps = 4, BadStep = 3, BadRank = 1;

    public static TheoryData<string> Methods() => MethodCatalog.Names();

    private sealed record Run(List<Tensor[]> Weights, long Skipped);

    private static Run Train(string method, ICommunicator communicator)
    {
        using var model = TestProblems.Mlp(7);
        using var opt = MethodCatalog.Get(method).Create(model);
        opt.Distribute(communicator);
        var weights = new List<Tensor[]>();
        for (var k = 1; k <= Steps; k++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = TestProblems.Data(200 + 10 * k + communicator.Rank, batch: 4);
            TestProblems.LossAndBackward(model, x, y);
            if (k == BadStep && communicator.Rank == BadRank)
                using (no_grad()) model.parameters().First().grad![0, 0] = float.NaN; // fc1.weight, this rank only
            opt.step();
            opt.zero_grad();
            weights.Add(model.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray());
        }
        return new Run(weights, opt.SkippedUpdates);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void ANonFiniteGradientOnOneRankSkipsTheStepOnEveryRank(string method)
    {
        var runs = ThreadCommunicator.Run(2, c => Train(method, c));
        try
        {
            runs.Should().AllSatisfy(r => r.Skipped.Should().Be(1, $"{method}: fc1.weight's step {BadStep} is skipped on both ranks, nothing else"));
            for (var k = 0; k < Steps; k++)
                for (var i = 0; i < runs[0].Weights[k].Length; i++)
                    TensorAssert.Identical(runs[1].Weights[k][i], runs[0].Weights[k][i], $"{method}, step {k + 1}, parameter {i}: rank 1 vs rank 0");
            TensorAssert.Identical(runs[0].Weights[BadStep - 1][0], runs[0].Weights[BadStep - 2][0], $"{method}: fc1.weight is unchanged by step {BadStep}");
        }
        finally
        {
            foreach (var w in runs.SelectMany(r => r.Weights).SelectMany(ws => ws)) w.Dispose();
        }
    }
}
