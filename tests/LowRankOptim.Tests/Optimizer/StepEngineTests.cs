using FluentAssertions;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>The step engine's public per-parameter entry point. Every method's gradient checks: Conformance/RefusedInputTests.</summary>
public sealed class StepEngineTests
{
    private static List<Parameter> Parameters(int seed)
    {
        var g = new Generator((ulong)seed);
        return [new Parameter(randn([12, 8], generator: g)), new Parameter(randn([8], generator: g)), new Parameter(randn([6, 10], generator: g))];
    }

    private static Tensor Gradient(Parameter p, int step) =>
        arange(p.numel(), dtype: float32).mul(0.37 * (step + 1)).sin().reshape(p.shape);

    [Fact]
    public void SteppingEachParameterEqualsStep()
    {
        var a = Parameters(1);
        var b = Parameters(1);
        using var stepped = LowRank.GaLore(a, lr: 0.01, rank: 3, update_proj_gap: 2, weight_decay: 0.1);
        using var each = LowRank.GaLore(b, lr: 0.01, rank: 3, update_proj_gap: 2, weight_decay: 0.1);
        for (var k = 0; k < 5; k++)
        {
            foreach (var p in a) p.grad = Gradient(p, k);
            stepped.step();
            foreach (var p in b) each.StepParameter(p, Gradient(p, k));
        }
        for (var i = 0; i < a.Count; i++) a[i].eq(b[i]).all().item<bool>().Should().BeTrue($"parameter {i} must be bit-identical");
        each.States.Select(s => s.Step).Should().AllBeEquivalentTo(5L);
    }

    [Fact]
    public void SteppingAParameterOfAnotherOptimizerIsRefused()
    {
        using var opt = LowRank.AdamW(Parameters(4), lr: 0.01);
        var stranger = new Parameter(ones(3));
        var act = () => opt.StepParameter(stranger, ones(3));
        act.Should().Throw<ArgumentException>().WithParameterName("parameter");
    }
}
