using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using Xunit;

namespace LowRankOptim.Tests.Bench;

public sealed class MemoryCommandTests
{
    [Fact]
    public void VerifyAllocatesTheTinyModelAndFindsThePredictionExact()
    {
        var (code, output, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--verify", "--json"]);
        code.Should().Be(0, error);
        error.Should().Contain("galore rank 32").And.Contain("equal").And.NotContain("MISMATCH");
        output.Should().Contain("\"optimizer\": \"galore\"");
    }

    [Fact]
    public void DetailListsEveryParameterAndGroupSummingToTheTotal()
    {
        var (code, output, error) = Cli.Run(MemoryCommand.Create(), ["memory", "--model", "tiny", "--optimizers", "galore", "--detail", "--json"]);
        code.Should().Be(0, error);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var detail = doc.RootElement.GetProperty("details")[0];
        var parameters = detail.GetProperty("parameters").EnumerateArray().ToList();
        parameters.Should().HaveCount(LlamaConfig.Named["tiny"].ParameterShapes().Count());
        var total = doc.RootElement.GetProperty("rows")[0].GetProperty("state_bytes").GetInt64();
        parameters.Sum(p => p.GetProperty("state_bytes").GetInt64()).Should().Be(total);
        detail.GetProperty("groups").EnumerateArray().Sum(g => g.GetProperty("state_bytes").GetInt64()).Should().Be(total);
        parameters.Where(p => p.GetProperty("projected").GetBoolean()).Should().HaveCount(4 * 7, "attention and MLP matrices of 4 layers");
    }

    [Fact]
    public void GaLoreStateOfLlama60MatchesThePaperFormula()
    {
        // Projected matrices (attention 4 × 512², MLP 3 × 1376×512 per layer): r·(b + 2a) each; the rest AdamW.
        var target = LlamaConfig.Named["60m"];
        var plan = MemoryCommand.Plan(new MemoryCommand.Target("60m", target.ParameterShapes().ToList(), 128, target), OptimizerKind.GaLore, 128, TorchSharp.torch.ScalarType.Float32);
        long r = 128, perLayer = 4 * r * (512 + 2 * 512) + 3 * r * (512 + 2 * 1376);
        long full = 2 * (32000 * 512 * 2 + 512 * 17);
        plan.StateBytes.Should().Be((8 * perLayer + full) * 4);
    }

    [Fact]
    public void LargestRankWithinABudgetFitsAndTheNextDoesNot()
    {
        var c = LlamaConfig.Named["20m"];
        var target = new MemoryCommand.Target("20m", c.ParameterShapes().ToList(), 64, c);
        var budget = MemoryCommand.Plan(target, OptimizerKind.GaLore, 100, TorchSharp.torch.ScalarType.Float32).TotalBytes;
        MemoryCommand.LargestRankWithin(target, OptimizerKind.GaLore, TorchSharp.torch.ScalarType.Float32, budget).Should().Be(100);
        MemoryCommand.LargestRankWithin(target, OptimizerKind.GaLore, TorchSharp.torch.ScalarType.Float32, budget - 1).Should().Be(99);
    }

    [Theory]
    [InlineData("--dtype", "int8", "--dtype 'int8' must be float32 or bfloat16")]
    [InlineData("--budget", "lots", "--budget 'lots' must be a positive size")]
    [InlineData("--model", "2b", "--model '2b' is unknown")]
    [InlineData("--shapes", "/nonexistent.json", "no such file")]
    public void BadArgumentsExitWithUsage(string option, string value, string message)
    {
        var (code, _, error) = Cli.Run(MemoryCommand.Create(), ["memory", option, value]);
        code.Should().Be(2);
        error.Should().Contain(message).And.Contain("--help");
    }
}

internal static class Cli
{
    private static readonly object Gate = new();

    /// <summary>Runs one command as the program would, capturing stdout, stderr and the exit code.</summary>
    public static (int Code, string Output, string Error) Run(System.CommandLine.Command command, string[] args)
    {
        lock (Gate)
        {
            var root = new System.CommandLine.RootCommand { command };
            var output = new StringWriter();
            var error = new StringWriter();
            var (savedOut, savedErr) = (Console.Out, Console.Error);
            Console.SetOut(output);
            Console.SetError(error);
            try
            {
                var code = root.Parse(args).Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = error });
                return (code, output.ToString(), error.ToString());
            }
            finally
            {
                Console.SetOut(savedOut);
                Console.SetError(savedErr);
            }
        }
    }
}
