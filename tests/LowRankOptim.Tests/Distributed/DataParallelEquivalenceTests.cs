using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Distributed;

/// <summary>
/// Every catalog method, data parallel over 2 ranks (threads of this process, <see cref="ThreadCommunicator"/>):
/// 2 ranks × batch b equal 1 process × batch 2b within float32 summation-order tolerance over 50 steps that cross
/// many refreshes; the ranks' weights are bit-identical after every step; sharded optimizer state gives bit-identical
/// weights to replicated state, holds exactly the single process's rule state split over the ranks, and the subspace
/// state on every rank. The same code over MPI is checked by MpiTests. Bit identity across rank threads needs every
/// thread to use the same libtorch/MKL thread count: test.runsettings pins one (ThreadSettingsTests). Serial: the
/// rank threads would otherwise share the two cores with other tests for minutes.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class DataParallelEquivalenceTests
{
    private const int Steps = 50, PerRank = 4, Ranks = 2;

    public static TheoryData<string> Methods() => MethodCatalog.Names();

    /// <summary>The global batch of step k: 2b rows; rank r takes rows r·b … (r+1)·b − 1.</summary>
    private static (Tensor X, Tensor Y) Batch(int step) => TestProblems.Data(100 + step, batch: PerRank * Ranks);

    private sealed record Run(List<Tensor[]> Weights, long RuleBytes, long SubspaceBytes, DataParallelTraffic? Traffic);

    private static Run Train(string method, ICommunicator? communicator, bool shard)
    {
        // Rank 1 starts from other weights: Distribute broadcasts rank 0's.
        using var model = TestProblems.Mlp(communicator is { Rank: > 0 } ? 77 : 7);
        using var opt = MethodCatalog.Get(method).Create(model);
        var dp = communicator is null ? null : opt.Distribute(communicator, shard);
        var weights = new List<Tensor[]>();
        for (var k = 1; k <= Steps; k++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = Batch(k);
            if (communicator is not null)
                (x, y) = (x.narrow(0, communicator.Rank * PerRank, PerRank), y.narrow(0, communicator.Rank * PerRank, PerRank));
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
            weights.Add(model.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray());
        }
        return new Run(weights, opt.States.Sum(s => s.Rule.StateBytes), opt.States.Sum(s => s.Subspace?.StateBytes ?? 0), dp?.Traffic.Snapshot());
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void TwoRanksEqualOneProcessWithTheirJointBatch(string method)
    {
        // Finalize the previous case's tensor wrappers first: a collection in the middle of a run stalls the rank threads for seconds.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var single = Train(method, null, false);
        var replicated = ThreadCommunicator.Run(Ranks, c => Train(method, c, false));
        var sharded = ThreadCommunicator.Run(Ranks, c => Train(method, c, true));
        try
        {
            Compare(method, single, replicated, sharded);
        }
        finally
        {
            foreach (var run in replicated.Concat(sharded).Append(single))
                foreach (var w in run.Weights.SelectMany(ws => ws)) w.Dispose();
        }
    }

    private static void Compare(string method, Run single, Run[] replicated, Run[] sharded)
    {
        for (var k = 0; k < Steps; k++)
        {
            for (var i = 0; i < single.Weights[k].Length; i++)
            {
                var where = $"{method}, step {k + 1}, parameter {i}";
                TensorAssert.Identical(replicated[1].Weights[k][i], replicated[0].Weights[k][i], $"{where}: rank 1 vs rank 0");
                TensorAssert.Identical(sharded[0].Weights[k][i], replicated[0].Weights[k][i], $"{where}: sharded vs replicated");
                TensorAssert.Identical(sharded[1].Weights[k][i], sharded[0].Weights[k][i], $"{where}: sharded rank 1 vs rank 0");
                TensorAssert.Close(replicated[0].Weights[k][i], single.Weights[k][i], atol: 2e-5, rtol: 2e-4, $"{where}: 2 ranks × b vs 1 process × 2b");
            }
        }

        replicated.Should().AllSatisfy(r => (r.RuleBytes, r.SubspaceBytes).Should().Be((single.RuleBytes, single.SubspaceBytes)));
        sharded.Sum(r => r.RuleBytes).Should().Be(single.RuleBytes, "ZeRO-1: the rule state is split over the ranks");
        sharded.Should().AllSatisfy(r => r.RuleBytes.Should().BeLessThan(single.RuleBytes, "each rank holds a share"));
        sharded.Should().AllSatisfy(r => r.SubspaceBytes.Should().Be(single.SubspaceBytes, "every rank projects with the same subspace"));
    }
}
