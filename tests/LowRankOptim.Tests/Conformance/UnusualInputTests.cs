using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method and unusual input (issue 12, points 7, 8 and 10): complex parameters are refused at
/// construction, empty parameters are skipped, strided parameters train as contiguous ones, a parameter listed twice
/// is named, a disposed optimizer says so, and a huge or non-finite gradient is skipped without touching weights or state.
/// </summary>
public sealed class UnusualInputTests
{
    public static TheoryData<string> Methods() => MethodCatalog.Names();


    [Theory]
    [MemberData(nameof(Methods))]
    public void ComplexParametersAreRefusedAtConstruction(string method)
    {
        using var scope = NewDisposeScope();
        using var opt = MethodCatalog.Get(method).Create(TestProblems.Mlp(1));
        var (groups, states) = (opt.ParamGroups.Count(), opt.States.Count);
        var real = new Parameter(randn(4, 3));
        var complex = new Parameter(randn(5, 3, ScalarType.ComplexFloat32));
        var add = () => opt.add_param_group(new LowRankParamGroup([real, complex]));
        add.Should().Throw<ArgumentException>(method).WithMessage("parameter group *: parameter 1 (shape [5, 3], ComplexFloat32) is complex*view_as_real*");
        opt.ParamGroups.Should().HaveCount(groups);
        opt.States.Should().HaveCount(states);
    }

    [Fact]
    public void FactoriesRefuseComplexAndIntegerParameters()
    {
        using var scope = NewDisposeScope();
        var complex = () => LowRank.Smmf([new Parameter(randn(6, 6, ScalarType.ComplexFloat64))]);
        complex.Should().Throw<ArgumentException>().WithMessage("*parameter 0 (shape [6, 6], ComplexFloat64) is complex*");
        var adafactor = () => LowRank.GaLoreAdafactor([new LowRankParamGroup([new Parameter(randn(8, 4, ScalarType.ComplexFloat32))])], rank: 2);
        adafactor.Should().Throw<ArgumentException>().WithMessage("*is complex*");
        var integer = () => LowRank.AdamW([new Parameter(zeros(3, dtype: ScalarType.Int64), requires_grad: false)]);
        integer.Should().Throw<ArgumentException>().WithMessage("*parameter 0 (shape [3], Int64) is not a floating-point tensor*");
    }

    /// <summary>Empty parameters (0×n, n×0, [0]) are skipped as torch skips them: no error, no change, no step.</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void EmptyParametersAreSkipped(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(2);
        using var opt = MethodCatalog.Get(method).Trained(model, 1);
        var empty = new[] { new Parameter(zeros(0, 7)), new Parameter(zeros(9, 0)), new Parameter(zeros(0)) };
        opt.add_param_group(new LowRankParamGroup(empty));
        var (x, y) = TestProblems.Data(2);
        for (var k = 0; k < 3; k++)
        {
            TestProblems.LossAndBackward(model, x, y);
            foreach (var p in empty) p.grad = zeros_like(p);
            opt.step();
            opt.zero_grad();
        }
        opt.StepParameter(empty[0], zeros(0, 7));
        foreach (var p in empty) p.numel().Should().Be(0);
        opt.States.TakeLast(3).Should().OnlyContain(s => s.Step == 0, $"{method}: empty parameters are skipped");
        opt.States.SkipLast(3).Should().OnlyContain(s => s.Step == 4);
        using var copy = MethodCatalog.Get(method).Create(TestProblems.Mlp(2));
        copy.add_param_group(new LowRankParamGroup([new Parameter(zeros(0, 7)), new Parameter(zeros(9, 0)), new Parameter(zeros(0))]));
        var bytes = Checkpoints.Bytes(opt);
        using (var reader = new BinaryReader(new MemoryStream(bytes))) copy.load_state_dict(reader);
        Checkpoints.Bytes(copy).Should().Equal(bytes);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void AParameterListedTwiceInOneGroupIsNamed(string method)
    {
        using var scope = NewDisposeScope();
        using var opt = MethodCatalog.Get(method).Create(TestProblems.Mlp(3));
        var p = new Parameter(randn(5, 3));
        var add = () => opt.add_param_group(new LowRankParamGroup([p, new Parameter(randn(2)), p]));
        add.Should().Throw<ArgumentException>().WithMessage("parameter group *: parameter 2 (shape [5, 3], Float32) appears twice in the group (as parameters 0 and 2)*");
        var other = () => opt.add_param_group(new LowRankParamGroup([opt.States[0].Parameter]));
        other.Should().Throw<ArgumentException>().WithMessage("*appears in more than one group: it is already in parameter group 0*");
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void ADisposedOptimizerThrowsObjectDisposedException(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(4);
        var opt = MethodCatalog.Get(method).Trained(model, 1);
        var bytes = Checkpoints.Bytes(opt);
        opt.Dispose();
        opt.Dispose(); // twice is harmless
        var (x, y) = TestProblems.Data(4);
        TestProblems.LossAndBackward(model, x, y);
        var calls = new (string What, Action Call)[]
        {
            ("step", () => opt.step()),
            ("StepParameter", () => opt.StepParameter(model.parameters().First(), model.parameters().First().grad!)),
            ("zero_grad", () => opt.zero_grad()),
            ("load_state_dict", () => opt.load_state_dict(new BinaryReader(new MemoryStream(bytes)))),
            ("add_param_group", () => opt.add_param_group(new LowRankParamGroup([new Parameter(randn(2))]))),
        };
        foreach (var (what, call) in calls) call.Should().Throw<ObjectDisposedException>($"{method}: {what} after Dispose");
    }

    [Fact]
    public void StepOnAnOptimizerWithoutParametersThrows()
    {
        using var opt = LowRank.AdamW([], lr: 0.01);
        var step = () => opt.step();
        step.Should().Throw<InvalidOperationException>().WithMessage("*no parameters*empty parameter list*");
    }

    /// <summary>
    /// A non-contiguous (transposed-storage) fc1 and fc2, given the same gradients in the same strided layout, train as
    /// the contiguous ones do.
    /// </summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void StridedParametersTrainAsContiguousOnes(string method)
    {
        using var scope = NewDisposeScope();
        var contiguous = TestProblems.Mlp(5);
        var strided = TestProblems.Mlp(5);
        using (var _ = no_grad())
            foreach (var name in new[] { "fc1", "fc2" })
            {
                var linear = (Linear)strided.named_children().Single(c => c.name == name).module;
                linear.weight = new Parameter(linear.weight!.detach().t().contiguous().t());
                linear.weight.is_contiguous().Should().BeFalse();
            }
        using var a = MethodCatalog.Get(method).Create(contiguous);
        using var b = MethodCatalog.Get(method).Create(strided);
        using var gen = new Generator(55);
        for (var k = 0; k < 8; k++)
        {
            foreach (var (p, q) in contiguous.parameters().Zip(strided.parameters()))
            {
                var g = randn(p.shape, generator: gen).mul_(0.1);
                p.grad = g.clone();
                q.grad = q.is_contiguous() ? g.clone() : g.t().contiguous().t();
            }
            a.step();
            b.step();
        }
        foreach (var ((name, p), q) in contiguous.named_parameters().Zip(strided.parameters()))
            TensorAssert.Close(q, p, 1e-6, 1e-5, $"{method}: {name}");
        b.States.Should().OnlyContain(s => s.Step == 8);
    }

    private static byte[] ComponentBytes(LowRankParameterState state)
    {
        using var stream = new MemoryStream();
        using (var binary = new BinaryWriter(stream))
        {
            var writer = new StateWriter(binary);
            ((IStatefulComponent)state.Rule).Save(writer);
            if (state.Subspace is { } subspace) ((IStatefulComponent)subspace).Save(writer);
        }
        return stream.ToArray();
    }

    /// <summary>
    /// Point 8: one gradient of magnitude 1e30, or one with a NaN or an infinity, is skipped: the weights, moments and
    /// bases stay as they were, <c>UpdateSkipped</c> is raised, and training goes on finite.
    /// </summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void AHugeOrNonFiniteGradientIsSkippedWithoutPoisoningTheState(string method)
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(6);
        var (x, y) = TestProblems.Data(6);
        using var opt = MethodCatalog.Get(method).Trained(model, 4, seed: 6);
        var skipped = new List<UpdateSkippedEventArgs>();
        opt.UpdateSkipped += (_, e) => skipped.Add(e);
        foreach (var bad in new[] { 1e30f, float.NaN, float.PositiveInfinity, -3e25f })
        {
            var weights = TestProblems.Snapshot(model);
            var state = opt.States.Select(ComponentBytes).ToList();
            var steps = opt.States.Select(s => s.Step).ToList();
            TestProblems.LossAndBackward(model, x, y);
            foreach (var p in model.parameters())
                using (var _ = no_grad()) p.grad![TensorIndex.Ellipsis] = p.grad.clone().view(-1).index_fill_(0, tensor(new long[] { 0 }), bad).view(p.shape);
            skipped.Clear();
            opt.step();
            opt.zero_grad();
            foreach (var ((name, p), w) in model.named_parameters().Zip(weights)) TensorAssert.Identical(p, w, $"{method}: {name} after a gradient entry {bad}");
            opt.States.Select(ComponentBytes).Should().BeEquivalentTo(state, o => o.WithStrictOrdering(), $"{method}: moments and bases after a gradient entry {bad}");
            opt.States.Select(s => s.Step).Should().Equal(steps.Select(k => k + 1), $"{method}: the skipped step is counted");
            skipped.Select(e => e.ParameterIndex).Should().BeEquivalentTo(Enumerable.Range(0, opt.States.Count), $"{method}: every parameter reports its skip of {bad}");
        }
        opt.SkippedUpdates.Should().Be(4L * opt.States.Count);
        for (var k = 0; k < 6; k++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
        foreach (var (name, p) in model.named_parameters())
            p.isfinite().all().item<bool>().Should().BeTrue($"{method}: {name} trains on finite after the skipped gradients");
        opt.SkippedUpdates.Should().Be(4L * opt.States.Count, "ordinary gradients are never skipped");
    }
}
