namespace LowRankOptim.Benchmarks;

/// <summary>One benchmark case's method and rank (null for rank-free methods); the <c>Case</c> parameter.</summary>
/// <param name="Method">The method.</param>
/// <param name="Rank">The rank, or null.</param>
public sealed record StepCase(StepMethod Method, int? Rank) : IComparable<StepCase>, IComparable
{
    /// <summary>How BenchmarkDotNet shows the case: <c>GaLore/r128</c>, <c>TorchAdamW</c>.</summary>
    public override string ToString() => Rank is { } r ? $"{Method.Id}/r{r}" : Method.Id;

    /// <summary>Table order: the order of <see cref="StepMethods.All"/>, then rank.</summary>
    public int CompareTo(StepCase? other)
    {
        if (other is null) return 1;
        var byMethod = StepMethods.IndexOf(Method.Id).CompareTo(StepMethods.IndexOf(other.Method.Id));
        return byMethod != 0 ? byMethod : (Rank ?? 0).CompareTo(other.Rank ?? 0);
    }

    /// <inheritdoc/>
    public int CompareTo(object? obj) => CompareTo(obj as StepCase);
}

/// <summary>A weight shape, rows×cols; ordered by element count.</summary>
/// <param name="Rows">Rows.</param>
/// <param name="Cols">Columns.</param>
public sealed record WeightShape(long Rows, long Cols) : IComparable<WeightShape>, IComparable
{
    /// <summary><c>4096x11008</c>.</summary>
    public override string ToString() => $"{Rows}x{Cols}";

    /// <summary>Smaller weights first.</summary>
    public int CompareTo(WeightShape? other) =>
        other is null ? 1 : (Rows * Cols).CompareTo(other.Rows * other.Cols) is var c && c != 0 ? c : Rows.CompareTo(other.Rows);

    /// <inheritdoc/>
    public int CompareTo(object? obj) => CompareTo(obj as WeightShape);

    /// <summary>Parses <c>4096x11008</c>.</summary>
    public static WeightShape Parse(string shape)
    {
        var parts = shape.Split('x', '×');
        if (parts.Length != 2 || !long.TryParse(parts[0], out var m) || !long.TryParse(parts[1], out var n) || m < 1 || n < 1)
            throw new FormatException($"shape '{shape}' is not rows x cols, e.g. 4096x11008");
        return new WeightShape(m, n);
    }
}

/// <summary>The shapes, methods and ranks selected on the command line; the parameter sources read them.</summary>
public static class Selection
{
    /// <summary>The default shapes (rows×cols of the weight).</summary>
    public const string DefaultShapes = "4096x4096,4096x11008";

    /// <summary>The default ranks.</summary>
    public const string DefaultRanks = "128,512";

    /// <summary>Selected shapes.</summary>
    public static IReadOnlyList<WeightShape> Shapes { get; set; } = Split(DefaultShapes).Select(WeightShape.Parse).ToList();

    /// <summary>Selected ranks.</summary>
    public static IReadOnlyList<int> Ranks { get; set; } = Split(DefaultRanks).Select(int.Parse).ToList();

    /// <summary>Selected methods (all by default).</summary>
    public static IReadOnlyList<StepMethod> Methods { get; set; } = StepMethods.All;

    /// <summary>The cases: each ranked method at every rank, each rank-free method once.</summary>
    public static IEnumerable<StepCase> Cases() =>
        Methods.SelectMany(m => m.Ranked ? Ranks.Select(r => new StepCase(m, r)) : [new StepCase(m, null)]);

    /// <summary>Comma-separated list.</summary>
    public static List<string> Split(string text) =>
        [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
}
