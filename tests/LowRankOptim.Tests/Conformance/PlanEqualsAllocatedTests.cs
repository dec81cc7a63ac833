using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Conformance;

/// <summary>
/// Every catalog method in every dtype (float32, bfloat16, float16, float64): the memory planner, computed from shapes, dtypes and
/// group options alone, equals the bytes the optimizer holds, per parameter, over a model with every shape
/// the planner distinguishes (<see cref="ShapesModel"/>: tall, wide and square matrices, vectors, a scalar,
/// a 4-D kernel). Compared once every basis and residual exists: after the first step, or after GaLore+'s
/// residual warm-up (the planner reports the state after the warm-up).
/// </summary>
public sealed class PlanEqualsAllocatedTests
{
    public static TheoryData<string, string> MethodsAndDTypes() => MethodCatalog.NamesAndDTypes();

    [Theory]
    [MemberData(nameof(MethodsAndDTypes))]
    public void PlanEqualsAllocatedStatePerParameter(string method, string dtypeName)
    {
        using var scope = NewDisposeScope();
        var dtype = MethodCatalog.DType(dtypeName);
        var model = new ShapesModel();
        TestProblems.Reseed(model, 3);
        model.to(dtype);
        var parameters = model.parameters().ToList();
        using var opt = MethodCatalog.Get(method).Create(model);
        var groups = opt.ParamGroups.Cast<LowRankParamGroup>().Select(g => g.Options).ToList();
        var warmup = groups.Max(o => o.Projection is GaLorePlusProjection { ResidualDensity: > 0 } p ? p.ResidualWarmup : 0);
        using var gen = new Generator(17);
        for (var k = 0; k <= warmup; k++)
        {
            foreach (var p in parameters) p.grad = randn(p.shape, generator: gen).to(dtype);
            opt.step();
        }

        var plan = MemoryPlanner.Plan(opt);
        plan.Parameters.Select(p => p.StateBytes).Should().Equal(opt.States.Select(s => s.StateBytes), $"{method} ({dtypeName}): planned vs allocated bytes per parameter");
        plan.StateBytes.Should().Be(opt.StateBytes).And.BePositive();
        plan.WeightBytes.Should().Be(parameters.Sum(p => p.numel() * p.element_size()));
        plan.StateBytesByGroup.Values.Sum().Should().Be(opt.StateBytes);

        // The same numbers from names and shapes alone, without the optimizer's parameters.
        var groupOf = opt.States.ToDictionary(s => $"p{s.Index}", s => s.GroupIndex);
        var fromShapes = MemoryPlanner.Plan(opt.States.Select(s => ($"p{s.Index}", s.Shape)), dtype, (name, _) => (groupOf[name], groups[groupOf[name]]));
        fromShapes.Parameters.Select(p => p.StateBytes).Should().Equal(plan.Parameters.Select(p => p.StateBytes));
    }
}
