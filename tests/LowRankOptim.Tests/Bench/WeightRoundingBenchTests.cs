using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using LowRankOptim.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Bench;

/// <summary>`pretrain --dtype` and `--weight-rounding`: parsed and refused with usage errors, the memory check plans in the run's dtype, and a bf16 run with stochastically rounded weights trains and resumes exactly.</summary>
[Collection(SerialCollection.Name)] // its commands set libtorch's process-wide thread count, which changes other tests' rounding
public sealed class WeightRoundingBenchTests
{
    private static readonly LlamaConfig Small = new("test", 256, 32, 48, 4, 4, 1, 32);

    private static TrainSettings Settings(int checkpointEvery, bool stochastic) =>
        new(Small, 8, Batch: 4, Sequence: 16, WarmupSteps: 2, MinLrRatio: 0.1, ClipNorm: 1.0, Seed: 5,
            EvalEvery: 3, EvalBatches: 2, CheckpointEvery: checkpointEvery, LowRank: new LowRankSettings(4, 3, 0.25, StochasticWeights: stochastic),
            DType: ScalarType.BFloat16);

    [Theory]
    [InlineData("float32", "nearest", ScalarType.Float32, false)]
    [InlineData("bfloat16", "nearest", ScalarType.BFloat16, false)]
    [InlineData("bf16", "stochastic", ScalarType.BFloat16, true)]
    public void DTypeAndRoundingAreParsed(string dtype, string rounding, ScalarType expected, bool stochastic) =>
        PretrainCommand.DTypeAndRounding(dtype, rounding).Should().Be((expected, stochastic));

    [Theory]
    [InlineData(new[] { "--weight-rounding", "stochastic" }, "--weight-rounding stochastic needs --dtype bfloat16")]
    [InlineData(new[] { "--dtype", "float16" }, "--dtype 'float16' must be float32 or bfloat16")]
    [InlineData(new[] { "--dtype", "bfloat16", "--weight-rounding", "up" }, "--weight-rounding 'up' must be nearest or stochastic")]
    public void BadValuesAreUsageErrors(string[] options, string message)
    {
        var (code, _, error) = Cli.Run(PretrainCommand.Create(), ["pretrain", "--model", "tiny", "--steps", "1", .. options]);
        code.Should().Be(2);
        error.Should().Contain(message).And.Contain("--help");
    }

    [Fact]
    public void TheMemoryCheckPlansInTheRunsDType()
    {
        var s = Settings(0, false) with { Model = LlamaConfig.Named["tiny"] with { VocabSize = 256 } };
        List<OptimizerKind> kinds = [OptimizerKind.AdamW, OptimizerKind.Dct];
        var lrs = kinds.ToDictionary(k => k, OptimizerCatalog.DefaultLearningRate);
        long Total(ScalarType dtype) => kinds.Max(k => MemoryPlanner.Plan(s.Model.ParameterShapes(), dtype, OptimizerCatalog.OptionsOf(k, lrs[k], s.LowRank, s.Model)).TotalBytes);
        var (bf16, fp32) = (Total(ScalarType.BFloat16), Total(ScalarType.Float32));
        bf16.Should().BeLessThan(fp32);
        var limit = (bf16 + fp32) / 2;
        ((Action)(() => PretrainCommand.CheckMemory(s, kinds, lrs, limit, explicitLimit: true))).Should().NotThrow("the bf16 run fits");
        ((Action)(() => PretrainCommand.CheckMemory(s with { DType = ScalarType.Float32 }, kinds, lrs, limit, explicitLimit: true)))
            .Should().Throw<UsageException>().WithMessage("*float32) does not fit*");
    }

    [Theory]
    [InlineData(OptimizerKind.Dct)]
    [InlineData(OptimizerKind.AdamW)]
    public void ABFloat16RunWithStochasticWeightsTrainsAndResumesExactly(OptimizerKind kind)
    {
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-bf16-");
        try
        {
            var data = TinyCorpus.Create();
            var nearest = Trainer.Run("nearest", kind, 3e-3, Settings(0, false), data, Path.Combine(dir.FullName, "nearest"), resume: false);
            var straight = Trainer.Run("straight", kind, 3e-3, Settings(0, true), data, Path.Combine(dir.FullName, "straight"), resume: false);
            var crash = () => Trainer.Run("split", kind, 3e-3, Settings(5, true), data, Path.Combine(dir.FullName, "split"), resume: false,
                p => { if (p.Step == 5) throw new OperationCanceledException("simulated crash"); });
            crash.Should().Throw<OperationCanceledException>();
            var resumed = Trainer.Run("split", kind, 3e-3, Settings(0, true), data, Path.Combine(dir.FullName, "split"), resume: true);
            resumed.TrainCurve.Should().Equal(straight.TrainCurve);
            resumed.ValidationLoss.Should().Be(straight.ValidationLoss);
            double.IsFinite(straight.ValidationLoss).Should().BeTrue();
            straight.TrainCurve.Select(p => p.Loss).Should().NotEqual(nearest.TrainCurve.Select(p => p.Loss), "the weights are rounded otherwise");
        }
        finally { dir.Delete(true); }
    }
}
