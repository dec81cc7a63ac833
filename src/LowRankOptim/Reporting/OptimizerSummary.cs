using System.Globalization;
using System.Text;
using TorchSharp.Modules;

namespace LowRankOptim;

/// <summary>What the optimizer does with one parameter: projected at which rank, and its state against AdamW's.</summary>
/// <param name="Index">The parameter's index in the optimizer (over all groups, in order).</param>
/// <param name="Group">Its group's index.</param>
/// <param name="Name">Its name when names were given to <see cref="LowRankOptimizer.Summary"/>, else "#index".</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Projection">The group's projection (e.g. <c>SvdProjection</c>, <c>FullSpace</c>).</param>
/// <param name="Rule">The group's update rule (e.g. <c>AdamConfig</c>).</param>
/// <param name="Projected">True when the projection applies to it (false: trained in the full space).</param>
/// <param name="RequestedRank">The rank the group asked for (the projection's <c>Rank</c>), or null without one.</param>
/// <param name="Rank">The rank it is projected at (after clamping), or null in the full space.</param>
/// <param name="FullRank">Projected, but the projection keeps the whole gradient: the requested rank reached min(m, n).</param>
/// <param name="StateBytes">Its optimizer state once every basis exists, in bytes (the planner's exact figure).</param>
/// <param name="AdamWStateBytes">The state AdamW would keep for it (two moments), in bytes.</param>
public sealed record ParameterSummary(
    int Index, int Group, string Name, long[] Shape, string Projection, string Rule, bool Projected,
    long? RequestedRank, long? Rank, bool FullRank, long StateBytes, long AdamWStateBytes)
{
    /// <summary>True when this parameter's state is smaller than AdamW's.</summary>
    public bool SavesMemory => StateBytes < AdamWStateBytes;
}

/// <summary>
/// What an optimizer does with each parameter (<see cref="LowRankOptimizer.Summary"/>): which are projected at
/// which rank, which were clamped to full rank (no saving), and the state against AdamW's. <see cref="ToString"/>
/// prints it as a table.
/// </summary>
/// <param name="Parameters">One row per parameter, in the optimizer's order.</param>
/// <param name="Diagnostics">The subspace diagnostics so far, per parameter index (empty before the first refresh).</param>
public sealed record OptimizerSummary(IReadOnlyList<ParameterSummary> Parameters, IReadOnlyDictionary<int, ParameterDiagnostics> Diagnostics)
{
    /// <summary>Σ optimizer state once every basis exists, in bytes.</summary>
    public long StateBytes => Parameters.Sum(p => p.StateBytes);

    /// <summary>Σ the state AdamW would keep for the same parameters, in bytes.</summary>
    public long AdamWStateBytes => Parameters.Sum(p => p.AdamWStateBytes);

    /// <summary>StateBytes / AdamWStateBytes (below 1: a saving).</summary>
    public double StateRatio => AdamWStateBytes == 0 ? 1 : (double)StateBytes / AdamWStateBytes;

    /// <summary>The parameters projected at full rank: they keep a basis on top of full-size moments and save nothing.</summary>
    public IReadOnlyList<ParameterSummary> FullRank => Parameters.Where(p => p.FullRank).ToList();

    /// <inheritdoc />
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        var projected = Parameters.Count(p => p.Projected);
        sb.AppendLine(string.Create(c, $"LowRankOptimizer: {Parameters.Count} parameters in {Parameters.Select(p => p.Group).Distinct().Count()} groups; " +
            $"{projected} projected{(FullRank.Count > 0 ? $" ({FullRank.Count} at full rank: no saving)" : "")}, {Parameters.Count - projected} in the full space."));
        sb.AppendLine(string.Create(c, $"optimizer state {Bytes(StateBytes)} vs AdamW's {Bytes(AdamWStateBytes)} ({StateRatio:0.00}×)."));
        var rows = Parameters.Select(p =>
        {
            var d = Diagnostics.TryGetValue(p.Index, out var x) ? x : null;
            return new[]
            {
                p.Name, Shape(p.Shape), p.Group.ToString(c), p.Projected ? p.Projection : "full space",
                p.Rank is long r ? (p.RequestedRank is long q && q != r ? $"{r} (asked {q})" : r.ToString(c)) : "—",
                Bytes(p.StateBytes), Bytes(p.AdamWStateBytes),
                d?.LastKeptShare is double k ? k.ToString("0.000", c) : "",
                d?.LastOverlap is double o ? o.ToString("0.000", c) : "",
                d?.SuggestedRank is long s ? s.ToString(c) : "",
                p.FullRank ? "full rank: no saving" : p.Projected && !p.SavesMemory ? "no saving" : "",
            };
        }).ToList();
        string[] header = ["parameter", "shape", "group", "projection", "rank", "state", "AdamW state", "kept", "overlap", "suggested rank", "note"];
        var keep = Enumerable.Range(0, header.Length).Where(i => i < 7 || rows.Any(r => r[i].Length > 0)).ToList();
        var widths = keep.ToDictionary(i => i, i => Math.Max(header[i].Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length)));
        sb.AppendLine(string.Join("  ", keep.Select(i => header[i].PadRight(widths[i]))).TrimEnd());
        foreach (var row in rows)
            sb.AppendLine(string.Join("  ", keep.Select(i => i is 5 or 6 or 7 or 8 or 9 ? row[i].PadLeft(widths[i]) : row[i].PadRight(widths[i]))).TrimEnd());
        return sb.ToString();
    }

    internal static string Shape(long[] shape) => string.Join("×", shape);

    internal static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };

    /// <summary>Builds the summary of <paramref name="optimizer"/>'s parameters (group options already filled).</summary>
    internal static OptimizerSummary Of(LowRankOptimizer optimizer, IEnumerable<(string name, Parameter parameter)>? names)
    {
        var byHandle = new Dictionary<IntPtr, string>();
        if (names is not null)
            foreach (var (name, p) in names) byHandle.TryAdd(p.Handle, name);
        var rows = optimizer.States.Select(s => Row(s, optimizer.Groups[s.GroupIndex].Options,
            byHandle.TryGetValue(s.Parameter.Handle, out var n) ? n : $"#{s.Index}")).ToList();
        return new OptimizerSummary(rows, optimizer.Diagnostics.All.ToDictionary(d => d.ParameterIndex));
    }

    internal static ParameterSummary Row(LowRankParameterState s, LowRankOptions options, string name)
    {
        var dtype = s.Parameter.dtype;
        var plan = MemoryPlanner.PlanParameter(name, s.Shape, dtype, options, s.GroupIndex);
        var adamw = MemoryPlanner.PlanParameter(name, s.Shape, dtype, LowRankPresets.AdamW(), s.GroupIndex);
        var projection = options.Projection!;
        var requested = RequestedRank(projection);
        long? rank = null;
        var full = false;
        if (projection.MatrixViewOf(s.Shape) is MatrixShape m)
        {
            var shape = projection.ProjectedShape(m);
            if (shape.Length == 2)
                (rank, full) = (shape[0], shape[1]) switch
                {
                    var (a, b) when a == m.Rows && b == m.Cols => (m.Min, true),
                    var (a, b) when a == m.Rows => (b, false),
                    var (a, b) when b == m.Cols => (a, false),
                    var (a, _) => ((long?)a, false),
                };
        }
        return new ParameterSummary(s.Index, s.GroupIndex, name, s.Shape, projection.GetType().Name, options.Rule!.GetType().Name,
            plan.Projected, requested, rank, full, plan.StateBytes, adamw.StateBytes);
    }

    /// <summary>A projection's requested rank: its public <c>int Rank</c> (every built-in projection has one), or null.</summary>
    private static long? RequestedRank(IProjectionConfig projection) =>
        projection.GetType().GetProperty("Rank")?.GetValue(projection) is int r ? r : null;
}
