using System.Text.Json;
using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Measure;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Bench;

/// <summary><c>memory --measure</c>: child processes end to end, the planner's refusal, and the peak model's parts.</summary>
public sealed class MemoryMeasureTests
{
    [Fact]
    public void MeasureTrainsEachRowInAChildAndReportsPeakBesidePrediction()
    {
        var csv = Path.Combine(Path.GetTempPath(), $"measure-{Guid.NewGuid():N}.csv");
        try
        {
            var (code, output, error) = Cli.Run(MemoryCommand.Create(),
                ["memory", "--measure", "--model", "tiny", "--optimizers", "adamw,smallest", "--steps", "2", "--seq-len", "32", "--threads", "1", "--json", "--csv", csv]);
            code.Should().Be(0, error);
            using var doc = JsonDocument.Parse(output);
            var rows = doc.RootElement.GetProperty("rows").EnumerateArray().ToList();
            rows.Select(r => r.GetProperty("recipe").GetString()).Should().Equal("adamw", "smallest");
            foreach (var row in rows)
            {
                row.GetProperty("refusal").ValueKind.Should().Be(JsonValueKind.Null);
                var measured = row.GetProperty("measured_peak_bytes").GetInt64();
                var baseline = row.GetProperty("baseline_bytes").GetInt64();
                measured.Should().BeGreaterThan(baseline, "the peak includes the model and its training");
                row.GetProperty("predicted_over_measured").GetDouble().Should().BeInRange(0.75, 1.25);
                var steps = row.GetProperty("step_records").EnumerateArray().ToList();
                steps.Should().HaveCount(2);
                steps.Should().OnlyContain(s => double.IsFinite(s.GetProperty("loss").GetDouble()));
            }
            File.ReadAllLines(csv).Should().HaveCount(3).And.Subject.First().Should().StartWith("model,recipe,");
        }
        finally
        {
            File.Delete(csv);
        }
    }

    [Fact]
    public void RowsBeyondTheBudgetAreRefusedBeforeTheModelIsBuilt()
    {
        var (code, output, error) = Cli.Run(MemoryCommand.Create(),
            ["memory", "--measure", "--model", "tiny", "--optimizers", "smallest", "--steps", "1", "--threads", "1", "--budget", "64MiB"]);
        code.Should().Be(0, error);
        error.Should().Contain("refused: the planner predicts a peak of").And.Contain("more than the budget of 64.00 MiB");
        output.Should().Contain("| llama-tiny | smallest | 32 | refused |");
        output.Should().Contain("Largest configuration each recipe can train within 64.00 MiB").And.Contain("smallest: none of the named configurations");
    }

    [Fact]
    public void BadMeasureOptionsAreRefusedNamingThem()
    {
        Cli.Run(MemoryCommand.Create(), ["memory", "--measure", "--model", "tiny", "--optimizers", "fastest"]).Error.Should().Contain("unknown optimizer 'fastest'").And.Contain("smallest");
        Cli.Run(MemoryCommand.Create(), ["memory", "--measure", "--model", "tiny", "--steps", "0"]).Error.Should().Contain("--steps must be >= 1 (got 0)");
        Cli.Run(MemoryCommand.Create(), ["memory", "--measure", "--model", "tiny", "--seq-len", "4096"]).Error.Should().Contain("--seq-len 4096 exceeds llama-tiny's maximum sequence length 128");
        Cli.Run(MemoryCommand.Create(), ["memory", "--measure", "--model", "tiny", "--verify"]).Code.Should().Be(2);
    }

    [Fact]
    public void AdamWCannotStartLlama7BIn22GiBWhileTheSmallestRecipeFits()
    {
        var config = LlamaConfig.Named["7b"];
        const long budget = 22L << 30;
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            PeakMemoryModel.Predict(config, new MemoryRecipe(OptimizerKind.AdamW, dtype, 32, PerLayer: false), 1024, 1, 128).Total(0).Should().BeGreaterThan(2 * budget);
        PeakMemoryModel.Predict(config, MemoryRecipe.Smallest, 1024, 1, 128).Total(1L << 30).Should().BeLessThan(budget);
    }

    [Fact]
    public void PeakPartsFollowTheModeWeightsAndStateAreThePlannersBytes()
    {
        var config = LlamaConfig.Named["20m"];
        var standard = new MemoryRecipe(OptimizerKind.Dct, ScalarType.BFloat16, 8, PerLayer: false);
        var perLayer = standard with { PerLayer = true };
        var a = PeakMemoryModel.Predict(config, standard, 64, 2, 64);
        var b = PeakMemoryModel.Predict(config, perLayer, 64, 2, 64);
        var plan = MemoryCommand.Plan(new MemoryCommand.Target("20m", config.ParameterShapes().ToList(), 64, config), OptimizerKind.Dct, 64, ScalarType.BFloat16, 8);
        (a.Weights, a.State, a.Gradients).Should().Be((plan.WeightBytes, plan.StateBytes, plan.GradientBytes));
        b.Gradients.Should().Be(2 * (32000L * 256) * 2, "the embedding's gradient waits for step(); the largest other (the LM head's) is in flight");
        b.Workspace.Should().BeLessThan(a.Workspace, "one parameter at a time instead of every R and direction of the step");
        a.Activations.Should().Be(2 * PeakMemoryModel.Activations(config, 2, 1, 64)).And.Be(b.Activations);
    }
}
