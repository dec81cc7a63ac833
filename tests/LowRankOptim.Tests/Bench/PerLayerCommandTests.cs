using System.Text.Json;
using FluentAssertions;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Bench;

[Collection(SerialCollection.Name)] // its commands set libtorch's process-wide thread count, which changes other tests' rounding
public sealed class PerLayerCommandTests
{
    [Fact]
    public void ReportsPeakGradientBytesWithinTheBoundAndBothPathsTimes()
    {
        // 128 tokens per step: with fewer tokens than the rank (32), a gradient's last singular values are rounding noise
        // and the refreshed bases of the two copies differ by more than rounding.
        var (code, output, error) = Cli.Run(PerLayerCommand.Create(), ["per-layer", "--model", "tiny", "--steps", "3", "--batch", "2", "--seq-len", "64", "--threads", "1", "--json"]);
        code.Should().Be(0, error);
        using var json = JsonDocument.Parse(output);
        var root = json.RootElement;
        var all = root.GetProperty("all_gradient_bytes").GetInt64();
        root.GetProperty("peak_standard_bytes").GetInt64().Should().Be(all);
        root.GetProperty("peak_per_layer_bytes").GetInt64().Should().BeLessThanOrEqualTo(root.GetProperty("bound_bytes").GetInt64()).And.BeLessThan(all);
        root.GetProperty("records").GetArrayLength().Should().Be(6);
        root.GetProperty("worst_relative_weight_difference").GetDouble().Should().BeLessThan(1e-5);
    }

    [Theory]
    [InlineData("--accumulation", "3", "--accumulation 3 must divide --batch 4")]
    [InlineData("--optimizer", "sgd", "unknown optimizer 'sgd'")]
    [InlineData("--model", "huge", "--model 'huge' is unknown")]
    public void BadArgumentsPrintTheReasonAndExitNonZero(string option, string value, string message)
    {
        var (code, _, error) = Cli.Run(PerLayerCommand.Create(), ["per-layer", option, value]);
        code.Should().Be(2);
        error.Should().Contain(message).And.Contain("--help");
    }
}
