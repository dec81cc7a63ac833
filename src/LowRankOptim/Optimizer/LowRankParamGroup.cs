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

    /// <summary>
    /// β1 and β2 of the group's rule; throws when the rule has no betas (Adafactor), and refuses values outside
    /// [0, 1) with the messages of construction (nothing is changed).
    /// </summary>
    public (double, double) Betas
    {
        get => Options.Rule is IBetasRuleConfig b ? b.Betas : throw NoBetas(Options);
        set => Options.Rule = CheckBetas(Options, value);
    }

    /// <summary>The group's rule with <paramref name="betas"/>, validated; throws when the rule has none or they are invalid.</summary>
    internal static IUpdateRuleConfig CheckBetas(LowRankOptions options, (double Beta1, double Beta2) betas)
    {
        if (options.Rule is not IBetasRuleConfig b) throw NoBetas(options);
        var rule = b.WithBetas(betas.Beta1, betas.Beta2);
        rule.Validate(options.Owner is null ? "parameter group (not yet in an optimizer)" : $"parameter group {options.GroupIndex}");
        return rule;
    }

    private static NotSupportedException NoBetas(LowRankOptions options) => new(
        $"The rule {options.Rule?.GetType().Name ?? "(none)"} has no betas to cycle; " +
        "create OneCycleLR with cycle_momentum: false for this optimizer.");
}
