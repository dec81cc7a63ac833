using FluentAssertions;
using LowRankOptim.Bench.Model;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Bench;

public sealed class ModelTests
{
    private static readonly LlamaConfig Small = new("test", 50, 32, 48, 4, 2, 2, 16);

    [Fact]
    public void ForwardGivesLogitsPerPositionAndParametersMatchTheShapeList()
    {
        using var scope = NewDisposeScope();
        using var model = new LlamaModel(Small, seed: 1);
        var tokens = randint(0, 50, [3, 10]);
        model.call(tokens).shape.Should().Equal(3, 10, 50);
        model.named_parameters().Select(p => (p.name, p.parameter.shape)).Should().BeEquivalentTo(Small.ParameterShapes(),
            o => o.ComparingByMembers<(string, long[])>().WithoutStrictOrdering());
        model.parameters().Sum(p => p.numel()).Should().Be(Small.ParameterShapes().Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void BFloat16ModelIsBuiltInBFloat16FromTheFloat32InitializationAndTrains()
    {
        using var scope = NewDisposeScope();
        using var wide = new LlamaModel(Small, seed: 3);
        using var narrow = new LlamaModel(Small, seed: 3, dtype: ScalarType.BFloat16);
        narrow.DType.Should().Be(ScalarType.BFloat16);
        foreach (var ((name, w), (_, n)) in wide.named_parameters().Zip(narrow.named_parameters()))
        {
            n.dtype.Should().Be(ScalarType.BFloat16, name);
            TensorAssert.Identical(n, w.to(ScalarType.BFloat16), name); // the float32 draws, rounded
        }
        var block = randint(0, 50, [2, 11]);
        using var loss = narrow.Loss(block);
        loss.dtype.Should().Be(ScalarType.Float32);
        loss.backward();
        narrow.parameters().Select(p => p.grad?.dtype).Should().OnlyContain(d => d == ScalarType.BFloat16);
        Math.Abs(loss.item<float>() - wide.Loss(block).item<float>()).Should().BeLessThan(0.05f);
        FluentActions.Invoking(() => new LlamaModel(Small, 0, ScalarType.Float16)).Should().Throw<ArgumentException>().WithMessage("*Float16*float32 or bfloat16*");
    }

    [Fact]
    public void AttentionIsCausal()
    {
        using var scope = NewDisposeScope();
        using var model = new LlamaModel(Small, seed: 2);
        using var _ = no_grad();
        var a = randint(0, 50, [1, 12]);
        var b = a.clone();
        b[0, 7] = (a[0, 7] + 1) % 50; // change a token at position 7
        var la = model.call(a);
        var lb = model.call(b);
        TensorAssert.Identical(lb.narrow(1, 0, 7), la.narrow(1, 0, 7), "logits before the changed position");
        (lb.narrow(1, 7, 5) - la.narrow(1, 7, 5)).abs().max().item<float>().Should().BeGreaterThan(0);
    }

    [Fact]
    public void RotaryEmbeddingEqualsTheDirectFormula()
    {
        using var scope = NewDisposeScope();
        const int d = 8, positions = 5;
        using var rope = new RotaryEmbedding(d, 16);
        var x = randn(1, 2, positions, d, dtype: float64).to(float32);
        var y = rope.call(x).to(float64);
        var xs = x.to(float64);
        for (var p = 0; p < positions; p++)
            for (var i = 0; i < d / 2; i++)
            {
                // Pair (i, i + d/2) rotated by p·θ_i, θ_i = 10000^(−2i/d).
                var angle = p * Math.Pow(10000, -2.0 * i / d);
                for (var h = 0; h < 2; h++)
                {
                    double a = xs[0, h, p, i].item<double>(), b = xs[0, h, p, i + d / 2].item<double>();
                    y[0, h, p, i].item<double>().Should().BeApproximately(a * Math.Cos(angle) - b * Math.Sin(angle), 1e-5);
                    y[0, h, p, i + d / 2].item<double>().Should().BeApproximately(b * Math.Cos(angle) + a * Math.Sin(angle), 1e-5);
                }
            }
    }

    [Fact]
    public void GroupedQueryAttentionNeedsDivisibleHeads()
    {
        var act = () => new LlamaConfig("bad", 50, 32, 48, 4, 3, 1, 16).Validated();
        act.Should().Throw<ArgumentException>().WithMessage("*heads 4*key/value heads 3*");
    }
}
