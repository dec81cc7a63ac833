using TorchSharp;

namespace LowRankOptim;

/// <summary>The planned memory of one parameter: weights, gradient and optimizer state, in bytes.</summary>
/// <param name="Name">The parameter's name.</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Group">Its group index.</param>
/// <param name="Projected">True when the group's projection applies to it.</param>
/// <param name="WeightBytes">numel × element size of the parameter.</param>
/// <param name="GradientBytes">The same for its gradient.</param>
/// <param name="StateBytes">Optimizer state once every basis exists (after the first step).</param>
public sealed record ParameterPlan(string Name, long[] Shape, int Group, bool Projected, long WeightBytes, long GradientBytes, long StateBytes);

/// <summary>A whole model's plan.</summary>
/// <param name="Parameters">One plan per parameter.</param>
public sealed record MemoryPlan(IReadOnlyList<ParameterPlan> Parameters)
{
    /// <summary>Σ weights.</summary>
    public long WeightBytes => Parameters.Sum(p => p.WeightBytes);
    /// <summary>Σ gradients.</summary>
    public long GradientBytes => Parameters.Sum(p => p.GradientBytes);
    /// <summary>Σ optimizer state.</summary>
    public long StateBytes => Parameters.Sum(p => p.StateBytes);
    /// <summary>Weights + gradients + optimizer state.</summary>
    public long TotalBytes => WeightBytes + GradientBytes + StateBytes;
    /// <summary>Optimizer state per group.</summary>
    public IReadOnlyDictionary<int, long> StateBytesByGroup => Parameters.GroupBy(p => p.Group).ToDictionary(g => g.Key, g => g.Sum(p => p.StateBytes));
}

/// <summary>
/// Exact memory of weights, gradients and optimizer state computed from shapes, dtypes and group options,
/// without allocating anything; equal to what <see cref="LowRankOptimizer.StateBytes"/> reports once every
/// subspace has its basis (tested).
/// </summary>
public static class MemoryPlanner
{
    /// <summary>Plans one parameter of <paramref name="shape"/> and <paramref name="dtype"/> in a group with complete <paramref name="options"/>.</summary>
    /// <param name="name">The parameter's name, for the plan.</param>
    /// <param name="shape">Its shape.</param>
    /// <param name="dtype">Its dtype.</param>
    /// <param name="options">Its group's complete options.</param>
    /// <param name="group">Its group's index.</param>
    public static ParameterPlan PlanParameter(string name, long[] shape, torch.ScalarType dtype, LowRankOptions options, int group = 0)
    {
        ArgumentNullException.ThrowIfNull(options);
        var projection = options.Projection ?? throw new ArgumentException($"parameter '{name}': the group's options have no projection.", nameof(options));
        var rule = options.Rule ?? throw new ArgumentException($"parameter '{name}': the group's options have no rule.", nameof(options));
        var working = rule.WorkingType(dtype);
        var matrix = LowRankParameterState.ProjectedView(projection, shape);
        var bytes = DTypes.Elements(shape) * DTypes.ElementSize(dtype);
        var storage = options.EffectiveMomentStorage;
        var state = matrix is MatrixShape m
            ? storage.Apply(projection.DeclareState(m, working)).PlannedBytes + storage.Apply(rule.DeclareState(projection.ProjectedShape(m), working)).PlannedBytes
            : storage.Apply(rule.DeclareState(shape, working)).PlannedBytes;
        return new ParameterPlan(name, shape, group, matrix is not null, bytes, bytes, state);
    }

    /// <summary>Plans named parameters; <paramref name="optionsOf"/> gives each one's group index and complete options.</summary>
    /// <param name="parameters">The names and shapes.</param>
    /// <param name="dtype">The parameters' dtype.</param>
    /// <param name="optionsOf">A parameter's group index and complete options, by name and shape.</param>
    public static MemoryPlan Plan(IEnumerable<(string Name, long[] Shape)> parameters, torch.ScalarType dtype, Func<string, long[], (int Group, LowRankOptions Options)> optionsOf)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(optionsOf);
        return new MemoryPlan(parameters.Select(p =>
        {
            var (group, options) = optionsOf(p.Name, p.Shape);
            return PlanParameter(p.Name, p.Shape, dtype, options, group);
        }).ToList());
    }

    /// <summary>The plan of an existing optimizer's parameters (names are "group.index").</summary>
    /// <param name="optimizer">The optimizer.</param>
    public static MemoryPlan Plan(LowRankOptimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        var groups = optimizer.ParamGroups.Cast<LowRankParamGroup>().ToList();
        return new MemoryPlan(optimizer.States.Select(s =>
            PlanParameter($"{s.GroupIndex}.{s.Index}", s.Shape, s.Parameter.dtype, groups[s.GroupIndex].Options, s.GroupIndex)).ToList());
    }
}
