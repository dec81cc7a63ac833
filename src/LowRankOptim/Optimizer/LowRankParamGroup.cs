using TorchSharp.Modules;
using static TorchSharp.torch.optim;

namespace LowRankOptim;

/// <summary>A parameter group of <see cref="LowRankOptimizer"/>; <c>IBetas</c> lets OneCycleLR cycle β1.</summary>
public sealed class LowRankParamGroup : ParamGroup<LowRankOptions>, IBetas
{
    /// <summary>Creates an empty group.</summary>
    public LowRankParamGroup() { }

    /// <summary>Creates a group of <paramref name="parameters"/>; unset options come from the optimizer's defaults.</summary>
    /// <param name="parameters">The group's parameters.</param>
    /// <param name="options">The group's options; unset (null) values come from the optimizer's defaults.</param>
    public LowRankParamGroup(IEnumerable<Parameter> parameters, LowRankOptions? options = null)
        : base(parameters, options ?? new LowRankOptions()) { }

    /// <summary>β1 and β2 of the group's rule; throws when the rule has no betas (Adafactor).</summary>
    public (double, double) Betas
    {
        get => Options.Rule is IBetasRuleConfig b ? b.Betas : throw NoBetas();
        set => Options.Rule = Options.Rule is IBetasRuleConfig b ? b.WithBetas(value.Item1, value.Item2) : throw NoBetas();
    }

    private NotSupportedException NoBetas() => new(
        $"The rule {Options.Rule?.GetType().Name ?? "(none)"} has no betas to cycle; " +
        "create OneCycleLR with cycle_momentum: false for this optimizer.");
}
