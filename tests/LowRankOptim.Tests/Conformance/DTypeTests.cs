using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method trains in float32, bfloat16, float16 and float64: over 8 steps (refreshes
/// and GaLore+'s warm-ups included) the loss and every weight stay finite, the weights keep their dtype and move,
/// and each parameter keeps optimizer state.
/// </summary>
public sealed class DTypeTests
{
    public static TheoryData<string, string> MethodsAndDTypes() => MethodCatalog.NamesAndDTypes();

    [Theory]
    [MemberData(nameof(MethodsAndDTypes))]
    public void TrainingStaysFiniteAndKeepsTheDtype(string method, string dtypeName)
    {
        using var scope = NewDisposeScope();
        var dtype = MethodCatalog.DType(dtypeName);
        var model = TestProblems.Mlp(4);
        model.to(dtype);
        var (x, y) = TestProblems.Data(4);
        (x, y) = (x.to(dtype), y.to(dtype));
        var initial = TestProblems.Snapshot(model);
        using var opt = MethodCatalog.Get(method).Create(model);
        for (var k = 0; k < 8; k++)
        {
            double.IsFinite(TestProblems.LossAndBackward(model, x, y)).Should().BeTrue($"{method} ({dtypeName}): loss at step {k + 1}");
            opt.step();
            opt.zero_grad();
        }

        foreach (var ((name, p), w0) in model.named_parameters().Zip(initial))
        {
            p.dtype.Should().Be(dtype, $"{method}: {name} keeps its dtype");
            p.isfinite().all().item<bool>().Should().BeTrue($"{method} ({dtypeName}): {name} is finite");
            p.to(ScalarType.Float64).sub(w0.to(ScalarType.Float64)).abs().max().item<double>().Should().BePositive($"{method} ({dtypeName}): {name} moved");
        }
        opt.States.Should().OnlyContain(s => s.Step == 8 && s.StateBytes > 0, $"{method} ({dtypeName}): every parameter stepped and keeps state");
    }

    public static TheoryData<string> Methods() => MethodCatalog.Names();

    /// <summary>
    /// The case (issue 12, point 5): float16 parameters given ordinary N(0, 1) gradients stay finite over 10
    /// steps (Online Subspace Descent's basis optimizer went NaN by step 3 when its ε underflowed in float16).
    /// </summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void Float16WithStandardNormalGradientsStaysFinite(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(9);
        model.to(ScalarType.Float16);
        using var opt = MethodCatalog.Get(method).Create(model);
        using var gen = new Generator(99);
        for (var k = 0; k < 10; k++)
        {
            foreach (var p in model.parameters()) p.grad = randn(p.shape, generator: gen).to(ScalarType.Float16);
            opt.step();
            foreach (var (name, p) in model.named_parameters())
                p.isfinite().all().item<bool>().Should().BeTrue($"{method}: {name} after step {k + 1} in float16");
        }
        opt.SkippedUpdates.Should().Be(0, $"{method}: ordinary gradients are never skipped");
    }
}
