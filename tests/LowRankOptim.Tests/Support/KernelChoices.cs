namespace LowRankOptim.Tests.Support;

/// <summary>The kernel choices (execution policy) in a group's options, wherever they sit.</summary>
public static class KernelChoices
{
    /// <summary>Every kernel choice of <paramref name="options"/>: its projection's, its rule's, and the rule of Online Subspace Descent's basis.</summary>
    public static IEnumerable<(string Where, KernelPreference Kernel)> Of(LowRankOptions options)
    {
        if (options.Projection is DctProjection d) yield return ("DCT projection", d.Kernel);
        if (options.Projection is OnlinePcaProjection { BasisRule: var basis } && Of(basis) is KernelPreference b) yield return ("basis rule", b);
        if (Of(options.Rule) is KernelPreference r) yield return ("rule", r);
    }

    /// <summary>A copy of <paramref name="options"/> with every kernel choice set to <paramref name="kernel"/>.</summary>
    public static LowRankOptions With(LowRankOptions options, KernelPreference kernel) => new()
    {
        LearningRate = options.LearningRate,
        WeightDecay = options.WeightDecay,
        DecayOrder = options.DecayOrder,
        Projection = options.Projection switch
        {
            DctProjection d => d with { Kernel = kernel },
            OnlinePcaProjection o => o with { BasisRule = With(o.BasisRule, kernel) },
            var p => p,
        },
        Rule = options.Rule is null ? null : With(options.Rule, kernel),
    };

    /// <summary>The same optimizer (groups, parameters, options) with every kernel choice set to <paramref name="kernel"/>; disposes <paramref name="built"/>.</summary>
    public static LowRankOptimizer Rebuild(LowRankOptimizer built, KernelPreference kernel)
    {
        using (built)
            return new LowRankOptimizer(
                built.ParamGroups.Cast<LowRankParamGroup>().Select(g => new LowRankParamGroup(g.Parameters, With(g.Options, kernel))).ToList(),
                With(built.Defaults, kernel));
    }

    private static KernelPreference? Of(IUpdateRuleConfig? rule) => rule switch
    {
        AdamConfig a => a.Kernel,
        AdafactorConfig a => a.Kernel,
        SmmfConfig s => s.Kernel,
        _ => null,
    };

    private static IUpdateRuleConfig With(IUpdateRuleConfig rule, KernelPreference kernel) => rule switch
    {
        AdamConfig a => a with { Kernel = kernel },
        AdafactorConfig a => a with { Kernel = kernel },
        SmmfConfig s => s with { Kernel = kernel },
        var r => r,
    };
}
