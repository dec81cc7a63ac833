using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Bench;

/// <summary>
/// The main job's outputs and behaviour on a user's machine (issue 13, points 3 and 8): a model that cannot fit is
/// refused with the planner's numbers, Ctrl-C stops a run at a checkpoint that --resume continues exactly, the plot
/// is written, the summary has no process-wide peak-RSS column, and the default thread count leaves busy cores.
/// </summary>
[Collection(SerialCollection.Name)] // its commands set libtorch's process-wide thread count, which changes other tests' rounding
public sealed class PretrainOutputTests
{
    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int steps, int checkpointEvery) =>
        new(Small, steps, Batch: 4, Sequence: 16, WarmupSteps: 2, MinLrRatio: 0.1, ClipNorm: 1.0, Seed: 5,
            EvalEvery: 3, EvalBatches: 2, CheckpointEvery: checkpointEvery, LowRank: new LowRankSettings(4, 3, 0.25));

    private static TokenDataset Data() => TinyCorpus.Create();

    [Fact]
    public void A7bModelIsRefusedOnA24GiBMachineWithThePlannersNumbers()
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", "--model", "7b", "--memory-limit", "24GiB"]);
        code.Should().Be(2);
        error.Should().Contain("--model 7b (6478 M parameters, float32) does not fit in 24.00 GiB (--memory-limit)")
            .And.Contain("adamw").And.Contain("weights").And.Contain("optimizer state").And.Contain("does not fit")
            .And.Contain("before activations").And.Contain("memory --model 7b --budget");
    }

    [Fact]
    public void TheTinyModelFitsAndALimitBelowItIsRefused()
    {
        var s = Settings(10, 0) with { Model = LlamaConfig.Named["tiny"] with { VocabSize = 256 } };
        var kinds = OptimizerCatalog.All.ToList();
        var lrs = kinds.ToDictionary(k => k, OptimizerCatalog.DefaultLearningRate);
        var fits = () => PretrainCommand.CheckMemory(s, kinds, lrs, 1L << 30, explicitLimit: false);
        fits.Should().NotThrow();
        var refused = () => PretrainCommand.CheckMemory(s, kinds, lrs, 1L << 20, explicitLimit: true);
        refused.Should().Throw<UsageException>().WithMessage("--model tiny * does not fit in 1.00 MiB (--memory-limit)*");
    }

    [Fact]
    public void AnInterruptedRunStopsAtACheckpointThatResumesExactly()
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-interrupt-");
        try
        {
            var data = Data();
            var straight = Trainer.Run("straight", OptimizerKind.GaLore, 3e-3, Settings(8, 0), data, Path.Combine(dir.FullName, "straight"), resume: false);
            using var cancel = new CancellationTokenSource();
            var interrupted = () => Trainer.Run("split", OptimizerKind.GaLore, 3e-3, Settings(8, 0), data, Path.Combine(dir.FullName, "split"), resume: false,
                p => { if (p.Step == 4) cancel.Cancel(); }, cancel: cancel.Token);
            interrupted.Should().Throw<TrainingInterruptedException>().WithMessage("run split stopped after step 4 of 8*");
            var resumed = Trainer.Run("split", OptimizerKind.GaLore, 3e-3, Settings(8, 0), data, Path.Combine(dir.FullName, "split"), resume: true);
            resumed.TrainCurve.Should().Equal(straight.TrainCurve);
            resumed.ValidationLoss.Should().Be(straight.ValidationLoss);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void ThePlotAndTheSummaryAreWritten()
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-plot-");
        try
        {
            var data = Data();
            var runs = new[] { OptimizerKind.AdamW, OptimizerKind.GaLore, OptimizerKind.Smmf }
                .Select(k => Trainer.Run(k.CliName(), k, 3e-3, Settings(12, 0), data, Path.Combine(dir.FullName, k.CliName()), resume: false)).ToList();
            var png = Path.Combine(dir.FullName, "loss.png");
            Reports.WritePlot(png, runs);
            var bytes = File.ReadAllBytes(png);
            bytes.Take(8).Should().Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A });
            // IHDR: width and height, big-endian, at bytes 16–23.
            (bytes[16] << 24 | bytes[17] << 16 | bytes[18] << 8 | bytes[19]).Should().Be(1600);
            (bytes[20] << 24 | bytes[21] << 16 | bytes[22] << 8 | bytes[23]).Should().Be(700);
            var table = Reports.Markdown(runs, runs[0]);
            table.Should().Contain("optimizer state").And.NotContain("RSS", "a process's peak RSS covers every earlier run, so it is not a per-run figure");
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void TheDefaultThreadCountIsBetweenOneAndTheCores() =>
        NativeEnvironment.AutoThreads(TimeSpan.FromMilliseconds(100)).Should().BeInRange(1, Environment.ProcessorCount);
}
