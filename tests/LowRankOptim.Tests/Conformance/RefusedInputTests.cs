using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method refuses bad input with an <see cref="ArgumentException"/> that names the argument as
/// torch does (lr, weight_decay, beta1, beta2) or, for a gradient, names both shapes (or dtypes), and a refused
/// input changes nothing. Method-specific arguments (rank, eps, decay_rate, …) are in Optimizer/BadInputTests.
/// </summary>
public sealed class RefusedInputTests
{
    public static TheoryData<string> Methods() => MethodCatalog.Names();

    /// <summary>Group options that every method refuses, with the argument name the exception carries.</summary>
    private static IEnumerable<(string What, LowRankOptions Options, string Name)> InvalidGroupOptions(LowRankOptimizer opt)
    {
        yield return ("NaN lr", new() { LearningRate = double.NaN }, "lr");
        yield return ("infinite lr", new() { LearningRate = double.PositiveInfinity }, "lr");
        yield return ("negative lr", new() { LearningRate = -0.01 }, "lr");
        yield return ("negative weight decay", new() { WeightDecay = -0.01 }, "weight_decay");
        yield return ("NaN weight decay", new() { WeightDecay = double.NaN }, "weight_decay");
        yield return ("infinite weight decay", new() { WeightDecay = double.PositiveInfinity }, "weight_decay");
        if (opt.Defaults.Rule is IBetasRuleConfig rule)
        {
            yield return ("beta1 = 1", new() { Rule = rule.WithBetas(1.0, 0.999) }, "beta1");
            yield return ("NaN beta2", new() { Rule = rule.WithBetas(0.9, double.NaN) }, "beta2");
        }
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void InvalidGroupOptionsAreRefusedByName(string method)
    {
        using var scope = NewDisposeScope();
        using var opt = MethodCatalog.Get(method).Create(TestProblems.Mlp(1));
        var (groups, states) = (opt.ParamGroups.Count(), opt.States.Count);
        foreach (var (what, options, name) in InvalidGroupOptions(opt))
        {
            var add = () => opt.add_param_group(new LowRankParamGroup([new Parameter(randn(5, 3))], options));
            add.Should().Throw<ArgumentException>($"{method}: {what}")
                .Where(e => e.ParamName == name, $"{method}: {what} names '{name}'")
                .WithMessage("*parameter group*");
            opt.ParamGroups.Should().HaveCount(groups, $"{method}: {what} adds no group");
            opt.States.Should().HaveCount(states, $"{method}: {what} adds no state");
        }
    }

    public static TheoryData<string, bool> MethodsAndEntryPoints()
    {
        var data = new TheoryData<string, bool>();
        foreach (var m in MethodCatalog.All)
        {
            data.Add(m.Name, false);
            data.Add(m.Name, true);
        }
        return data;
    }

    /// <summary>A gradient of another shape with the same element count (fc1's 20×12 weight given 12×20), through step() or StepParameter.</summary>
    [Theory]
    [MemberData(nameof(MethodsAndEntryPoints))]
    public void AGradientOfAnotherShapeIsRefusedAndChangesNothing(string method, bool stepParameter) =>
        Refused(method, stepParameter, w => w.grad!.t().contiguous(), "[12, 20]", "[20, 12]");

    [Theory]
    [MemberData(nameof(MethodsAndEntryPoints))]
    public void AGradientOfAnotherDtypeIsRefusedAndChangesNothing(string method, bool stepParameter) =>
        Refused(method, stepParameter, w => w.grad!.to(ScalarType.Float64), "Float64", "Float32");

    private static void Refused(string method, bool stepParameter, Func<Parameter, Tensor> badGradient, string given, string expected)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(2);
        var (x, y) = TestProblems.Data(2);
        using var opt = MethodCatalog.Get(method).Create(model);
        for (var k = 0; k < 2; k++) // the state, bases and moments exist
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        var before = Checkpoints.Bytes(opt);
        var weights = TestProblems.Snapshot(model);

        TestProblems.LossAndBackward(model, x, y);
        var w = model.named_parameters().Single(p => p.name == "fc1.weight").parameter;
        var bad = badGradient(w);
        opt.zero_grad(); // only the bad gradient: step() must refuse it before touching fc1's state
        Action act = stepParameter ? () => opt.StepParameter(w, bad) : () => { w.grad = bad; opt.step(); };
        act.Should().Throw<ArgumentException>().Where(e => e.ParamName == "gradient")
            .Which.Message.Should().Contain(given).And.Contain(expected);

        Checkpoints.Bytes(opt).Should().Equal(before, $"{method}: a refused gradient changes no state");
        foreach (var (p, q) in model.parameters().Zip(weights))
            TensorAssert.Identical(p, q, $"{method}: a refused gradient changes no weight");
        opt.States.Should().OnlyContain(s => s.Step == 2);
    }
}
