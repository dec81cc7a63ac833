using System.Runtime.InteropServices;
using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// Only numerical failures of a refresh (a non-finite gradient, an SVD that fails to converge) are reported and
/// survived; a programming error inside a refresh throws out of <c>step</c> (issue 12, point 3). A reported reason is
/// one line; the full text (libtorch's native stack trace) is in <see cref="RefreshFailedEventArgs.Details"/> (point 10).
/// </summary>
public sealed class RefreshFailureTests
{
    static RefreshFailureTests() => ConfigRegistry.Register(FaultyRefreshProjection.Kind, FaultyRefreshProjection.Read);

    private static (LowRankOptimizer Optimizer, Parameter Weight, List<RefreshFailedEventArgs> Events) Single(string fault)
    {
        var w = new Parameter(TestProblems.Gradient(1, 12, 8));
        var opt = new LowRankOptimizer([new LowRankParamGroup([w])], new LowRankOptions
        {
            LearningRate = 0.01, WeightDecay = 0, DecayOrder = WeightDecayOrder.AfterUpdate,
            Projection = new FaultyRefreshProjection(fault), Rule = new AdamConfig(),
        });
        var events = new List<RefreshFailedEventArgs>();
        opt.RefreshFailed += (_, e) => events.Add(e);
        w.grad = TestProblems.Gradient(2, 12, 8);
        return (opt, w, events);
    }

    [Fact]
    public void AProgrammingErrorInsideARefreshThrowsOutOfStep()
    {
        using var scope = NewDisposeScope();
        var (opt, w, events) = Single("shapes");
        using var _ = opt;
        var w0 = w.detach().clone();
        var step = () => opt.step();
        step.Should().Throw<ExternalException>().WithMessage("*mat1 and mat2 shapes cannot be multiplied*");
        events.Should().BeEmpty("a libtorch error that is not a numerical failure is no refresh failure");
        opt.RefreshFailures.Should().Be(0);
        TensorAssert.Identical(w, w0, "nothing moved");
    }

    [Fact]
    public void AnSvdThatFailsToConvergeIsReportedInOneLineWithTheFullTextInDetails()
    {
        using var scope = NewDisposeScope();
        var (opt, w, events) = Single("nan");
        using var _ = opt;
        var step = () => opt.step();
        step.Should().NotThrow();
        opt.RefreshFailures.Should().Be(1);
        opt.States[0].Step.Should().Be(0, "no basis yet: the update is skipped");
        var e = events.Should().ContainSingle().Subject;
        e.Reason.Should().Contain("failed to converge").And.NotContainAny("\n", "\r");
        e.Details.Should().StartWith(e.Reason);
        e.Details.Length.Should().BeGreaterThan(e.Reason.Length, "libtorch's message carries its native stack trace");
    }

    [Fact]
    public void OnlyConvergenceFailuresOfLibtorchAreNumerical()
    {
        using var scope = NewDisposeScope();
        Exception Caught(Action a)
        {
            try { a(); } catch (Exception e) { return e; }
            throw new InvalidOperationException("no exception");
        }
        var svd = Caught(() => linalg.svd(full(4, 3, double.NaN), fullMatrices: false));
        var shapes = Caught(() => ones(2, 3).mm(ones(2, 3)));
        var index = Caught(() => ones(3).index_select(0, tensor(new long[] { 7 })));
        StepEngine.IsNumericalFailure((ExternalException)svd).Should().BeTrue(svd.Message);
        StepEngine.IsNumericalFailure((ExternalException)shapes).Should().BeFalse(shapes.Message);
        StepEngine.IsNumericalFailure((ExternalException)index).Should().BeFalse(index.Message);
    }
}

/// <summary>GaLore's SVD projection whose refresh fails on purpose: "shapes" (a programming error) or "nan" (an SVD of NaN).</summary>
public sealed record FaultyRefreshProjection(string Fault) : IProjectionConfig
{
    public const string Kind = "tests.FaultyRefreshProjection";

    private static SvdProjection Svd => new(Rank: 2, UpdateProjGap: 2, Scale: 1.0);

    public MatrixShape? MatrixViewOf(long[] shape) => Svd.MatrixViewOf(shape);

    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) =>
        new Faulty(Svd.DeclareState(matrix, dtype), matrix, MatrixSides.SideOf(ProjectionType.Std, matrix), Math.Min(2, matrix.Min), dtype, device, Fault);

    public long[] ProjectedShape(MatrixShape matrix) => Svd.ProjectedShape(matrix);

    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype) => Svd.DeclareState(matrix, dtype);

    public void Validate(string where) { }

    public void Save(StateWriter writer) => writer.String("fault", Fault);

    public static FaultyRefreshProjection Read(StateReader reader) => new(reader.String("fault"));

    private sealed class Faulty(StateDeclaration declaration, MatrixShape matrix, ProjectionSide side, long rank, ScalarType dtype, Device device, string fault)
        : BasisSubspace(declaration, matrix, side, rank, 2, 1.0, dtype, device)
    {
        protected override (Tensor? Left, Tensor? Right) EstimateBasis(Tensor gradient, long refreshIndex, in SubspaceContext context) =>
            fault == "shapes"
                ? (null, gradient.mm(gradient))
                : SvdSubspace.TopSingularVectors(gradient.mul(double.NaN), Rank, NeedsLeft, NeedsRight);
    }
}
