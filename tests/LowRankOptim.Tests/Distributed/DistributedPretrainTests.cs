using FluentAssertions;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Distributed;

/// <summary>
/// The pretraining loop (the bench's Trainer, as `pretrain --distributed` runs it) on 2 ranks (threads) against one
/// process: each rank takes half of the same global batches, so the training curve and validation loss equal the
/// single process's within float32 summation order; only rank 0 writes; a checkpoint written by the 2 ranks (gathered,
/// sharded state) resumes in one process like the single-process run.
/// </summary>
public sealed class DistributedPretrainTests
{
    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int checkpointEvery) =>
        new(Small, 8, Batch: 4, Sequence: 16, WarmupSteps: 2, MinLrRatio: 0.1, ClipNorm: 0, Seed: 5,
            EvalEvery: 4, EvalBatches: 2, CheckpointEvery: checkpointEvery, LowRank: new LowRankSettings(4, 3, 0.25));

    private static TokenDataset Data() => TinyCorpus.Create();

    private static void Close(RunResult actual, RunResult expected)
    {
        actual.TrainCurve.Select(p => p.Step).Should().Equal(expected.TrainCurve.Select(p => p.Step));
        foreach (var (a, e) in actual.TrainCurve.Zip(expected.TrainCurve))
            a.Loss.Should().BeApproximately(e.Loss, 1e-4 * Math.Abs(e.Loss), $"training loss at step {e.Step}");
        actual.ValidationLoss.Should().BeApproximately(expected.ValidationLoss, 1e-4 * Math.Abs(expected.ValidationLoss));
    }

    [Theory]
    [InlineData(OptimizerKind.GaLore, false)]
    [InlineData(OptimizerKind.GaLore, true)]
    [InlineData(OptimizerKind.AdamW, true)]
    public void TwoRanksTrainLikeOneProcessAndTheirCheckpointResumesInOne(OptimizerKind kind, bool shard)
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-dp-pretrain-");
        try
        {
            var data = Data();
            var single = Trainer.Run("single", kind, 3e-3, Settings(0), data, Path.Combine(dir.FullName, "single"), resume: false);
            var ranks = ThreadCommunicator.Run(2, c => Trainer.Run("dp", kind, 3e-3, Settings(0), data, Path.Combine(dir.FullName, $"dp-rank{c.Rank}"),
                resume: false, distributed: new DistributedTraining(c, shard)));
            Close(ranks[0], single);
            Directory.Exists(Path.Combine(dir.FullName, "dp-rank1")).Should().BeFalse("only rank 0 writes");

            // 2 ranks crash right after their step-5 checkpoint; one process resumes it to step 8.
            var crash = () => ThreadCommunicator.Run(2, c => Trainer.Run("split", kind, 3e-3, Settings(5), data, Path.Combine(dir.FullName, "split"),
                resume: false, p => { if (p.Step == 5) throw new OperationCanceledException("simulated crash"); }, new DistributedTraining(c, shard)));
            crash.Should().Throw<AggregateException>();
            var resumed = Trainer.Run("split", kind, 3e-3, Settings(0), data, Path.Combine(dir.FullName, "split"), resume: true);
            Close(resumed, single);
        }
        finally { dir.Delete(true); }
    }
}
