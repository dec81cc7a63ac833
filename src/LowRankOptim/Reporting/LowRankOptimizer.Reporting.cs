using System.Globalization;
using TorchSharp.Modules;

namespace LowRankOptim;

public sealed partial class LowRankOptimizer
{
    private readonly List<OptimizerWarning> _warnings = [];

    /// <summary>
    /// Raised for every warning of every optimizer, including those found while an optimizer is constructed
    /// (the sender is the optimizer). Subscribe once, e.g. at startup, to route them to your log.
    /// </summary>
    public static event EventHandler<OptimizerWarning>? AnyWarningRaised;

    /// <summary>Raised for this optimizer's warnings found after subscribing (e.g. by a later <c>add_param_group</c>).</summary>
    public event EventHandler<OptimizerWarning>? WarningRaised;

    /// <summary>Every warning this optimizer has raised, including those of its constructor.</summary>
    public IReadOnlyList<OptimizerWarning> Warnings => _warnings;

    /// <summary>The parameter groups with their options, without a cast from <c>ParamGroups</c>.</summary>
    public IReadOnlyList<LowRankParamGroup> Groups => _parameter_groups.Cast<LowRankParamGroup>().ToList();

    /// <summary>
    /// Per-parameter subspace diagnostics at refreshes: the share of the gradient the subspace keeps, the
    /// overlap of successive bases and, when <see cref="SubspaceDiagnostics.SuggestRanks"/> is set, a rank
    /// suggestion. On by default (a few norms per refresh).
    /// </summary>
    public SubspaceDiagnostics Diagnostics { get; } = new();

    /// <summary>
    /// What this optimizer does with each parameter: projected at which rank or in the full space, clamped to
    /// full rank (no saving), its state against AdamW's, and the diagnostics so far. Print it to see it.
    /// </summary>
    /// <param name="names">Optional names, e.g. <c>model.named_parameters()</c>; parameters are "#index" without them.</param>
    /// <returns>The summary (a snapshot).</returns>
    public OptimizerSummary Summary(IEnumerable<(string name, Parameter parameter)>? names = null) => OptimizerSummary.Of(this, names);

    /// <summary>Checks a newly added group and raises its warnings.</summary>
    private void CheckGroup(int index, IReadOnlyList<LowRankParameterState> states)
    {
        var options = Groups[index].Options;
        var rows = states.Select(s => OptimizerSummary.Row(s, options, $"#{s.Index}")).ToList();
        var full = rows.Where(r => r.FullRank).ToList();
        if (full.Count == 0) return;
        var c = CultureInfo.InvariantCulture;
        var projected = rows.Count(r => r.Projected);
        var smallest = full.Min(r => r.Rank ?? 0);
        var suggestion = Math.Max(1, smallest / 4);
        var state = full.Sum(r => r.StateBytes);
        var adamw = full.Sum(r => r.AdamWStateBytes);
        var shapes = string.Join(", ", full.Select(r => OptimizerSummary.Shape(r.Shape)).Distinct().Take(4));
        var one = full.Count == 1;
        var more = full.Select(r => OptimizerSummary.Shape(r.Shape)).Distinct().Count() > 4 ? ", …" : "";
        var rank = full[0].RequestedRank?.ToString(c) ?? "(the projection's)";
        var message =
            string.Create(c, $"parameter group {index}: rank {rank} reaches min(m, n) for {full.Count} of its {projected} projected matrices ({shapes}{more}), ") +
            string.Create(c, $"so {(one ? "it is" : "they are")} projected at full rank and save{(one ? "s" : "")} nothing: {(one ? "its" : "their")} state is {OptimizerSummary.Bytes(state)} against AdamW's {OptimizerSummary.Bytes(adamw)} ({(double)state / Math.Max(1, adamw):0.00}×). ") +
            string.Create(c, $"Choose a rank well below min(m, n) (a quarter of it, here {suggestion}, is a common start), or train {(one ? "this matrix" : "these matrices")} in the full space. ") +
            "opt.Summary() lists every parameter.";
        Raise(new OptimizerWarning(OptimizerWarningKind.FullRank, index, full.Select(r => r.Index).ToList(), message));
    }

    private void Raise(OptimizerWarning warning)
    {
        _warnings.Add(warning);
        WarningRaised?.Invoke(this, warning);
        AnyWarningRaised?.Invoke(this, warning);
    }
}
