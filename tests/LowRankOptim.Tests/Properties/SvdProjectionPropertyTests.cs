using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

public sealed class SvdProjectionPropertyTests
{
    private static LowRankOptions Adam(IProjectionConfig projection, IUpdateRuleConfig? rule = null) => new()
    {
        LearningRate = 0.01, WeightDecay = 0, DecayOrder = WeightDecayOrder.AfterUpdate, Projection = projection,
        Rule = rule ?? new AdamConfig(Eps: 1e-6, EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
    };

    private static (LowRankOptimizer Optimizer, Parameter W) Single(long rows, long cols, IProjectionConfig projection, IUpdateRuleConfig? rule = null, ScalarType dtype = ScalarType.Float32)
    {
        var w = new Parameter(TestProblems.Gradient(1, rows, cols, dtype));
        return (new LowRankOptimizer([new LowRankParamGroup([w])], Adam(projection, rule)), w);
    }

    [Theory]
    [InlineData(ProjectionType.Std, 40L, 24L, 8)]
    [InlineData(ProjectionType.Std, 24L, 40L, 8)]
    [InlineData(ProjectionType.ReverseStd, 40L, 24L, 8)]
    [InlineData(ProjectionType.Left, 30L, 30L, 5)]
    [InlineData(ProjectionType.Right, 30L, 50L, 5)]
    [InlineData(ProjectionType.Full, 33L, 21L, 6)]
    public void BasesAreOrthonormalWithCanonicalSigns(ProjectionType type, long rows, long cols, int rank)
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(rows, cols, new SvdProjection(rank, 10, 1.0, type));
        using var _ = opt;
        w.grad = TestProblems.Gradient(2, rows, cols);
        opt.step();
        var subspace = (BasisSubspace)opt.States[0].Subspace!;
        foreach (var (basis, columns) in new[] { (subspace.Left, true), (subspace.Right, false) })
        {
            if (basis is null) continue;
            var gram = columns ? basis.t().mm(basis) : basis.mm(basis.t());
            TensorAssert.Close(gram, eye(rank), 1e-5, 0, $"{type} Gram matrix");
            // The largest-magnitude entry of every kept vector is positive.
            var v = columns ? basis : basis.t();
            var idx = v.abs().argmax(0, keepdim: true);
            v.gather(0, idx).min().item<float>().Should().BePositive();
        }
        (subspace.Left is not null).Should().Be(type is not ProjectionType.Right && !(type == ProjectionType.Std && rows >= cols) && !(type == ProjectionType.ReverseStd && rows < cols));
    }

    [Fact]
    public void RefreshHappensExactlyAtSteps1AndTPlus1And2TPlus1()
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(20, 12, new SvdProjection(4, 5, 1.0));
        using var _ = opt;
        var refreshedAt = new List<long>();
        for (var k = 1; k <= 21; k++)
        {
            var before = ((BasisSubspace)opt.States[0].Subspace!).RefreshCount;
            w.grad = TestProblems.Gradient(k, 20, 12);
            opt.step();
            if (((BasisSubspace)opt.States[0].Subspace!).RefreshCount > before) refreshedAt.Add(k);
        }
        refreshedAt.Should().Equal(1, 6, 11, 16, 21);
        opt.States[0].Refreshes.Should().Be(5);
    }

    public static TheoryData<ProjectionType, long, long, int, long> StateBytesCases() => new()
    {
        // std float32: r·(min + 2·max)·4
        { ProjectionType.Std, 64, 32, 8, 8 * (32 + 2 * 64) * 4 },
        { ProjectionType.Std, 32, 64, 8, 8 * (32 + 2 * 64) * 4 },
        // reverse_std: r·(max + 2·min)·4
        { ProjectionType.ReverseStd, 64, 32, 8, 8 * (64 + 2 * 32) * 4 },
        // left: r·(m + 2n)·4, right: r·(n + 2m)·4
        { ProjectionType.Left, 48, 20, 6, 6 * (48 + 2 * 20) * 4 },
        { ProjectionType.Right, 48, 20, 6, 6 * (20 + 2 * 48) * 4 },
        // full: (r·(m + n) + 2r²)·4
        { ProjectionType.Full, 48, 20, 6, (6 * (48 + 20) + 2 * 6 * 6) * 4 },
        // rank clamped to min(m, n)
        { ProjectionType.Std, 40, 10, 64, 10 * (10 + 2 * 40) * 4 },
    };

    [Theory]
    [MemberData(nameof(StateBytesCases))]
    public void StateBytesEqualTheFormula(ProjectionType type, long rows, long cols, int rank, long expected)
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(rows, cols, new SvdProjection(rank, 10, 1.0, type));
        using var _ = opt;
        w.grad = TestProblems.Gradient(3, rows, cols);
        opt.step();
        opt.StateBytes.Should().Be(expected);
        opt.States[0].StateBytes.Should().Be(expected);
    }

    [Fact]
    public void AdafactorStateBytesEqualTheFormula()
    {
        using var scope = NewDisposeScope();
        // std, β1 = null: r·b + a + r floats; with β1: + a·r.
        var (opt, w) = Single(50, 20, new SvdProjection(4, 10, 1.0), new AdafactorConfig(RelativeStep: false));
        using var _ = opt;
        w.grad = TestProblems.Gradient(3, 50, 20);
        opt.step();
        opt.StateBytes.Should().Be((4 * 20 + 50 + 4) * 4);
        var (opt2, w2) = Single(50, 20, new SvdProjection(4, 10, 1.0), new AdafactorConfig(Beta1: 0.9, RelativeStep: false));
        using var __ = opt2;
        w2.grad = TestProblems.Gradient(3, 50, 20);
        opt2.step();
        opt2.StateBytes.Should().Be((4 * 20 + 50 + 4 + 50 * 4) * 4);
    }

    [Fact]
    public void ParametersWithoutGradientsAreSkipped()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(TestProblems.Gradient(1, 8, 6));
        var b = new Parameter(TestProblems.Gradient(2, 8, 6));
        var b0 = b.detach().clone();
        using var opt = new LowRankOptimizer([new LowRankParamGroup([a, b])], Adam(new SvdProjection(2, 10, 1.0)));
        a.grad = TestProblems.Gradient(3, 8, 6);
        opt.step();
        opt.States[0].Step.Should().Be(1);
        opt.States[1].Step.Should().Be(0);
        opt.States[1].Subspace!.HasBasis.Should().BeFalse();
        TensorAssert.Identical(b, b0, "parameter without gradient");
    }

    [Fact]
    public void NonFiniteGradientAtRefreshKeepsTheBasisAndIsReported()
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(12, 8, new SvdProjection(3, 2, 1.0));
        using var _ = opt;
        var events = new List<RefreshFailedEventArgs>();
        opt.RefreshFailed += (_, e) => events.Add(e);

        w.grad = TestProblems.Gradient(4, 12, 8);
        opt.step();
        var subspace = (BasisSubspace)opt.States[0].Subspace!;
        var basis = subspace.Right!.clone();

        var bad = TestProblems.Gradient(5, 12, 8);
        bad[3, 4] = float.NaN;
        w.grad = bad;
        opt.step(); // step 2: no refresh due
        w.grad = bad.clone();
        var act = () => opt.step(); // step 3: refresh due, gradient non-finite
        act.Should().NotThrow();
        opt.RefreshFailures.Should().Be(1);
        events.Should().ContainSingle().Which.Should().Match<RefreshFailedEventArgs>(e => e.Step == 3 && e.KeptPreviousBasis && e.ParameterIndex == 0);
        TensorAssert.Identical(subspace.Right!, basis, "basis after a failed refresh");
    }

    [Fact]
    public void FirstRefreshFailureSkipsTheUpdateWithoutThrowing()
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(12, 8, new SvdProjection(3, 2, 1.0));
        using var _ = opt;
        var w0 = w.detach().clone();
        var bad = TestProblems.Gradient(5, 12, 8);
        bad[0, 0] = float.PositiveInfinity;
        w.grad = bad;
        opt.step();
        opt.States[0].Step.Should().Be(0);
        opt.RefreshFailures.Should().Be(1);
        TensorAssert.Identical(w, w0, "parameter after a skipped update");
        w.grad = TestProblems.Gradient(6, 12, 8);
        opt.step();
        opt.States[0].Step.Should().Be(1);
    }

    [Fact]
    public void Bfloat16ParametersStayBfloat16WithAFloat32Svd()
    {
        using var scope = NewDisposeScope();
        var (opt, w) = Single(32, 16, new SvdProjection(4, 2, 0.25), dtype: ScalarType.BFloat16);
        using var _ = opt;
        var w0 = w.detach().to(ScalarType.Float32);
        for (var k = 0; k < 4; k++)
        {
            w.grad = TestProblems.Gradient(10 + k, 32, 16, ScalarType.BFloat16);
            opt.step();
        }
        w.dtype.Should().Be(ScalarType.BFloat16);
        ((BasisSubspace)opt.States[0].Subspace!).Right!.dtype.Should().Be(ScalarType.BFloat16);
        (w.to(ScalarType.Float32) - w0).abs().max().item<float>().Should().BeGreaterThan(0);
        w.isfinite().all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void ConvKernelsUseTheFullSpaceUnlessFlatteningIsAsked()
    {
        using var scope = NewDisposeScope();
        var kernel = new Parameter(randn(8, 3, 3, 3));
        var bias = new Parameter(randn(8));
        using var plain = new LowRankOptimizer([new LowRankParamGroup([kernel, bias])], Adam(new SvdProjection(2, 10, 1.0)));
        plain.States[0].Subspace.Should().BeNull();
        plain.States[1].Subspace.Should().BeNull();
        plain.StateBytes.Should().Be((8 * 27 + 8) * 2 * 4);

        var kernel2 = new Parameter(randn(8, 3, 3, 3));
        using var flattened = new LowRankOptimizer([new LowRankParamGroup([kernel2])],
            Adam(new SvdProjection(2, 10, 1.0, Tensors: TensorsProjected.MatricesAndFlattenedKernels)));
        flattened.States[0].Subspace!.ProjectedShape.Should().Equal(2, 27); // viewed as 8 × 27: std projects the left side
        kernel2.grad = randn(8, 3, 3, 3);
        var before = kernel2.detach().clone();
        flattened.step();
        kernel2.shape.Should().Equal(8, 3, 3, 3);
        (kernel2 - before).abs().max().item<float>().Should().BeGreaterThan(0);
        flattened.StateBytes.Should().Be(2 * (8 + 2 * 27) * 4);
    }

    [Fact]
    public void SplitParametersProjectsLinearWeightsOnly()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("emb", nn.Embedding(50, 16)), ("fc", nn.Linear(16, 32)), ("norm", nn.LayerNorm(32)), ("out", nn.Linear(32, 8)));
        var groups = LowRank.SplitParameters(model);
        groups.Should().HaveCount(2);
        groups[0].Parameters.Select(p => p.shape).Should().BeEquivalentTo(new[] { new long[] { 32, 16 }, [8, 32] });
        groups[1].Parameters.Should().HaveCount(model.parameters().Count() - 2);
        using var opt = LowRank.GaLore(groups, lr: 0.01, rank: 4);
        opt.States.Count(s => s.Subspace is not null).Should().Be(2);
    }
}
