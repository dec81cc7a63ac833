namespace LowRankOptim;

/// <summary>The kinds of <see cref="OptimizerWarning"/>.</summary>
public enum OptimizerWarningKind
{
    /// <summary>
    /// A group's rank reaches min(m, n) of some of its matrices: they are projected at full rank, keep a basis on
    /// top of full-size moments and save nothing against AdamW.
    /// </summary>
    FullRank,
}

/// <summary>
/// Something the user should know about how the optimizer was set up, reported through
/// <see cref="LowRankOptimizer.Warnings"/> and the events <see cref="LowRankOptimizer.WarningRaised"/> and
/// <see cref="LowRankOptimizer.AnyWarningRaised"/>; the library never writes to the console.
/// </summary>
/// <param name="Kind">What it is about.</param>
/// <param name="Group">The parameter group it concerns.</param>
/// <param name="Parameters">The indices of the parameters it concerns.</param>
/// <param name="Message">One paragraph for a log: what happens, what it costs, what to do.</param>
public sealed record OptimizerWarning(OptimizerWarningKind Kind, int Group, IReadOnlyList<int> Parameters, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"warning ({Kind}): {Message}";
}
