using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.BFloat16Weights;

/// <summary>
/// Data parallel over 2 ranks (threads, <see cref="ThreadCommunicator"/>) with stochastically rounded bf16 weights: every
/// rank draws the same random numbers (seed, parameter, step), so the ranks' weights stay bit-identical, and sharded state
/// (the owner rounds a full-space weight and shares it) gives the weights of replicated state bit for bit.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class WeightRoundingDataParallelTests
{
    private const int Steps = 6, PerRank = 4, Ranks = 2;

    private static Tensor[] Train(string method, ICommunicator communicator, bool shard)
    {
        using var model = TestProblems.Mlp(communicator.Rank > 0 ? 77 : 7); // Distribute broadcasts rank 0's weights
        model.to(ScalarType.BFloat16);
        using var opt = WeightRoundingConformanceTests.Build(MethodCatalog.Get(method), model, WeightRounding.Stochastic(5));
        opt.Distribute(communicator, shard);
        for (var k = 1; k <= Steps; k++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = TestProblems.Data(100 + k, batch: PerRank * Ranks);
            x = x.narrow(0, communicator.Rank * PerRank, PerRank).to(ScalarType.BFloat16);
            y = y.narrow(0, communicator.Rank * PerRank, PerRank).to(ScalarType.BFloat16);
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        return model.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();
    }

    [Theory]
    [InlineData("dct-adamw")]
    [InlineData("adamw")]
    public void RanksRoundAlikeAndShardedStateEqualsReplicated(string method)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var replicated = ThreadCommunicator.Run(Ranks, c => Train(method, c, false));
        var sharded = ThreadCommunicator.Run(Ranks, c => Train(method, c, true));
        try
        {
            for (var i = 0; i < replicated[0].Length; i++)
            {
                TensorAssert.Identical(replicated[1][i], replicated[0][i], $"{method}, parameter {i}: rank 1 vs rank 0");
                TensorAssert.Identical(sharded[1][i], sharded[0][i], $"{method}, parameter {i}: sharded rank 1 vs rank 0");
                TensorAssert.Identical(sharded[0][i], replicated[0][i], $"{method}, parameter {i}: sharded vs replicated");
            }
        }
        finally
        {
            foreach (var w in replicated.Concat(sharded).SelectMany(ws => ws)) w.Dispose();
        }
    }
}
