using FluentAssertions;
using LowRankOptim.Tests.Reference;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

public sealed class DctProjectionTests
{
    private static LowRankOptions DctAdam(DctProjection projection, double lr = 0.01) => new()
    {
        LearningRate = lr, WeightDecay = 0, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = projection,
        Rule = new AdamConfig(EpsMode: AdamEpsilonMode.AfterBiasCorrection),
    };

    /// <summary>C[k, j] = c_k·√(2/s)·cos(πk(2j+1)/(2s)) entry by entry in double precision.</summary>
    private static double[,] Formula(int s)
    {
        var c = new double[s, s];
        for (var k = 0; k < s; k++)
            for (var j = 0; j < s; j++)
                c[k, j] = (k == 0 ? Math.Sqrt(0.5) : 1) * Math.Sqrt(2.0 / s) * Math.Cos(Math.PI * k * (2 * j + 1) / (2.0 * s));
        return c;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(333)]
    public void TheBasisIsTheOrthonormalDctIIMatrix(int s)
    {
        using var scope = NewDisposeScope();
        var c = DctBasis.Build(s, ScalarType.Float64);
        c.shape.Should().Equal(s, s);
        TensorAssert.Close(c.t().mm(c), eye(s, dtype: ScalarType.Float64), 1e-12, 0, "CᵀC");
        TensorAssert.Close(c.mm(c.t()), eye(s, dtype: ScalarType.Float64), 1e-12, 0, "CCᵀ");
        var expected = Formula(s).Cast<double>().Select(v => (float)v).ToArray();
        TensorAssert.Close(c, expected, 1e-7, 0, "entries against the formula");
    }

    [Fact]
    public void TheFloat32BasisOfALargeSizeIsOrthonormalToRounding()
    {
        // The reference builds the basis in float32 arithmetic, whose orthogonality error grows with s
        // (2.1e-4 at s = 4096, spec §3.1). Built in float64 with the angle reduced exactly, then cast, the
        // error is that of the float32 rounding only.
        using var scope = NewDisposeScope();
        var c = DctBasis.Build(2048, ScalarType.Float32).to(ScalarType.Float64);
        var error = c.t().mm(c).sub_(eye(2048, dtype: ScalarType.Float64)).abs().max().item<double>();
        error.Should().BeLessThan(2e-6);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(17)]
    [InlineData(100)]
    [InlineData(257)]
    public void TheFastTransformEqualsTheProductWithTheBasis(int s)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(42);
        var c = DctBasis.Build(s, ScalarType.Float64);
        var right = randn([9, s], dtype: ScalarType.Float64, generator: gen);
        var left = randn([s, 6], dtype: ScalarType.Float64, generator: gen);
        MaxAbsDifference(DctTransform.TimesBasis(right, 1), right.mm(c)).Should().BeLessThan(1e-12, $"x·C, s = {s}");
        MaxAbsDifference(DctTransform.TimesBasis(left, 0), c.t().mm(left)).Should().BeLessThan(1e-12, $"Cᵀ·x, s = {s}");
        var right32 = right.to(ScalarType.Float32);
        var fast32 = DctTransform.TimesBasis(right32, 1);
        fast32.dtype.Should().Be(ScalarType.Float32);
        TensorAssert.Close(fast32, right.mm(c), 1e-5, 1e-5, $"float32 x·C, s = {s}");
    }

    public static TheoryData<int, ScalarType> SizesAndDTypes()
    {
        var data = new TheoryData<int, ScalarType>();
        foreach (var s in new[] { 1, 2, 3, 7, 8, 64, 100 })
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.BFloat16 }) data.Add(s, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(SizesAndDTypes))]
    public void TheForwardTransformEqualsTheProductWithTheTransposedBasis(int s, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(43);
        var c = DctBasis.Build(s, ScalarType.Float64);
        var right = randn([9, s], dtype: ScalarType.Float64, generator: gen).to(dtype);
        var left = randn([s, 6], dtype: ScalarType.Float64, generator: gen).to(dtype);
        var fastRight = DctTransform.TimesBasisTransposed(right, 1);
        var fastLeft = DctTransform.TimesBasisTransposed(left, 0);
        fastRight.dtype.Should().Be(dtype);
        fastLeft.dtype.Should().Be(dtype);
        // Against the float64 product with the input as given; the result is rounded once to the input's dtype.
        var (atol, rtol) = dtype switch { ScalarType.Float64 => (1e-12, 0.0), ScalarType.Float32 => (2e-6, 2e-6), _ => (1e-2, 8e-3) };
        TensorAssert.Close(fastRight, right.to(ScalarType.Float64).mm(c.t()), atol, rtol, $"x·Cᵀ, s = {s}, {dtype}");
        TensorAssert.Close(fastLeft, c.mm(left.to(ScalarType.Float64)), atol, rtol, $"C·x, s = {s}, {dtype}");
        // It inverts the transform in the other direction: (x·C)·Cᵀ = x.
        if (dtype == ScalarType.Float64)
            MaxAbsDifference(DctTransform.TimesBasisTransposed(DctTransform.TimesBasis(right, 1), 1), right).Should().BeLessThan(1e-12);
    }

    [Fact]
    public void TheBlockedTransformsGiveTheSameResultForAnyBlockSize()
    {
        using var scope = NewDisposeScope();
        // 64 MiB over e·(5s + r + 4) bytes per line: 780 float32 rows of s = 4096 at r = 1024, 390 in float64; at least 1.
        DctTransform.BlockLines(4096, 1024, ScalarType.Float32).Should().Be(780);
        DctTransform.BlockLines(4096, 1024, ScalarType.Float64).Should().Be(390);
        DctTransform.BlockLines(4096, 256, ScalarType.Float32).Should().Be(67108864 / (4 * (5 * 4096 + 256 + 4)));
        DctTransform.BlockLines(1L << 24, 1, ScalarType.Float32).Should().Be(1);
        DctTransform.WorkspaceBytesPerLine(100, 10, ScalarType.Float32).Should().Be(4 * (500 + 10 + 4));

        var g = TestProblems.Gradient(31, 23, 17);
        var n = TestProblems.Gradient(32, 23, 5);
        using var positions = DctTransform.SourcePositions(17, CPU).index_select(0, tensor(new long[] { 3, 0, 16, 7, 8 }));
        var whole = DctTransform.SelectedSlices(g, 1, positions);
        var line = DctTransform.WorkspaceBytesPerLine(17, 5, ScalarType.Float32);
        foreach (var budget in new[] { 1, 3 * line, 10 * line })
        {
            TensorAssert.Close(DctTransform.SelectedSlices(g, 1, positions, budget: budget), whole, 1e-6, 1e-6, $"project, budget {budget}");
            TensorAssert.Close(DctTransform.SelectedSlices(g.t(), 0, positions, budget: budget), whole.t(), 1e-6, 1e-6, $"left project, budget {budget}");
            var back = zeros(23, 17);
            DctTransform.AddScatteredTimesBasisTransposed(n, 1, positions, back, 1.0, accumulate: true, budget: budget);
            var backLeft = zeros(17, 23);
            DctTransform.AddScatteredTimesBasisTransposed(n.t(), 0, positions, backLeft, 1.0, accumulate: true, budget: budget);
            var q = DctBasis.Build(17).index_select(1, tensor(new long[] { 3, 0, 16, 7, 8 }));
            TensorAssert.Close(back, n.mm(q.t()), 1e-5, 1e-5, $"back, budget {budget}");
            TensorAssert.Close(backLeft, q.mm(n.t()), 1e-5, 1e-5, $"left back, budget {budget}");
        }
    }

    public static TheoryData<long, long, int, ProjectionType, ScalarType> ProjectionCases()
    {
        var data = new TheoryData<long, long, int, ProjectionType, ScalarType>();
        foreach (var (rows, cols, rank) in new (long, long, int)[] { (40, 24, 1), (40, 24, 5), (40, 24, 24), (37, 23, 4), (64, 64, 16), (24, 40, 7) })
            foreach (var type in new[] { ProjectionType.Right, ProjectionType.Left })
                data.Add(rows, cols, rank, type, ScalarType.Float32);
        data.Add(37, 23, 6, ProjectionType.Std, ScalarType.Float64);
        data.Add(37, 23, 6, ProjectionType.ReverseStd, ScalarType.Float64);
        data.Add(37, 23, 6, ProjectionType.Std, ScalarType.BFloat16);
        data.Add(37, 23, 6, ProjectionType.ReverseStd, ScalarType.BFloat16);
        return data;
    }

    /// <summary>
    /// G whose transformed slices (columns of G·C on the right, rows of Cᵀ·G on the left) have norms 1.05^π(j) for a seeded
    /// permutation π: every score is 5 % from the next, so even bfloat16 products select the same indices in the same order.
    /// </summary>
    private static Tensor WellSeparated(long seed, long rows, long cols, bool right)
    {
        using var gen = new Generator((ulong)seed);
        var s = right ? cols : rows;
        var norms = pow(1.05, randperm(s, generator: gen).to(ScalarType.Float64));
        var a = randn(right ? [rows, s] : [s, cols], dtype: ScalarType.Float64, generator: gen);
        var c = DctBasis.Build(s, ScalarType.Float64);
        return right
            ? a.div(linalg.vector_norm(a, 2, [0L], keepdim: true)).mul(norms.unsqueeze(0)).mm(c.t()).to(ScalarType.Float32)
            : c.mm(a.div(linalg.vector_norm(a, 2, [1L], keepdim: true)).mul(norms.unsqueeze(1))).to(ScalarType.Float32);
    }

    [Theory]
    [MemberData(nameof(ProjectionCases))]
    public void FastTransformProjectionEqualsTheMatrixProduct(long rows, long cols, int rank, ProjectionType type, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var matrix = new MatrixShape(rows, cols);
        using var product = (DctSubspace)new DctProjection(rank, Scale: 0.5, Type: type).Create(matrix, dtype, CPU);
        using var fast = (DctSubspace)new DctProjection(rank, Scale: 0.5, Method: DctTransformMethod.FastTransformProjection, Type: type).Create(matrix, dtype, CPU);
        var context = new SubspaceContext(0, 1, 0.01, 0.01);
        // The matrix product rounds to the dtype at every operation (bfloat16: ~3 digits), the transform once at the end.
        var (atol, rtol) = dtype switch { ScalarType.Float64 => (1e-12, 1e-12), ScalarType.Float32 => (2e-5, 2e-5), _ => (0.1, 0.02) };
        var g = WellSeparated(rows * 7 + cols, rows, cols, product.Side == ProjectionSide.Right).to(dtype);
        TensorAssert.Close(fast.Refresh(g, context)!, product.Refresh(g, context)!, atol, rtol, "R at a re-selection");
        fast.Indices.Should().Equal(product.Indices);
        fast.Side.Should().Be(product.Side);

        var g2 = TestProblems.Gradient(rows * 7 + cols + 1, rows, cols, dtype);
        var projected = fast.Project(g2);
        projected.dtype.Should().Be(dtype);
        projected.shape.Should().Equal(product.ProjectedShape);
        TensorAssert.Close(projected, product.Project(g2), atol, rtol, "Project");

        var n = TestProblems.Gradient(rows + cols, product.ProjectedShape[0], product.ProjectedShape[1], dtype);
        var back = fast.ProjectBack(n);
        back.dtype.Should().Be(dtype);
        TensorAssert.Close(back, product.ProjectBack(n), atol, rtol, "ProjectBack (scale 0.5)");

        var target = TestProblems.Gradient(3, rows, cols, dtype);
        var expected = target.clone();
        fast.AddProjectedBack(target, n, -0.3);
        // The matrix product's addmm_ takes α·scale as a float32 (6e-8 off): in float64 the reference is W + α·Back(N).
        if (dtype == ScalarType.Float64) expected.add_(product.ProjectBack(n), alpha: -0.3);
        else product.AddProjectedBack(expected, n, -0.3);
        TensorAssert.Close(target, expected, atol, rtol, "AddProjectedBack (α = −0.3, scale 0.5)");

        // The per-layer product path: Proj(aᵀb) from the B×m and B×n factors.
        var a = TestProblems.Gradient(5, 6, rows, dtype);
        var b = TestProblems.Gradient(6, 6, cols, dtype);
        var formed = a.t().mm(b);
        TensorAssert.Close(fast.ProjectProduct(a, b), fast.Project(formed), dtype == ScalarType.Float32 ? 1e-4 : atol, rtol, "ProjectProduct");
        fast.ProductIsCheaper(6).Should().BeTrue("6 tokens are fewer than the other dimension");
    }

    [Fact]
    public void ThePresetsPassFastTransformProjectionThrough()
    {
        using var scope = NewDisposeScope();
        LowRankPresets.DctAdamW(sim_type: DctTransformMethod.FastTransformProjection).Projection.Should()
            .Be(new DctProjection(128, Method: DctTransformMethod.FastTransformProjection));
        var w = new Parameter(TestProblems.Gradient(1, 20, 12));
        using var opt = LowRank.DctAdamW([w], rank: 3, sim_type: DctTransformMethod.FastTransformProjection);
        ((DctProjection)opt.Defaults.Projection!).Method.Should().Be(DctTransformMethod.FastTransformProjection);
    }

    [Fact]
    public void FastTransformProjectionNeverBuildsTheBasis()
    {
        using var scope = NewDisposeScope();
        // A size no other test uses, so the cache check cannot race with parallel tests.
        var w = new Parameter(TestProblems.Gradient(1, 71, 53));
        using (var opt = LowRank.DctAdamW([w], lr: 0.01, rank: 4, update_proj_gap: 2, sim_type: DctTransformMethod.FastTransformProjection))
        {
            for (var k = 0; k < 3; k++)
            {
                w.grad = TestProblems.Gradient(10 + k, 71, 53);
                opt.step();
            }
            DctBasis.IsCached(53, ScalarType.Float32, CPU).Should().BeFalse();
        }
    }

    [Fact]
    public void AnOptimizerRunWithFastTransformProjectionStaysCloseToTheMatrixProduct()
    {
        using var scope = NewDisposeScope();
        var (x, y) = TestProblems.Data(5);
        Tensor[] Run(DctTransformMethod method)
        {
            var model = TestProblems.Mlp(7);
            using var opt = LowRank.DctAdamW(model.parameters(), lr: 0.01, weight_decay: 0.05, rank: 4, update_proj_gap: 3, scale: 0.5, sim_type: method);
            for (var k = 0; k < 20; k++)
            {
                TestProblems.LossAndBackward(model, x, y);
                opt.step();
                opt.zero_grad();
            }
            return TestProblems.Snapshot(model);
        }
        var product = Run(DctTransformMethod.MatrixProduct);
        var fast = Run(DctTransformMethod.FastTransformProjection);
        var start = TestProblems.Snapshot(TestProblems.Mlp(7));
        for (var i = 0; i < product.Length; i++)
        {
            var distance = (fast[i] - product[i]).norm().item<float>();
            var moved = (product[i] - start[i]).norm().item<float>();
            moved.Should().BeGreaterThan(0);
            (distance / moved).Should().BeLessThan(1e-5f, $"parameter {i}: relative to how far 20 steps moved it");
            (distance / product[i].norm().item<float>()).Should().BeLessThan(1e-6f, $"parameter {i}");
        }
    }

    private static double MaxAbsDifference(Tensor a, Tensor b)
    {
        using var d = a.to(ScalarType.Float64).sub(b.to(ScalarType.Float64)).abs().max();
        return d.item<double>();
    }

    [Fact]
    public void SelectionOrdersByDescendingScoreWithTiesToTheLowerIndex()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new float[] { 1, 3, 3, 2, 3, 0, 2 });
        DctSubspace.TopIndices(scores, 3).Should().Equal(1, 2, 4);
        DctSubspace.TopIndices(scores, 5).Should().Equal(1, 2, 4, 3, 6);
        DctSubspace.TopIndices(tensor(new float[] { 0.5f, 0.25f, 0.75f }), 3).Should().Equal(2, 0, 1);
    }

    public static TheoryData<long, long, int> Shapes() => new()
    {
        { 40, 24, 5 },  // right, s = 24
        { 24, 40, 5 },  // left, s = 24
        { 37, 23, 4 },  // odd sizes
        { 64, 64, 16 }, // square: right
        { 30, 11, 11 }, // r = s
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FastTransformAndMatrixProductSelectTheSameIndicesAndLowRankGradient(long rows, long cols, int rank)
    {
        using var scope = NewDisposeScope();
        var g = TestProblems.Gradient(rows * 100 + cols, rows, cols);
        var matrix = new MatrixShape(rows, cols);
        using var product = (DctSubspace)new DctProjection(rank).Create(matrix, ScalarType.Float32, CPU);
        using var fast = (DctSubspace)new DctProjection(rank, Method: DctTransformMethod.FastTransform).Create(matrix, ScalarType.Float32, CPU);
        var context = new SubspaceContext(0, 1, 0.01, 0.01);
        var a = product.Refresh(g, context)!;
        var b = fast.Refresh(g, context)!;
        fast.Indices.Should().Equal(product.Indices);
        product.Indices.Should().OnlyHaveUniqueItems().And.OnlyContain(i => i >= 0 && i < Math.Min(rows, cols));
        a.shape.Should().Equal(product.ProjectedShape);
        TensorAssert.Close(b, a, 1e-5, 1e-5, "low-rank gradient at a re-selection");
        // Between re-selections the projection uses the stored columns: the same tensor again.
        TensorAssert.Close(product.Project(g), a, 1e-5, 1e-5, "Project with the stored indices");
    }

    [Theory]
    [InlineData(1.0, ProjectionType.Std, DctTransformMethod.MatrixProduct)]
    [InlineData(2.0, ProjectionType.Std, DctTransformMethod.FastTransform)]
    [InlineData(double.PositiveInfinity, ProjectionType.Std, DctTransformMethod.MatrixProduct)]
    [InlineData(3.0, ProjectionType.ReverseStd, DctTransformMethod.FastTransform)]
    [InlineData(1.0, ProjectionType.Left, DctTransformMethod.FastTransform)]
    public void ScoresAreTheLpNormsOfTheTransformedSlicesOnTheChosenSide(double p, ProjectionType type, DctTransformMethod method)
    {
        using var scope = NewDisposeScope();
        var g = TestProblems.Gradient(77, 30, 18);
        using var subspace = (DctSubspace)new DctProjection(5, Method: method, ScoreNorm: p, Type: type).Create(new MatrixShape(30, 18), ScalarType.Float32, CPU);
        subspace.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
        var right = type == ProjectionType.Std; // 30×18: Std → right (s = 18); ReverseStd and Left → left (s = 30)
        subspace.Side.Should().Be(right ? ProjectionSide.Right : ProjectionSide.Left);
        var g64 = g.to(ScalarType.Float64);
        var c = DctBasis.Build(right ? 18 : 30, ScalarType.Float64);
        var s = right ? g64.mm(c) : c.t().mm(g64);
        var scores = linalg.vector_norm(s, p, [right ? 0L : 1L]);
        var expected = scores.argsort(descending: true).narrow(0, 0, 5).data<long>().ToArray();
        subspace.Indices.Should().Equal(expected);
    }

    [Fact]
    public void TheScaleMultipliesTheBackProjection()
    {
        using var scope = NewDisposeScope();
        var g = TestProblems.Gradient(8, 16, 10);
        using var plain = (DctSubspace)new DctProjection(3).Create(new MatrixShape(16, 10), ScalarType.Float32, CPU);
        using var scaled = (DctSubspace)new DctProjection(3, Scale: 0.25).Create(new MatrixShape(16, 10), ScalarType.Float32, CPU);
        plain.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
        scaled.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
        var n = TestProblems.Gradient(9, 16, 3);
        TensorAssert.Close(scaled.ProjectBack(n), plain.ProjectBack(n) * 0.25, 1e-7, 0, "α·Back(N)");
        var target = zeros(16, 10);
        scaled.AddProjectedBack(target, n, -2.0);
        TensorAssert.Close(target, plain.ProjectBack(n) * -0.5, 1e-6, 0, "fused W += −2·α·Back(N)");
    }

    [Fact]
    public void ProjectAndBackProjectAreTheSelectedColumnsOfTheBasis()
    {
        using var scope = NewDisposeScope();
        var g = TestProblems.Gradient(5, 20, 12);
        using var subspace = (DctSubspace)new DctProjection(4).Create(new MatrixShape(20, 12), ScalarType.Float32, CPU);
        subspace.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
        var c = DctBasis.Build(12, ScalarType.Float32);
        var q = c.index_select(1, tensor(subspace.Indices!));
        TensorAssert.Close(subspace.Project(g), g.mm(q), 1e-6, 0, "R = G·Q");
        var n = TestProblems.Gradient(6, 20, 4);
        TensorAssert.Close(subspace.ProjectBack(n), n.mm(q.t()), 1e-6, 0, "Back(N) = N·Qᵀ");
        // Selecting every column and projecting back is the identity.
        using var all = (DctSubspace)new DctProjection(12).Create(new MatrixShape(20, 12), ScalarType.Float32, CPU);
        all.Refresh(g, new SubspaceContext(0, 1, 0.01, 0.01));
        TensorAssert.Close(all.ProjectBack(all.Project(g)), g, 1e-5, 0, "full selection round trip");
    }

    [Fact]
    public void ReselectionHappensAtStep1AndAtMultiplesOfTheGap()
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 20, 12));
        using var opt = new LowRankOptimizer([new LowRankParamGroup([w])], DctAdam(new DctProjection(3, 3)));
        var at = new List<long>();
        for (var k = 1; k <= 13; k++)
        {
            var before = opt.States[0].Refreshes;
            w.grad = TestProblems.Gradient(10 + k, 20, 12);
            opt.step();
            if (opt.States[0].Refreshes > before) at.Add(k);
        }
        at.Should().Equal(1, 3, 6, 9, 12);
    }

    [Fact]
    public void TheBasisIsSharedPerSizeAndReleasedWithItsLastUser()
    {
        using var scope = NewDisposeScope();
        // Sizes used by no other test, so the cache checks cannot race with parallel tests.
        var a = new Parameter(randn(61, 43));  // right, s = 43
        var b = new Parameter(randn(43, 90));  // left, s = 43
        var c = new Parameter(randn(59, 47));  // right, s = 47
        var opt = LowRank.DctAdamW([a, b, c], lr: 0.01, rank: 4);
        foreach (var p in new[] { a, b, c }) p.grad = randn(p.shape);
        opt.step();
        var sa = (DctSubspace)opt.States[0].Subspace!;
        var sb = (DctSubspace)opt.States[1].Subspace!;
        var sc = (DctSubspace)opt.States[2].Subspace!;
        (sa.BasisSize, sb.BasisSize, sc.BasisSize).Should().Be((43L, 43L, 47L));
        sa.SharedBasis.Handle.Should().Be(sb.SharedBasis.Handle, "one basis per size");
        sc.SharedBasis.shape.Should().Equal(47, 47);
        DctBasis.IsCached(43, ScalarType.Float32, CPU).Should().BeTrue();
        // Per-parameter state: moments (a·r each) and r int64 indices; the basis is not per parameter.
        opt.States[0].StateBytes.Should().Be(2 * 61 * 4 * 4 + 4 * 8);
        opt.States[1].StateBytes.Should().Be(2 * 4 * 90 * 4 + 4 * 8);
        opt.Dispose();
        DctBasis.IsCached(43, ScalarType.Float32, CPU).Should().BeFalse();
        DctBasis.IsCached(47, ScalarType.Float32, CPU).Should().BeFalse();
    }

    [Fact]
    public void MatricesAtOrAboveMaxShapeVectorsAndKernelsFollowTheRules()
    {
        using var scope = NewDisposeScope();
        var embedding = new Parameter(randn(50, 8));
        var linear = new Parameter(randn(20, 8));
        var bias = new Parameter(randn(20));
        var kernel = new Parameter(randn(6, 2, 3, 3));
        using var opt = LowRank.DctAdamW([embedding, linear, bias, kernel], rank: 2, max_shape: 50);
        opt.States.Select(s => s.Subspace is not null).Should().Equal(false, true, false, false);
        var moments = (2 * 50 * 8 + 2 * 20 * 2 + 2 * 20 + 2 * 6 * 18) * 4;
        opt.StateBytes.Should().Be(moments, "no indices before the first selection");
        foreach (var p in new[] { embedding, linear, bias, kernel }) p.grad = randn(p.shape);
        opt.step();
        opt.StateBytes.Should().Be(moments + 2 * 8, "plus r int64 indices");

        var kernel2 = new Parameter(randn(6, 2, 3, 3));
        using var flattened = new LowRankOptimizer([new LowRankParamGroup([kernel2])],
            DctAdam(new DctProjection(2, Tensors: TensorsProjected.MatricesAndFlattenedKernels)));
        flattened.States[0].Subspace!.ProjectedShape.Should().Equal(2, 18); // 6 × 18: left, s = 6
        kernel2.grad = randn(6, 2, 3, 3);
        flattened.step();
        kernel2.isfinite().all().item<bool>().Should().BeTrue();
    }

    [Theory]
    [InlineData(DctTransformMethod.MatrixProduct)]
    [InlineData(DctTransformMethod.FastTransform)]
    [InlineData(DctTransformMethod.FastTransformProjection)]
    public void Bfloat16ParametersTrain(DctTransformMethod method)
    {
        using var scope = NewDisposeScope();
        var w = new Parameter(TestProblems.Gradient(1, 32, 16, ScalarType.BFloat16));
        var w0 = w.detach().to(ScalarType.Float32);
        using var opt = LowRank.DctAdamW([w], lr: 0.01, rank: 4, update_proj_gap: 2, sim_type: method);
        for (var k = 0; k < 4; k++)
        {
            w.grad = TestProblems.Gradient(10 + k, 32, 16, ScalarType.BFloat16);
            opt.step();
        }
        w.dtype.Should().Be(ScalarType.BFloat16);
        ((DctSubspace)opt.States[0].Subspace!).SharedBasis.dtype.Should().Be(ScalarType.BFloat16);
        (w.to(ScalarType.Float32) - w0).abs().max().item<float>().Should().BeGreaterThan(0);
        w.isfinite().all().item<bool>().Should().BeTrue();
    }

    public static IEnumerable<object[]> DctFixtures() =>
        FixtureFiles.All().Where(p => GoldenFixture.Peek(p).Algorithm == "dct_adamw")
            .SelectMany(p => new[] { DctTransformMethod.FastTransform, DctTransformMethod.FastTransformProjection }
                .Select(m => new object[] { Path.GetFileNameWithoutExtension(p), p, m }));

    [Theory]
    [MemberData(nameof(DctFixtures))]
    public void EveryDctFixturePassesWithTheFastTransformsToo(string name, string path, DctTransformMethod method)
    {
        var f = GoldenFixture.Load(path);
        f.Name.Should().Be(name);
        GoldenFixtureTests.Replay(f, method);
    }
}
