using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Bench;

[Collection(SerialCollection.Name)] // its commands set libtorch's process-wide thread count, which changes other tests' rounding
public sealed class PretrainTests
{
    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int steps, int checkpointEvery, int accumulation = 1, bool perLayer = false) =>
        new(Small, steps, Batch: 4, Sequence: 16, WarmupSteps: 2, MinLrRatio: 0.1, ClipNorm: 1.0, Seed: 5,
            EvalEvery: 3, EvalBatches: 2, CheckpointEvery: checkpointEvery, LowRank: new LowRankSettings(4, 3, 0.25),
            Accumulation: accumulation, PerLayer: perLayer);

    private static TokenDataset Data() => TinyCorpus.Create();

    [Theory]
    [InlineData(OptimizerKind.AdamW)]
    [InlineData(OptimizerKind.GaLore)]
    [InlineData(OptimizerKind.GaLoreAdafactor)]
    [InlineData(OptimizerKind.Smmf)]
    [InlineData(OptimizerKind.GaLoreRandomized)]
    [InlineData(OptimizerKind.Dct)]
    [InlineData(OptimizerKind.Osd)]
    public void ResumingFromACheckpointEqualsTheUninterruptedRun(OptimizerKind kind)
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-pretrain-");
        try
        {
            var data = Data();
            var straight = Trainer.Run("straight", kind, 3e-3, Settings(8, 0), data, Path.Combine(dir.FullName, "straight"), resume: false);
            // The same run crashes right after its step-5 checkpoint; a new run resumes it to step 8.
            var crash = () => Trainer.Run("split", kind, 3e-3, Settings(8, 5), data, Path.Combine(dir.FullName, "split"), resume: false,
                p => { if (p.Step == 5) throw new OperationCanceledException("simulated crash"); });
            crash.Should().Throw<OperationCanceledException>();
            var resumed = Trainer.Run("split", kind, 3e-3, Settings(8, 0), data, Path.Combine(dir.FullName, "split"), resume: true);
            resumed.TrainCurve.Should().Equal(straight.TrainCurve);
            resumed.ValidationLoss.Should().Be(straight.ValidationLoss);
            File.ReadAllLines(Path.Combine(dir.FullName, "split", "train.csv")).Length.Should().Be(9);
        }
        finally { dir.Delete(true); }
    }

    [Theory]
    [InlineData(OptimizerKind.GaLore, 1)]
    [InlineData(OptimizerKind.GaLore, 2)]
    [InlineData(OptimizerKind.AdamW, 4)]
    public void PerLayerRunsResumeExactlyAndFollowTheStandardRun(OptimizerKind kind, int accumulation)
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-pretrain-");
        try
        {
            var data = Data();
            var standard = Trainer.Run("standard", kind, 3e-3, Settings(8, 0, accumulation), data, Path.Combine(dir.FullName, "standard"), resume: false);
            var straight = Trainer.Run("straight", kind, 3e-3, Settings(8, 0, accumulation, perLayer: true), data, Path.Combine(dir.FullName, "straight"), resume: false);
            var crash = () => Trainer.Run("split", kind, 3e-3, Settings(8, 5, accumulation, perLayer: true), data, Path.Combine(dir.FullName, "split"), resume: false,
                p => { if (p.Step == 5) throw new OperationCanceledException("simulated crash"); });
            crash.Should().Throw<OperationCanceledException>();
            var resumed = Trainer.Run("split", kind, 3e-3, Settings(8, 0, accumulation, perLayer: true), data, Path.Combine(dir.FullName, "split"), resume: true);
            resumed.TrainCurve.Should().Equal(straight.TrainCurve);
            resumed.ValidationLoss.Should().Be(straight.ValidationLoss);
            // Equal to the standard run up to float rounding (the losses are float32 values).
            straight.TrainCurve.Select(p => p.Loss).Should().Equal(standard.TrainCurve.Select(p => p.Loss), (a, b) => Math.Abs(a - b) <= 1e-5 * Math.Abs(b));
            // Clipping (1.0 here) with accumulation keeps the step's gradients whole (docs/per-layer.md); TorchSharp's AdamW reports no peak.
            if (kind != OptimizerKind.AdamW)
            {
                if (accumulation == 1) straight.PeakGradientBytes.Should().BeGreaterThan(0).And.BeLessThan(standard.PeakGradientBytes);
                else straight.PeakGradientBytes.Should().BeGreaterThan(0).And.BeLessThanOrEqualTo(standard.PeakGradientBytes);
            }
        }
        finally { dir.Delete(true); }
    }

    [Theory]
    [InlineData("--accumulation", "3", "--accumulation 3 must divide --batch 16")]
    [InlineData("--accumulation", "0", "--accumulation must be >= 1")]
    [InlineData("--steps", "0", "--steps must be >= 1")]
    [InlineData("--model", "huge", "--model 'huge' is unknown")]
    [InlineData("--optimizers", "sgd", "unknown optimizer 'sgd'")]
    [InlineData("--lr", "galore=-1", "--lr must be a finite number > 0")]
    [InlineData("--seq-len", "4096", "exceeds the model's maximum sequence length")]
    [InlineData("--tokenizer", "words", "--tokenizer 'words' must be byte or bpe")]
    [InlineData("--data", "/no/such/corpus", "no such file or folder")]
    public void BadArgumentsPrintTheReasonAndUsageAndExitNonZero(string option, string value, string message)
    {
        var (code, error) = RunCli(["pretrain", option, value]);
        code.Should().Be(2);
        error.Should().Contain(message).And.Contain("--help");
    }

    [Fact]
    public void UnknownOptionsAreParseErrors()
    {
        var (code, error) = RunCli(["pretrain", "--no-such-option"]);
        code.Should().NotBe(0);
        error.Should().Contain("--no-such-option");
    }

    private static (int Code, string Error) RunCli(string[] args)
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), args);
        return (code, error);
    }
}
