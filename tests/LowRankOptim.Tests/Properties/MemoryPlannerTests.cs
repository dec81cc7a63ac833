using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Properties;

/// <summary>
/// The planner, computed from shapes alone, equals the bytes the optimizer allocates, for projection sides, rank
/// clamps and rule combinations beyond the catalog's methods (every catalog method in every dtype:
/// Conformance/PlanEqualsAllocatedTests).
/// </summary>
public sealed class MemoryPlannerTests
{
    public static TheoryData<string> Configurations() =>
        ["reverse_std", "left", "right", "rank-clamped", "adafactor", "sgd-momentum", "flattened-kernels", "bf16", "smmf-no-beta", "smmf-vectors-unfactorized", "smmf-bf16",
         "dct-left", "galore-plus", "galore-plus-one-head-per-head-residual",
         // Rank 15 lies between the dimensions 12 and 20 (and above 7): the clamp must follow each projection's own side.
         "std-rank-15", "reverse_std-rank-15", "left-rank-15", "right-rank-15", "full-rank-15", "randomized-reverse_std-rank-15",
         "dct-rank-15", "dct-reverse_std-rank-15", "dct-left-rank-15", "dct-right-rank-15", "osd-reverse_std-rank-15", "galore-plus-rank-15"];

    private static (IProjectionConfig, IUpdateRuleConfig, ScalarType) Config(string name) => name switch
    {
        "reverse_std" => (new SvdProjection(3, 5, 1.0, ProjectionType.ReverseStd), new AdamConfig(), float32),
        "left" => (new SvdProjection(3, 5, 1.0, ProjectionType.Left), new AdamConfig(), float32),
        "right" => (new SvdProjection(3, 5, 1.0, ProjectionType.Right), new AdamConfig(), float32),
        "rank-clamped" => (new SvdProjection(64, 5, 1.0), new AdamConfig(), float32),
        "adafactor" => (new SvdProjection(3, 5, 1.0), new AdafactorConfig(RelativeStep: false), float32),
        "sgd-momentum" => (new SvdProjection(3, 5, 1.0), new SgdConfig(0.9), float32),
        "flattened-kernels" => (new SvdProjection(2, 5, 1.0, Tensors: TensorsProjected.MatricesAndFlattenedKernels), new AdamConfig(), float32),
        "bf16" => (new SvdProjection(3, 5, 1.0), new AdafactorConfig(Beta1: 0.5, RelativeStep: false), bfloat16),
        "smmf-no-beta" => (FullSpace.Instance, new SmmfConfig(Beta: null), float32),
        "smmf-vectors-unfactorized" => (FullSpace.Instance, new SmmfConfig(VectorReshape: false), float32),
        "smmf-bf16" => (new SvdProjection(3, 5, 1.0), new SmmfConfig(), bfloat16),
        "dct-left" => (new DctProjection(3, 5, Type: ProjectionType.Left), new AdamConfig(), float32),
        "galore-plus" => (new GaLorePlusProjection(3, 5, 1.0), new AdamConfig(), float32),
        "galore-plus-one-head-per-head-residual" => (new GaLorePlusProjection(3, 5, 1.0, Heads: new AttentionHeads(1, HeadAxis.Rows),
            Reading: CrossHeadReading.PerHeadShortSide, ResidualDensity: 0.37, ResidualWarmup: 0), new AdamConfig(), bfloat16),
        "std-rank-15" => (new SvdProjection(15, 5, 1.0), new AdamConfig(), float32),
        "reverse_std-rank-15" => (new SvdProjection(15, 5, 1.0, ProjectionType.ReverseStd), new AdamConfig(), float32),
        "left-rank-15" => (new SvdProjection(15, 5, 1.0, ProjectionType.Left), new AdamConfig(), float32),
        "right-rank-15" => (new SvdProjection(15, 5, 1.0, ProjectionType.Right), new AdamConfig(), float32),
        "full-rank-15" => (new SvdProjection(15, 5, 1.0, ProjectionType.Full), new AdamConfig(), float32),
        "randomized-reverse_std-rank-15" => (new RandomizedSvdProjection(15, 5, 1.0, ProjectionType.ReverseStd), new AdamConfig(), float32),
        "dct-rank-15" => (new DctProjection(15, 5), new AdamConfig(), float32),
        "dct-reverse_std-rank-15" => (new DctProjection(15, 5, Type: ProjectionType.ReverseStd), new AdamConfig(), float32),
        "dct-left-rank-15" => (new DctProjection(15, 5, Type: ProjectionType.Left), new AdamConfig(), float32),
        "dct-right-rank-15" => (new DctProjection(15, 5, Type: ProjectionType.Right), new AdamConfig(), float32),
        "osd-reverse_std-rank-15" => (new OnlinePcaProjection(15, 5, 1.0, ProjectionType.ReverseStd), new AdamConfig(), float32),
        "galore-plus-rank-15" => (new GaLorePlusProjection(15, 5, 1.0), new AdamConfig(), float32),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void PlanEqualsAllocatedStatePerParameter(string configuration)
    {
        using var scope = NewDisposeScope();
        var (projection, rule, dtype) = Config(configuration);
        long[][] shapes = [[20, 12], [12, 20], [7, 7], [12], [], [6, 3, 3, 3]];
        var parameters = shapes.Select((s, i) => new Parameter(randn(s).to(dtype))).ToList();
        using var opt = new LowRankOptimizer([new LowRankParamGroup(parameters.Take(5)), new LowRankParamGroup(parameters.Skip(5))],
            new LowRankOptions { LearningRate = 0.01, WeightDecay = 0, DecayOrder = WeightDecayOrder.BeforeUpdate, Projection = projection, Rule = rule });
        foreach (var p in parameters) p.grad = randn(p.shape).to(dtype);
        opt.step();

        var plan = MemoryPlanner.Plan(opt);
        plan.Parameters.Select(p => p.StateBytes).Should().Equal(opt.States.Select(s => s.StateBytes));
        plan.StateBytes.Should().Be(opt.StateBytes);
        plan.WeightBytes.Should().Be(parameters.Sum(p => p.numel() * p.element_size()));
        plan.StateBytesByGroup.Values.Sum().Should().Be(opt.StateBytes);

        // The same numbers from shapes alone, without an optimizer.
        var options = opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options).ToList();
        var fromShapes = MemoryPlanner.Plan(shapes.Select((s, i) => ($"p{i}", s)), dtype, (name, _) =>
        {
            var group = int.Parse(name[1..]) < 5 ? 0 : 1;
            return (group, options[group]);
        });
        fromShapes.Parameters.Select(p => p.StateBytes).Should().Equal(plan.Parameters.Select(p => p.StateBytes));
    }
}
