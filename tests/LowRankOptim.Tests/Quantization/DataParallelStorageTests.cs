using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Quantization;

/// <summary>
/// Data parallel over 2 ranks (threads, <see cref="ThreadCommunicator"/>) with compressed moments: the ranks' weights are
/// bit-identical after every step, sharded state gives the replicated state's weights bit for bit, and the sharded rule
/// state is the compressed state split over the ranks. Stochastic rounding draws the same numbers on every rank (its key
/// is the parameter, the entry and the step, not the rank).
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class DataParallelStorageTests
{
    private const int Steps = 12, PerRank = 4, Ranks = 2;

    private static readonly MomentStorage Storage = new(MomentFormat.Blockwise8Bit, StateRounding.Stochastic, Seed: 4, MinElements: 256);

    private sealed record Run(List<Tensor[]> Weights, long RuleBytes);

    private static Run Train(string method, ICommunicator communicator, bool shard)
    {
        using var model = MomentStorageConformanceTests.Model(communicator.Rank > 0 ? 77 : 7);
        using var opt = MomentStorageConformanceTests.Build(MethodCatalog.Get(method), model, Storage);
        opt.Distribute(communicator, shard);
        var weights = new List<Tensor[]>();
        for (var k = 1; k <= Steps; k++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = MomentStorageConformanceTests.Data(100 + k);
            (x, y) = (x.narrow(0, communicator.Rank * PerRank, PerRank), y.narrow(0, communicator.Rank * PerRank, PerRank));
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            weights.Add(model.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray());
        }
        return new Run(weights, opt.States.Sum(s => s.Rule.StateBytes));
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("galore-std")]
    public void RanksAgreeBitForBitWithQuantizedMoments(string method)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var replicated = ThreadCommunicator.Run(Ranks, c => Train(method, c, false));
        var sharded = ThreadCommunicator.Run(Ranks, c => Train(method, c, true));
        try
        {
            for (var k = 0; k < Steps; k++)
                for (var i = 0; i < replicated[0].Weights[k].Length; i++)
                {
                    var where = $"{method}, step {k + 1}, parameter {i}";
                    TensorAssert.Identical(replicated[1].Weights[k][i], replicated[0].Weights[k][i], $"{where}: rank 1 vs rank 0");
                    TensorAssert.Identical(sharded[0].Weights[k][i], replicated[0].Weights[k][i], $"{where}: sharded vs replicated");
                }
            sharded.Sum(r => r.RuleBytes).Should().Be(replicated[0].RuleBytes, "the compressed rule state is split over the ranks");
        }
        finally
        {
            foreach (var run in replicated.Concat(sharded))
                foreach (var w in run.Weights.SelectMany(ws => ws)) w.Dispose();
        }
    }
}
