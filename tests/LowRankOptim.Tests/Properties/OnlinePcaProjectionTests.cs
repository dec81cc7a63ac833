using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

public sealed class OnlinePcaProjectionTests
{
    private static LowRankOptions Osd(OnlinePcaProjection projection, double lr = 0.01) => new()
    {
        LearningRate = lr, WeightDecay = 0, DecayOrder = WeightDecayOrder.AfterUpdate, Projection = projection,
        Rule = new AdamConfig(Eps: 1e-6, EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
    };

    /// <summary>‖Ĝ·PᵀP − Ĝ‖² (right) or ‖P·PᵀĜ − Ĝ‖² (left), differentiated by TorchSharp's autograd.</summary>
    private static Tensor AutogradGradient(Tensor p, Tensor g, ProjectionSide side)
    {
        using var enable = enable_grad();
        var leaf = p.detach().clone().requires_grad_(true);
        var gh = g.div(g.norm());
        var loss = side == ProjectionSide.Right
            ? gh.mm(leaf.t()).mm(leaf).sub(gh).square().sum()
            : leaf.mm(leaf.t()).mm(gh).sub(gh).square().sum();
        loss.backward();
        return leaf.grad!.detach().clone();
    }

    [Theory]
    [InlineData(ProjectionSide.Right, 30L, 12L, 4)]
    [InlineData(ProjectionSide.Left, 12L, 30L, 4)]
    [InlineData(ProjectionSide.Right, 9L, 9L, 9)]
    [InlineData(ProjectionSide.Left, 25L, 7L, 3)]
    public void TheClosedFormGradientEqualsAutograd(ProjectionSide side, long rows, long cols, int rank)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(17);
        var g = randn([rows, cols], dtype: ScalarType.Float64, generator: gen).mul_(3);
        // A generic P, neither orthonormal nor small, so every term of the gradient matters.
        var p = side == ProjectionSide.Right
            ? randn([rank, cols], dtype: ScalarType.Float64, generator: gen).mul_(0.4)
            : randn([rows, rank], dtype: ScalarType.Float64, generator: gen).mul_(0.4);
        var projected = side == ProjectionSide.Right ? g.mm(p.t()) : p.t().mm(g);
        var closed = OnlinePcaSubspace.LossGradient(p, g, projected, side, 1.0 / g.norm().item<double>());
        var auto = AutogradGradient(p, g, side);
        using var diff = closed.sub(auto).abs().max();
        diff.item<double>().Should().BeLessThan(1e-12 * Math.Max(1, auto.abs().max().item<double>()));
        auto.abs().max().item<double>().Should().BeGreaterThan(1e-3, "a non-trivial gradient");
    }

    [Fact]
    public void Step1InitializesPBySvdAndLaterStepsMoveItWithTheScheduledRate()
    {
        // P's optimizer is plain SGD without decay: P_{k+1} = P_k − η_P·∇L(P_k) exactly, with η_P = (1/T)·(η_k/η_0).
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 24, 10));
        var projection = new OnlinePcaProjection(3, 4, 1.0, BasisRule: new SgdConfig(), BasisWeightDecay: 0);
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], Osd(projection, lr: 0.02));
        var g1 = TestProblems.Gradient(2, 24, 10);
        w.grad = g1;
        opt.step();
        var subspace = (OnlinePcaSubspace)opt.States[0].Subspace!;
        subspace.Side.Should().Be(ProjectionSide.Right);
        subspace.BasisSteps.Should().Be(0, "step 1 only initializes P");
        using (var svd = (BasisSubspace)new SvdProjection(3, 10, 1.0).Create(new MatrixShape(24, 10), ScalarType.Float32, CPU))
        {
            svd.Refresh(g1, new SubspaceContext(0, 1, 0.02, 0.02));
            TensorAssert.Identical(subspace.Basis!, svd.Right!, "P after step 1 is the canonical SVD basis");
        }

        opt.ParamGroups.First().LearningRate = 0.005; // η_k/η_0 = 1/4
        var g2 = TestProblems.Gradient(3, 24, 10);
        var p = subspace.Basis!.clone();
        var expected = p - (0.25 / 4) * OnlinePcaSubspace.LossGradient(p, g2, g2.mm(p.t()), ProjectionSide.Right, 1.0 / g2.norm().item<float>());
        w.grad = g2;
        opt.step();
        subspace.BasisSteps.Should().Be(1);
        TensorAssert.Close(subspace.Basis!, expected, 1e-7, 1e-6, "P after step 2");
        opt.States[0].Refreshes.Should().Be(1, "P is never recomputed by SVD");
    }

    [Fact]
    public void TheDefaultBasisOptimizerIsTorchAdamWWithDecay()
    {
        using var scope = NewDisposeScope();
        var projection = new OnlinePcaProjection();
        projection.BasisRule.Should().Be(new AdamConfig(0.9, 0.999, 1e-8, true, AdamEpsilonMode.AfterBiasCorrection));
        projection.BasisWeightDecay.Should().Be(0.01);

        // One AdamW step on P by hand: P ← P(1 − η_P·λ_P); m = 0.1∇, v = 0.001∇²; P ← P − η_P/0.1 · m/(√v/√0.001 + ε).
        var w = new Parameter(TestProblems.Gradient(4, 10, 20));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], Osd(projection with { Rank = 2, UpdateProjGap = 5 }));
        w.grad = TestProblems.Gradient(5, 10, 20);
        opt.step();
        var subspace = (OnlinePcaSubspace)opt.States[0].Subspace!;
        subspace.Side.Should().Be(ProjectionSide.Left);
        var p = subspace.Basis!.clone();
        var g = TestProblems.Gradient(6, 10, 20);
        var grad = OnlinePcaSubspace.LossGradient(p, g, p.t().mm(g), ProjectionSide.Left, 1.0 / g.norm().item<float>());
        const double lrP = 1.0 / 5;
        var m = grad * 0.1;
        var v = grad.square() * 0.001;
        var expected = p * (1 - lrP * 0.01) - (lrP / 0.1) * m / (v.sqrt() / Math.Sqrt(0.001) + 1e-8);
        w.grad = g;
        opt.step();
        TensorAssert.Close(subspace.Basis!, expected, 1e-6, 1e-5, "P after one AdamW step");
        var rule = (AdamRule)subspace.BasisRuleState;
        TensorAssert.Close(rule.ExpAvg, m, 1e-7, 1e-5, "P's first moment");
    }

    [Fact]
    public void ZeroGradientsProduceNoNaN()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 16, 8));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], Osd(new OnlinePcaProjection(2, 10, 1.0)));
        w.grad = TestProblems.Gradient(2, 16, 8);
        opt.step();
        for (var k = 0; k < 3; k++)
        {
            w.grad = zeros(16, 8);
            opt.step();
        }
        var subspace = (OnlinePcaSubspace)opt.States[0].Subspace!;
        subspace.BasisSteps.Should().Be(3);
        subspace.Basis!.isfinite().all().item<bool>().Should().BeTrue();
        w.isfinite().all().item<bool>().Should().BeTrue();
        opt.RefreshFailures.Should().Be(0);
    }

    [Fact]
    public void ANonFiniteGradientLeavesPUnchangedAndIsReported()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 16, 8));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], Osd(new OnlinePcaProjection(2, 10, 1.0)));
        var events = new List<RefreshFailedEventArgs>();
        opt.RefreshFailed += (_, e) => events.Add(e);
        w.grad = TestProblems.Gradient(2, 16, 8);
        opt.step();
        var subspace = (OnlinePcaSubspace)opt.States[0].Subspace!;
        var before = subspace.Basis!.clone();
        var bad = TestProblems.Gradient(3, 16, 8);
        bad[2, 3] = float.NaN;
        w.grad = bad;
        var act = () => opt.step();
        act.Should().NotThrow();
        TensorAssert.Identical(subspace.Basis!, before, "P after a non-finite gradient");
        subspace.BasisSteps.Should().Be(0);
        events.Should().ContainSingle().Which.Should().Match<RefreshFailedEventArgs>(e => e.Step == 2 && e.KeptPreviousBasis);
    }

    [Theory]
    [InlineData(40L, 12L, 3)]
    [InlineData(12L, 40L, 3)]
    public void StateBytesArePPlusItsAdamWStatePlusTheMoments(long rows, long cols, int rank)
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, rows, cols));
        using var opt = LowRank.OnlineSubspaceDescent([w], rank: rank, update_proj_gap: 10);
        w.grad = TestProblems.Gradient(2, rows, cols);
        opt.step();
        long a = Math.Max(rows, cols), b = Math.Min(rows, cols);
        opt.StateBytes.Should().Be(rank * (3 * b + 2 * a) * 4, "r(3b + 2a) floats (spec §4.3)");
    }

    [Fact]
    public void TheFactoryHonoursTheBasisOptimizerOptions()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 20, 10));
        using var opt = LowRank.OnlineSubspaceDescent([w], lr: 0.01, rank: 2, update_proj_gap: 7, scale: 0.5, proj_type: ProjectionType.Left,
            p_optimizer: new SgdConfig(0.9), p_weight_decay: 0.05);
        var config = opt.Defaults.Projection.Should().BeOfType<OnlinePcaProjection>().Subject;
        (config.Rank, config.UpdateProjGap, config.Scale, config.Type, config.BasisWeightDecay).Should().Be((2, 7, 0.5, ProjectionType.Left, 0.05));
        config.BasisRule.Should().Be(new SgdConfig(0.9));
        for (var k = 0; k < 3; k++)
        {
            w.grad = TestProblems.Gradient(2 + k, 20, 10);
            opt.step();
        }
        var subspace = (OnlinePcaSubspace)opt.States[0].Subspace!;
        subspace.Side.Should().Be(ProjectionSide.Left);
        subspace.BasisRuleState.Should().BeOfType<SgdRule>();
        subspace.BasisRuleState.StateBytes.Should().Be(20 * 2 * 4, "SGD momentum buffer of P's shape");
    }
}
