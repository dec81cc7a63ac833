using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

public sealed class RandomizedSvdProjectionTests
{
    /// <summary>A = U·diag(σ)·Vᵀ with seeded random orthonormal U (m×b), V (n×b), b = min(m, n).</summary>
    internal static Tensor WithSpectrum(long seed, long rows, long cols, Func<int, double> sigma)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator((ulong)seed);
        var b = Math.Min(rows, cols);
        var (u, _) = linalg.qr(randn([rows, b], dtype: ScalarType.Float64, generator: gen));
        var (v, _) = linalg.qr(randn([cols, b], dtype: ScalarType.Float64, generator: gen));
        var s = tensor(Enumerable.Range(0, (int)b).Select(sigma).ToArray(), dtype: ScalarType.Float64);
        return u.mul(s).mm(v.t()).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>sin of the largest principal angle between the column spaces of two orthonormal bases (p×r).</summary>
    internal static double SinLargestAngle(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var x = a.to(ScalarType.Float64);
        var y = b.to(ScalarType.Float64);
        var residual = x.sub(y.mm(y.t().mm(x)));
        return linalg.svdvals(residual).max().item<double>();
    }

    private static BasisSubspace Refreshed(IProjectionConfig config, Tensor a, int parameterIndex = 0)
    {
        var subspace = (BasisSubspace)config.Create(new MatrixShape(a.shape[0], a.shape[1]), ScalarType.Float32, CPU);
        subspace.Refresh(a, new SubspaceContext(parameterIndex, 1, 0.01, 0.01));
        return subspace;
    }

    private static Tensor SvdBasis(Tensor a, int rank, bool left)
    {
        using var subspace = Refreshed(new SvdProjection(rank, 10, 1.0, left ? ProjectionType.Left : ProjectionType.Right), a);
        return (left ? subspace.Left! : subspace.Right!.t()).clone();
    }

    [Theory]
    [InlineData(ProjectionType.Std, 40L, 24L, 8)]
    [InlineData(ProjectionType.Std, 24L, 40L, 8)]
    [InlineData(ProjectionType.ReverseStd, 40L, 24L, 8)]
    [InlineData(ProjectionType.Left, 30L, 30L, 5)]
    [InlineData(ProjectionType.Right, 30L, 50L, 5)]
    [InlineData(ProjectionType.Full, 33L, 21L, 6)]
    [InlineData(ProjectionType.Std, 20L, 9L, 6)] // r + p > min(m, n): the sketch is clamped
    public void BasesAreOrthonormalWithCanonicalSigns(ProjectionType type, long rows, long cols, int rank)
    {
        using var scope = NewDisposeScope();
        using var subspace = Refreshed(new RandomizedSvdProjection(rank, 10, 1.0, type), TestProblems.Gradient(2, rows, cols));
        foreach (var (basis, columns) in new[] { (subspace.Left, true), (subspace.Right, false) })
        {
            if (basis is null) continue;
            var gram = columns ? basis.t().mm(basis) : basis.mm(basis.t());
            TensorAssert.Close(gram, eye(rank), 1e-5, 0, $"{type} Gram matrix");
            var v = columns ? basis : basis.t();
            v.gather(0, v.abs().argmax(0, keepdim: true)).min().item<float>().Should().BePositive("the largest-magnitude entry of each vector is positive");
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WithAClearSpectralGapTheSubspaceMatchesTheExactSvds(bool tall)
    {
        // σ_1..σ_r in [5.5, 10], σ_{r+1}.. ≤ 0.1: gap ratio γ = σ_{r+1}/σ_r ≈ 0.018. Subspace iteration
        // (Halko et al. 2011, Thm 9.1) gives tan θ_max ≤ γ^(2q+1)·‖Ω₂Ω₁⁺‖, with ‖Ω₂Ω₁⁺‖ of order √(n·r)/p ≈ 10
        // here: about 2e-8 for q = 2, far below float32 rounding. The test bound, sin θ_max ≤ 1e-4, is
        // that rounding floor with a wide margin; with q = 0 the bound is only ≈ 0.2.
        using var scope = NewDisposeScope();
        const int r = 10;
        var (rows, cols) = tall ? (200L, 120L) : (120L, 200L);
        var a = WithSpectrum(7, rows, cols, i => i < r ? 10 - 0.5 * i : 0.1 * Math.Pow(0.99, i));
        using var rsi = Refreshed(new RandomizedSvdProjection(r, 10, 1.0, ProjectionType.Std), a);
        // Std projects the smaller side: right for a tall matrix, left for a wide one.
        var estimate = tall ? rsi.Right!.t() : rsi.Left!;
        SinLargestAngle(estimate, SvdBasis(a, r, left: !tall)).Should().BeLessThan(1e-4);
    }

    [Fact]
    public void WithManyPowerIterationsItConvergesToTheSvdBasis()
    {
        // Slow decay σ_i = 0.9^i: every consecutive gap is 10%. Without power iterations the sketch misses
        // the subspace; each iteration multiplies the error by about (σ_{r+1}/σ_r)² = 0.81, so 60 iterations
        // reach float32 rounding and the vectors (signs canonicalized) equal the exact SVD's.
        using var scope = NewDisposeScope();
        const int r = 6;
        var a = WithSpectrum(11, 120, 80, i => Math.Pow(0.9, i));
        var exact = SvdBasis(a, r, left: true);
        using var none = Refreshed(new RandomizedSvdProjection(r, 10, 1.0, ProjectionType.Left, PowerIterations: 0), a);
        using var many = Refreshed(new RandomizedSvdProjection(r, 10, 1.0, ProjectionType.Left, PowerIterations: 60), a);
        SinLargestAngle(none.Left!, exact).Should().BeGreaterThan(0.05, "a single sketch is far from the slowly decaying spectrum's subspace");
        SinLargestAngle(many.Left!, exact).Should().BeLessThan(1e-3);
        TensorAssert.Close(many.Left!, exact, 2e-3, 0, "basis vectors after 60 power iterations");
    }

    [Fact]
    public void SketchesDependOnSeedParameterIndexAndRefreshCountOnly()
    {
        using var scope = NewDisposeScope();
        // A flat spectrum with q = 0: the basis is the sketch's range, so different sketches show.
        var a = TestProblems.Gradient(3, 60, 40);
        var config = new RandomizedSvdProjection(4, 10, 1.0, ProjectionType.Right, PowerIterations: 0, Seed: 5);
        using var first = Refreshed(config, a, parameterIndex: 2);
        using var again = Refreshed(config, a, parameterIndex: 2);
        using var otherParameter = Refreshed(config, a, parameterIndex: 3);
        using var otherSeed = Refreshed(config with { Seed = 6 }, a, parameterIndex: 2);
        TensorAssert.Identical(again.Right!, first.Right!, "same seed, index and refresh count");
        SinLargestAngle(otherParameter.Right!.t(), first.Right!.t()).Should().BeGreaterThan(1e-2);
        SinLargestAngle(otherSeed.Right!.t(), first.Right!.t()).Should().BeGreaterThan(1e-2);

        var before = first.Right!.clone();
        first.Refresh(a, new SubspaceContext(2, 11, 0.01, 0.01)); // second refresh: a new sketch
        first.RefreshCount.Should().Be(2);
        SinLargestAngle(first.Right!.t(), before.t()).Should().BeGreaterThan(1e-2);
    }

    [Fact]
    public void StateBytesEqualGaLoresAndTheFactoryHonoursItsOptions()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 64, 32));
        using var opt = LowRank.GaLore([w], lr: 0.01, rank: 8, update_proj_gap: 10, scale: 1.0,
            projector: GaLoreProjector.RandomizedSvd, oversampling: 4, power_iterations: 3, seed: 9);
        var config = opt.Defaults.Projection.Should().BeOfType<RandomizedSvdProjection>().Subject;
        (config.Oversampling, config.PowerIterations, config.Seed, config.Rank, config.UpdateProjGap).Should().Be((4, 3, 9L, 8, 10));
        w.grad = TestProblems.Gradient(3, 64, 32);
        opt.step();
        opt.StateBytes.Should().Be(8 * (32 + 2 * 64) * 4);
        ((RandomizedSvdSubspace)opt.States[0].Subspace!).SketchWidth.Should().Be(12);
        using var adafactor = LowRank.GaLoreAdafactor([new LowRankParamGroup([new Parameter(randn(10, 6))])], rank: 2,
            projector: GaLoreProjector.RandomizedSvd, power_iterations: 1);
        adafactor.Defaults.Projection.Should().Be(new RandomizedSvdProjection(2, 200, 0.25, PowerIterations: 1));
    }

    [Fact]
    public void TrainingWithTheRandomizedProjectorTracksExactGaLoreOnAGappedProblem()
    {
        // Gradients with a clear spectral gap: the randomized and exact bases agree to rounding, so the two
        // optimizers' trajectories agree closely over several refreshes.
        using var scope = NewDisposeScope();
        var w1 = new Parameter(TestProblems.Gradient(1, 48, 30));
        var w2 = new Parameter(w1.detach().clone());
        using var exact = new LowRankOptimizer([new LowRankParamGroup([w1])], Options(new SvdProjection(4, 3, 1.0)));
        using var fast = new LowRankOptimizer([new LowRankParamGroup([w2])], Options(new RandomizedSvdProjection(4, 3, 1.0)));
        for (var k = 1; k <= 9; k++)
        {
            var g = WithSpectrum(100 + k, 48, 30, i => i < 4 ? 4 - 0.5 * i : 0.01);
            w1.grad = g;
            w2.grad = g.clone();
            exact.step();
            fast.step();
        }
        TensorAssert.Close(w2, w1, 1e-4, 0, "randomized vs exact GaLore after 9 steps (3 refreshes)");
    }

    private static LowRankOptions Options(IProjectionConfig projection) => new()
    {
        LearningRate = 0.01, WeightDecay = 0, DecayOrder = WeightDecayOrder.AfterUpdate, Projection = projection,
        Rule = new AdamConfig(Eps: 1e-6, EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
    };
}
