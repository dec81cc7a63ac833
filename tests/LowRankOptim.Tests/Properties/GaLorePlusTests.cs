using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

public sealed class GaLorePlusTests
{
    private static LowRankOptions Options(IProjectionConfig projection, double decay = 0) => new()
    {
        LearningRate = 0.01, WeightDecay = decay, DecayOrder = WeightDecayOrder.AfterUpdate, Projection = projection,
        Rule = new AdamConfig(Eps: 1e-6, EpsMode: AdamEpsilonMode.BeforeBiasCorrection),
    };

    private static Tensor Grad(int step, long rows, long cols) => TestProblems.Gradient(500 + step, rows, cols);

    [Theory]
    [InlineData(HeadAxis.Rows, 24L, 40L, ProjectionType.Right)]
    [InlineData(HeadAxis.Columns, 40L, 24L, ProjectionType.Left)]
    [InlineData(HeadAxis.Rows, 32L, 32L, ProjectionType.Std)] // square: Q's long side is std's right side
    public void WithOneHeadItEqualsRandomizedGaLoreBitwise(HeadAxis axis, long rows, long cols, ProjectionType type)
    {
        using var scope = NewDisposeScope();
        var w1 = new Parameter(TestProblems.Gradient(1, rows, cols));
        var w2 = new Parameter(w1.detach().clone());
        using var galore = new LowRankOptimizer([new LowRankParamGroup([w1])],
            Options(new RandomizedSvdProjection(5, 3, 0.5, type, PowerIterations: 1, Seed: 21), decay: 0.1));
        using var plus = new LowRankOptimizer([new LowRankParamGroup([w2])],
            Options(new GaLorePlusProjection(5, 3, 0.5, PowerIterations: 1, Seed: 21, Heads: new AttentionHeads(1, axis)), decay: 0.1));
        for (var k = 1; k <= 7; k++)
        {
            w1.grad = Grad(k, rows, cols);
            w2.grad = Grad(k, rows, cols);
            galore.step();
            plus.step();
        }
        TensorAssert.Identical(w2, w1, "GaLore+ with h = 1 vs GaLore with randomized subspace iteration");
        ((CrossHeadSubspace)plus.States[0].Subspace!).LastHead.Should().Be(0);
    }

    [Fact]
    public void WithoutHeadsAndResidualItEqualsTheRandomizedGaLoreFactoryBitwise()
    {
        using var scope = NewDisposeScope();
        var w1 = new Parameter(TestProblems.Gradient(2, 30, 18));
        var w2 = new Parameter(TestProblems.Gradient(2, 18, 30));
        var v1 = new Parameter(w1.detach().clone());
        var v2 = new Parameter(w2.detach().clone());
        using var galore = LowRank.GaLore([w1, w2], lr: 0.02, rank: 4, update_proj_gap: 2, scale: 0.25, weight_decay: 0.05,
            projector: GaLoreProjector.RandomizedSvd, seed: 3);
        using var plus = LowRank.GaLorePlus([new LowRankParamGroup([v1, v2])], lr: 0.02, rank: 4, update_proj_gap: 2, scale: 0.25, weight_decay: 0.05,
            seed: 3, residual_density: 0);
        for (var k = 1; k <= 5; k++)
        {
            (w1.grad, w2.grad) = (Grad(k, 30, 18), Grad(k + 50, 18, 30));
            (v1.grad, v2.grad) = (Grad(k, 30, 18), Grad(k + 50, 18, 30));
            galore.step();
            plus.step();
        }
        TensorAssert.Identical(v1, w1, "tall weight");
        TensorAssert.Identical(v2, w2, "wide weight");
        plus.StateBytes.Should().Be(galore.StateBytes);
    }

    [Theory]
    [InlineData(HeadAxis.Rows)]
    [InlineData(HeadAxis.Columns)]
    public void TheSharedBasisIsEstimatedFromTheDrawnHeadsBlock(HeadAxis axis)
    {
        using var scope = NewDisposeScope();
        const int heads = 4, dh = 6, d = 20, r = 3;
        var (rows, cols) = axis == HeadAxis.Rows ? (heads * dh, d) : (d, heads * dh);
        var config = new GaLorePlusProjection(r, 1, 1.0, Seed: 8, Heads: new AttentionHeads(heads, axis));
        using var subspace = (CrossHeadSubspace)config.Create(new MatrixShape(rows, cols), ScalarType.Float32, CPU);
        var seen = new HashSet<int>();
        for (var refresh = 0; refresh < 12; refresh++)
        {
            var g = TestProblems.Gradient(40 + refresh, rows, cols);
            subspace.Refresh(g, new SubspaceContext(7, refresh + 1, 0.01, 0.01));
            var head = GaLorePlusProjection.HeadFor(8, 7, refresh, heads);
            subspace.LastHead.Should().Be(head);
            seen.Add(head);
            var block = g.narrow(axis == HeadAxis.Rows ? 0 : 1, head * dh, dh).contiguous();
            // The same estimate from the block alone: a randomized GaLore subspace on the block with the same sketch seed.
            var alone = new RandomizedSvdProjection(r, 1, 1.0, axis == HeadAxis.Rows ? ProjectionType.Right : ProjectionType.Left, Seed: 8);
            using var reference = (BasisSubspace)alone.Create(new MatrixShape(block.shape[0], block.shape[1]), ScalarType.Float32, CPU);
            for (var i = 0; i <= refresh; i++) reference.Refresh(block, new SubspaceContext(7, i + 1, 0.01, 0.01));
            if (axis == HeadAxis.Rows) TensorAssert.Close(subspace.Right!, reference.Right!, 1e-5, 0, $"refresh {refresh}");
            else TensorAssert.Close(subspace.Left!, reference.Left!, 1e-5, 0, $"refresh {refresh}");
        }
        seen.Count.Should().BeGreaterThan(2, "the head is redrawn at each refresh");
        subspace.ProjectedShape.Should().Equal(axis == HeadAxis.Rows ? [rows, r] : [r, cols]);
    }

    [Fact]
    public void PerHeadReadingProjectsEveryHeadBlockWithTheSharedBasis()
    {
        using var scope = NewDisposeScope();
        const int heads = 3, dh = 8, d = 10, r = 2;
        foreach (var axis in new[] { HeadAxis.Rows, HeadAxis.Columns })
        {
            var rows = axis == HeadAxis.Rows;
            var shape = rows ? new MatrixShape(heads * dh, d) : new MatrixShape(d, heads * dh);
            var config = new GaLorePlusProjection(r, 1, 0.5, Heads: new AttentionHeads(heads, axis), Reading: CrossHeadReading.PerHeadShortSide);
            using var subspace = (HeadBlockSubspace)config.Create(shape, ScalarType.Float32, CPU);
            var g = TestProblems.Gradient(9, shape.Rows, shape.Cols);
            subspace.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
            var p = subspace.Basis!;
            var projected = subspace.Project(g);
            projected.shape.Should().Equal(rows ? [heads * r, d] : [d, heads * r]);
            var back = subspace.ProjectBack(projected);
            for (var i = 0; i < heads; i++)
            {
                var block = g.narrow(rows ? 0 : 1, i * dh, dh);
                var expected = rows ? p.mm(p.t().mm(block)) : block.mm(p.t()).mm(p);
                TensorAssert.Close(back.narrow(rows ? 0 : 1, i * dh, dh), expected.mul(0.5), 1e-5, 0, $"{axis}, head {i}");
            }
            config.DeclareState(shape, ScalarType.Float32).PlannedBytes.Should().Be(dh * r * 4);
            ((ISubspace)subspace).StateBytes.Should().Be(dh * r * 4);
        }
    }

    [Fact]
    public void ZeroResidualDensityIsExactlyGaLore()
    {
        using var scope = NewDisposeScope();
        var w1 = new Parameter(TestProblems.Gradient(3, 16, 24));
        var w2 = new Parameter(w1.detach().clone());
        var heads = new AttentionHeads(4, HeadAxis.Rows);
        using var none = new LowRankOptimizer([new LowRankParamGroup([w1])], Options(new GaLorePlusProjection(3, 2, 0.5, Heads: heads)));
        using var zero = new LowRankOptimizer([new LowRankParamGroup([w2])],
            Options(new GaLorePlusProjection(3, 2, 0.5, Heads: heads, ResidualDensity: 0, ResidualWarmup: 1, ResidualReestimate: true)));
        for (var k = 1; k <= 5; k++)
        {
            w1.grad = Grad(k, 16, 24);
            w2.grad = Grad(k, 16, 24);
            none.step();
            zero.step();
        }
        TensorAssert.Identical(w2, w1, "ρ = 0");
        ((CrossHeadSubspace)zero.States[0].Subspace!).Residual.Should().BeNull();
        zero.StateBytes.Should().Be(none.StateBytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void FullResidualDensityIsGaLorePlusFullAdamWOnTheResidual(int warmup)
    {
        // ρ = 1 keeps every entry: the sparse term is AdamW on E = G − Back(Proj(G)) with its own step count
        // j = k − S_w, added to GaLore's update. Reference: the same randomized GaLore (same seed) and AdamW on E
        // written out by hand with galore_torch's conventions (ε before bias correction).
        using var scope = NewDisposeScope();
        const long m = 20, n = 12;
        const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-6, alphaE = 0.7;
        var w1 = new Parameter(TestProblems.Gradient(4, m, n));
        var w2 = new Parameter(w1.detach().clone());
        using var galore = new LowRankOptimizer([new LowRankParamGroup([w1])], Options(new RandomizedSvdProjection(3, 3, 0.5, Seed: 2)));
        using var plus = new LowRankOptimizer([new LowRankParamGroup([w2])],
            Options(new GaLorePlusProjection(3, 3, 0.5, Seed: 2, ResidualDensity: 1, ResidualWarmup: warmup, ResidualScale: alphaE)));
        var mE = zeros(m, n, dtype: ScalarType.Float64);
        var vE = zeros(m, n, dtype: ScalarType.Float64);
        var sparseSum = zeros(m, n, dtype: ScalarType.Float64);
        for (var k = 1; k <= 7; k++)
        {
            var g = Grad(k, m, n);
            w1.grad = g;
            w2.grad = g.clone();
            galore.step();
            plus.step();
            if (k <= warmup) continue;
            var p = ((BasisSubspace)galore.States[0].Subspace!).Right!.to(ScalarType.Float64);
            var e = g.to(ScalarType.Float64).sub(g.to(ScalarType.Float64).mm(p.t()).mm(p));
            mE.mul_(b1).add_(e, alpha: 1 - b1);
            vE.mul_(b2).addcmul_(e, e, value: 1 - b2);
            var j = k - warmup;
            var c = lr * Math.Sqrt(1 - Math.Pow(b2, j)) / (1 - Math.Pow(b1, j));
            sparseSum.add_(mE.div(vE.sqrt().add(eps)), alpha: c * alphaE);
        }
        var residual = ((CrossHeadSubspace)plus.States[0].Subspace!).Residual!;
        residual.Step.Should().Be(7 - warmup);
        residual.Indices!.to(ScalarType.Int64).data<long>().ToArray().Should().Equal(Enumerable.Range(0, (int)(m * n)).Select(i => (long)i));
        TensorAssert.Close(residual.ExpAvg!.view(m, n), mE, 1e-6, 1e-4, "m_e equals AdamW's first moment of E");
        TensorAssert.Close(w2, w1.to(ScalarType.Float64).sub(sparseSum), 2e-6, 1e-5, "GaLore+ (ρ = 1) vs GaLore − AdamW(E)");
        sparseSum.abs().max().item<double>().Should().BeGreaterThan(1e-3, "the residual term is not negligible");
    }

    [Fact]
    public void TheResidualKeepsTheLargestAccumulatedEntriesAndItsMemoryFollowsTheFormula()
    {
        // Q of 4 heads (d_h = 8, d = 16), rank 6 ≤ d_h, ρ = 0.05, warm-up 2: k = ⌈0.05·512⌉ = 26.
        using var scope = NewDisposeScope();
        const long h = 4, dh = 8, d = 16, r = 6, k = 26;
        var w = new Parameter(zeros(h * dh, d));
        var config = new GaLorePlusProjection((int)r, 10, 1.0, Heads: new AttentionHeads((int)h, HeadAxis.Rows), ResidualDensity: 0.05, ResidualWarmup: 2);
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], Options(config));
        var planned = MemoryPlanner.Plan(opt).StateBytes;
        planned.Should().Be((r * d + 2 * h * dh * r) * 4 + k * 4 + 2 * k * 4, "basis r·d, moments 2·(h·d_h)·r, k int32 indices and 2k moments");
        var accumulated = zeros(h * dh, d);
        for (var step = 1; step <= 2; step++)
        {
            var g = Grad(step, h * dh, d);
            w.grad = g;
            opt.step();
            var sub = (CrossHeadSubspace)opt.States[0].Subspace!;
            accumulated.add_(g.sub(g.mm(sub.Right!.t()).mm(sub.Right!)).abs());
            if (step == 1)
            {
                sub.Residual!.Accumulator.Should().NotBeNull();
                opt.StateBytes.Should().Be((r * d + 2 * h * dh * r) * 4 + h * dh * d * 4, "during the warm-up: basis, moments and the m·n float32 buffer");
                sub.Residual.WarmupSteps.Should().Be(1);
            }
        }
        var residual = ((CrossHeadSubspace)opt.States[0].Subspace!).Residual!;
        residual.Accumulator.Should().BeNull("the buffer is freed when the warm-up ends");
        residual.Indices!.dtype.Should().Be(ScalarType.Int32);
        opt.StateBytes.Should().Be(planned);
        var expected = accumulated.view(-1).topk((int)k).indexes.sort().Values;
        residual.Indices.to(ScalarType.Int64).data<long>().ToArray().Should().Equal(expected.data<long>().ToArray());
        residual.Step.Should().Be(0);
        w.grad = Grad(3, h * dh, d);
        opt.step();
        residual.Step.Should().Be(1);
        residual.ExpAvg!.abs().sum().item<float>().Should().BePositive();
    }

    [Fact]
    public void ReestimationAtARefreshKeepsTheMomentsOfRetainedEntries()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(zeros(12, 10));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])],
            Options(new GaLorePlusProjection(2, 3, 1.0, ResidualDensity: 0.25, ResidualWarmup: 1, ResidualReestimate: true)));
        w.grad = Grad(1, 12, 10);
        opt.step();
        w.grad = Grad(2, 12, 10);
        opt.step();
        var residual = ((CrossHeadSubspace)opt.States[0].Subspace!).Residual!;
        var before = residual.Indices!.to(ScalarType.Int64).data<long>().ToArray();
        var mBefore = residual.ExpAvg!.data<float>().ToArray();
        w.grad = Grad(3, 12, 10);
        opt.step(); // no refresh: same indices
        residual.Indices!.to(ScalarType.Int64).data<long>().ToArray().Should().Equal(before);
        var mAfterStep3 = residual.ExpAvg!.data<float>().ToArray();
        w.grad = Grad(4, 12, 10);
        opt.step(); // refresh at step 4: re-chosen from this gradient's residual
        var after = residual.Indices!.to(ScalarType.Int64).data<long>().ToArray();
        after.Should().NotEqual(before);
        after.Should().BeInAscendingOrder();
        var mAfter = residual.ExpAvg!.data<float>().ToArray();
        var vAfter = residual.ExpAvgSq!.data<float>().ToArray();
        var e = residual.Step;
        e.Should().Be(3);
        for (var i = 0; i < after.Length; i++)
        {
            var old = Array.IndexOf(before, after[i]);
            // m ← β1·m_old + (1 − β1)·e: a retained entry starts from its old moment, a new one from 0.
            if (old < 0) Math.Abs(vAfter[i] - 0.001f * (mAfter[i] / 0.1f) * (mAfter[i] / 0.1f)).Should().BeLessThan(1e-6f, "a new entry's moments start at zero");
            else mAfterStep3[old].Should().NotBe(0);
        }
    }

    [Fact]
    public void HeadGroupsSplitAModelByHeadLayoutIncludingGroupedQueryAttention()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("q", nn.Linear(16, 16, hasBias: false)), ("k", nn.Linear(16, 8, hasBias: false)),
            ("v", nn.Linear(16, 8, hasBias: false)), ("o", nn.Linear(16, 16, hasBias: false)), ("mlp", nn.Linear(16, 24)));
        AttentionHeads? Heads(string name) => name switch
        {
            "q" => AttentionHeads.QueryKeyValue(4),
            "k" or "v" => AttentionHeads.QueryKeyValue(2), // GQA: d_h = 4 for every weight
            "o" => AttentionHeads.Output(4),
            _ => null,
        };
        using var opt = LowRank.GaLorePlus(model, Heads, lr: 0.01, rank: 3, update_proj_gap: 5, residual_density: 0.1, residual_warmup: 0);
        opt.ParamGroups.Count().Should().Be(5, "q, k+v, o, the MLP weight, and the full-space rest");
        var projections = opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options.Projection).ToList();
        projections.Take(4).Select(p => ((GaLorePlusProjection)p!).Heads).Should().Equal(Heads("q"), Heads("k"), Heads("o"), null);
        projections[4].Should().Be(FullSpace.Instance);
        foreach (var p in model.parameters()) p.grad = randn_like(p);
        opt.step();
        MemoryPlanner.Plan(opt).StateBytes.Should().Be(opt.StateBytes);
        var k = (CrossHeadSubspace)opt.States.First(s => s.Shape.SequenceEqual(new long[] { 8, 16 }) && s.GroupIndex == 1).Subspace!;
        k.LastHead.Should().BeInRange(0, 1);
        k.Rank.Should().Be(3);
    }
}
