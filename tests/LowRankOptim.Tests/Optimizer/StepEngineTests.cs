using FluentAssertions;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>The step engine's public per-parameter entry point and its gradient checks.</summary>
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

    public static TheoryData<string> Methods() => ["galore", "dct", "adamw", "smmf"];

    private static LowRankOptimizer Create(string method, IList<Parameter> ps) => method switch
    {
        "galore" => LowRank.GaLore(ps, lr: 0.01, rank: 3),
        "dct" => LowRank.DctAdamW(ps, lr: 0.01, rank: 3),
        "adamw" => LowRank.AdamW(ps, lr: 0.01),
        "smmf" => LowRank.Smmf(ps, lr: 0.01),
        _ => throw new ArgumentException(method),
    };

    [Theory]
    [MemberData(nameof(Methods))]
    public void AGradientOfAnotherShapeWithTheSameElementCountIsRefused(string method)
    {
        var ps = Parameters(2);
        using var opt = Create(method, ps);
        var before = ps[0].clone();
        ps[0].grad = Gradient(ps[0], 0).t().contiguous(); // 8×12 for a 12×8 parameter
        var act = () => opt.step();
        act.Should().Throw<ArgumentException>().Which.Message.Should().Contain("[8, 12]").And.Contain("[12, 8]");
        ps[0].eq(before).all().item<bool>().Should().BeTrue();
        opt.States[0].Step.Should().Be(0);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void AGradientOfAnotherDtypeIsRefused(string method)
    {
        var ps = Parameters(3);
        using var opt = Create(method, ps);
        var act = () => opt.StepParameter(ps[0], Gradient(ps[0], 0).to(float64));
        act.Should().Throw<ArgumentException>().Which.Message.Should().Contain("Float64").And.Contain("Float32");
        opt.States[0].Step.Should().Be(0);
    }

    [Fact]
    public void SteppingAParameterOfAnotherOptimizerIsRefused()
    {
        using var opt = Create("adamw", Parameters(4));
        var stranger = new Parameter(ones(3));
        var act = () => opt.StepParameter(stranger, ones(3));
        act.Should().Throw<ArgumentException>().WithParameterName("parameter");
    }
}
