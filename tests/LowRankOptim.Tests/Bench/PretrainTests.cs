using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using Xunit;

namespace LowRankOptim.Tests.Bench;

public sealed class PretrainTests
{
    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int steps, int checkpointEvery) =>
        new(Small, steps, Batch: 4, Sequence: 16, WarmupSteps: 2, MinLrRatio: 0.1, ClipNorm: 1.0, Seed: 5,
            EvalEvery: 3, EvalBatches: 2, CheckpointEvery: checkpointEvery, LowRank: new LowRankSettings(4, 3, 0.25));

    private static TokenDataset Data() => new(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200))));

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
