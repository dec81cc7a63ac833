using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method: values changed after construction are checked before the next step with the messages of
/// construction, and a refused value changes nothing (issue 12, point 9).
/// </summary>
public sealed class ChangedOptionTests
{
    public static TheoryData<string> Methods() => MethodCatalog.Names();

    private static IEnumerable<(string What, Action<LowRankOptions> Change, string Name)> InvalidChanges(LowRankOptions options)
    {
        yield return ("NaN lr", o => o.LearningRate = double.NaN, "lr");
        yield return ("lr −1", o => o.LearningRate = -1, "lr");
        yield return ("infinite lr", o => o.LearningRate = double.PositiveInfinity, "lr");
        yield return ("weight decay −5", o => o.WeightDecay = -5, "weight_decay");
        yield return ("NaN weight decay", o => o.WeightDecay = double.NaN, "weight_decay");
        if (options.Rule is IBetasRuleConfig b)
        {
            yield return ("beta1 1.5", o => o.Rule = b.WithBetas(1.5, 0.999), "beta1");
            yield return ("NaN beta2", o => o.Rule = b.WithBetas(0.9, double.NaN), "beta2");
        }
        if (options.Rule is AdafactorConfig a)
        {
            yield return ("Adafactor eps1 +∞", o => o.Rule = a with { Eps1 = double.PositiveInfinity }, "eps1");
            yield return ("Adafactor eps2 +∞", o => o.Rule = a with { Eps2 = double.PositiveInfinity }, "eps2");
        }
        if (options.Rule is SmmfConfig s) yield return ("SMMF decay_rate 0.5", o => o.Rule = s with { DecayRate = 0.5 }, "decay_rate");
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void InvalidValuesSetAfterConstructionAreRefusedAtTheNextStep(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(1);
        var (x, y) = TestProblems.Data(1);
        using var opt = MethodCatalog.Get(method).Create(model);
        TestProblems.LossAndBackward(model, x, y);
        opt.step();
        var before = Checkpoints.Bytes(opt);
        var weights = TestProblems.Snapshot(model);
        var groups = opt.ParamGroups.Cast<LowRankParamGroup>().ToList();
        for (var g = 0; g < groups.Count; g++)
        {
            var options = groups[g].Options;
            foreach (var (what, change, name) in InvalidChanges(options).ToList())
            {
                var (lr, wd, rule) = (options.LearningRate, options.WeightDecay, options.Rule);
                change(options);
                TestProblems.LossAndBackward(model, x, y);
                var step = () => opt.step();
                step.Should().Throw<ArgumentException>($"{method}: {what} in group {g}")
                    .Where(e => e.ParamName == name, $"{method}: {what} names '{name}'")
                    .WithMessage($"parameter group {g}: {name} must be *");
                opt.zero_grad();
                (options.LearningRate, options.WeightDecay, options.Rule) = (lr, wd, rule);
            }
        }
        Checkpoints.Bytes(opt).Should().Equal(before, $"{method}: refused steps change no state");
        foreach (var (p, q) in model.parameters().Zip(weights)) TensorAssert.Identical(p, q, $"{method}: refused steps move no weight");
        TestProblems.LossAndBackward(model, x, y);
        opt.step(); // valid values again: it trains on
        opt.States.Should().OnlyContain(s => s.Step == 2);
    }

    /// <summary>Betas set through IBetas (OneCycleLR's way, or by hand) are refused when they are set, and nothing changes.</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void InvalidBetasAreRefusedWhenSet(string method)
    {
        using var scope = NewDisposeScope();
        using var opt = MethodCatalog.Get(method).Create(TestProblems.Mlp(2));
        if (!MethodCatalog.Get(method).HasBetas) return;
        var before = opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options.Rule).ToList();
        var all = () => opt.Betas = (1.5, 0.999);
        all.Should().Throw<ArgumentOutOfRangeException>().Where(e => e.ParamName == "beta1").WithMessage("parameter group 0: beta1 must be in [0, 1).*");
        var one = () => ((LowRankParamGroup)opt.ParamGroups.Last()).Betas = (0.9, -0.1);
        one.Should().Throw<ArgumentOutOfRangeException>().Where(e => e.ParamName == "beta2");
        opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options.Rule).Should().Equal(before, "refused betas change no group");
    }

    [Theory]
    [InlineData(double.PositiveInfinity, 1e-3, "eps1")]
    [InlineData(1e-30, double.PositiveInfinity, "eps2")]
    public void AdafactorRefusesInfiniteEpsilons(double eps1, double eps2, string name)
    {
        using var scope = NewDisposeScope();
        var create = () => LowRank.GaLoreAdafactor([new LowRankParamGroup([new Parameter(randn(6, 4))])], eps1: eps1, eps2: eps2);
        create.Should().Throw<ArgumentOutOfRangeException>().Where(e => e.ParamName == name).WithMessage($"*{name} must be finite*");
    }
}
