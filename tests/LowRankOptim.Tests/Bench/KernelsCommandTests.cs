using FluentAssertions;
using LowRankOptim.Bench.Commands;
using Xunit;

namespace LowRankOptim.Tests.Bench;

/// <summary>The `kernels` benchmark runs end to end (small sizes, few rounds) and reports every case it measures.</summary>
public sealed class KernelsCommandTests
{
    [Fact]
    public void QuickRunReportsEveryStepWithMeasuredTimes()
    {
        var (code, output, error) = Cli.Run(KernelsCommand.Create(), ["kernels", "--quick", "--json"]);
        code.Should().Be(0, error);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var kernels = doc.RootElement.GetProperty("kernels").EnumerateArray().ToList();
        kernels.Select(k => k.GetProperty("step").GetString()).Should().BeEquivalentTo(
            "Adam direction (subspace moments + direction)", "Adam update (full space: moments + weights in place)",
            KernelsCommand.QuantizedUpdateStep, KernelsCommand.QuantizedDirectionStep, "SMMF step (direction)");
        // The 8-bit case counts the bytes it moves: g, codes and absmax of m and v both ways, and the weights both ways.
        kernels.Single(k => k.GetProperty("step").GetString() == KernelsCommand.QuantizedUpdateStep)
            .GetProperty("fused_bytes_per_element").GetDouble().Should().BeApproximately(4 + 4 + 16.0 / 256 + 8, 1e-12);
        foreach (var k in kernels)
            foreach (var field in new[] { "fused_ms", "reference_ms", "adamw_ms", "triad_ms_same_rounds", "compute_probe_ms_same_rounds" })
                k.GetProperty(field).GetDouble().Should().BeGreaterThan(0, $"{k.GetProperty("step")} {field}");
        doc.RootElement.GetProperty("stream").EnumerateArray().Should().HaveCount(4);
    }
}
