using System.Globalization;
using System.Text;

namespace LowRankOptim.Benchmarks;

/// <summary>
/// <c>merge</c>: joins the <c>*-steps.json</c> files of a "before" and an "after" run (compare.sh) into one
/// markdown table: per method, shape and rank the median step of each side, after/before, each side's step
/// relative to the same side's <c>torch.optim.AdamW</c> at that shape, and managed allocations per step.
/// </summary>
public static class Merge
{
    /// <summary>Runs the command; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        string? before = null, after = null, output = null, preamble = null;
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--before": before = value; i++; break;
                case "--after": after = value; i++; break;
                case "--out": output = value; i++; break;
                case "--preamble": preamble = value; i++; break;
                default:
                    Console.Error.WriteLine($"merge: unknown argument {args[i]}");
                    return 2;
            }
        }
        if (before is null || after is null || output is null)
        {
            Console.Error.WriteLine("usage: merge --before DIR --after DIR --out FILE [--preamble FILE]");
            return 2;
        }
        var b = Load(before);
        var a = Load(after);
        if (b.Count == 0 && a.Count == 0)
        {
            Console.Error.WriteLine($"merge: no *-steps.json under {before} or {after}");
            return 1;
        }
        var text = Render(b, a, preamble is null ? null : File.ReadAllText(preamble));
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        File.WriteAllText(output, text);
        Console.WriteLine(text);
        return 0;
    }

    private static Dictionary<(string Method, string Shape, int? Rank), StepResult> Load(string directory) =>
        Directory.EnumerateFiles(directory, "*-steps.json", SearchOption.AllDirectories)
            .SelectMany(StepJsonExporter.Read)
            .OrderBy(r => r.Finished, StringComparer.Ordinal) // a re-run of a case replaces the earlier one
            .GroupBy(r => (r.Method, r.Shape, r.Rank))
            .ToDictionary(g => g.Key, g => g.Last());

    /// <summary>The merged document.</summary>
    public static string Render(IReadOnlyDictionary<(string Method, string Shape, int? Rank), StepResult> before,
        IReadOnlyDictionary<(string Method, string Shape, int? Rank), StepResult> after, string? preamble)
    {
        var keys = after.Keys.Concat(before.Keys).Distinct().ToList();
        keys = [.. keys.OrderBy(k => WeightShape.Parse(k.Shape)).ThenBy(k => StepMethods.IndexOf(k.Method)).ThenBy(k => k.Method, StringComparer.Ordinal).ThenBy(k => k.Rank ?? 0)];

        var sb = new StringBuilder();
        if (preamble is not null) sb.AppendLine(preamble.TrimEnd()).AppendLine();
        sb.AppendLine("| method | shape | rank | before median (ms) | after median (ms) | after / before | ÷ torch AdamW, before → after | spread before / after | allocated before / after |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var key in keys)
        {
            var b = before.GetValueOrDefault(key);
            var a = after.GetValueOrDefault(key);
            var bBase = before.GetValueOrDefault((StepMethods.Baseline, key.Shape, null));
            var aBase = after.GetValueOrDefault((StepMethods.Baseline, key.Shape, null));
            sb.Append(CultureInfo.InvariantCulture, $"| {key.Method} | {key.Shape.Replace("x", "×", StringComparison.Ordinal)} | {(key.Rank is { } r ? r.ToString(CultureInfo.InvariantCulture) : "—")} ");
            sb.Append(CultureInfo.InvariantCulture, $"| {Ms(b)} | {Ms(a)} | {Ratio(Median(a), Median(b))} ");
            sb.Append(CultureInfo.InvariantCulture, $"| {Ratio(Median(b), Median(bBase))} → {Ratio(Median(a), Median(aBase))} ");
            sb.Append(CultureInfo.InvariantCulture, $"| {Spread(b)} / {Spread(a)} | {Bytes(b)} / {Bytes(a)} |");
            sb.AppendLine();
        }
        sb.AppendLine();
        var all = before.Values.Concat(after.Values).ToList();
        var iterations = all.Where(r => r.Success).Select(r => r.Iterations).Distinct().Order().ToList();
        sb.AppendLine($"Median of {string.Join("/", iterations)} measured steps per case (after the setup's refreshing step and the warm-up steps). " +
                      "*spread* = (max − min) / median of those steps. *÷ torch AdamW* = the side's median over the same side's " +
                      "`torch.optim.AdamW` median at that shape (measured in the same build, minutes apart). *allocated* = managed bytes per " +
                      "step (BenchmarkDotNet's MemoryDiagnoser); libtorch's native tensor memory is not counted. — = not measured on that side.");
        sb.AppendLine();
        var maxLoad = all.Select(r => r.LoadAverage1).OfType<double>().DefaultIfEmpty(0).Max();
        if (maxLoad > Environment.ProcessorCount)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"**Warning**: the 1-minute load average reached {maxLoad:F2} on {Environment.ProcessorCount} cores during the run: other processes competed for the cores, and these times and ratios are not reliable. Rerun on a quiet machine.");
            sb.AppendLine();
        }
        sb.AppendLine($"1-minute load average at the end of each run: before {LoadRange(before.Values)}, after {LoadRange(after.Values)}. " +
                      $"Library sources: before {Sources(before.Values)}; after {Sources(after.Values)}.");
        return sb.ToString();
    }

    private static double? Median(StepResult? r) => r is { Success: true } ? r.MedianNs : null;

    private static string Ms(StepResult? r) => r switch
    {
        null => "—",
        { Success: false } => "failed",
        _ => Format(r.MedianNs!.Value / 1e6),
    };

    private static string Format(double ms) => ms.ToString(ms >= 100 ? "F0" : ms >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);

    private static string Ratio(double? numerator, double? denominator) =>
        numerator is { } n && denominator is { } d && d > 0 ? (n / d).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—";

    private static string Spread(StepResult? r) =>
        r is { Success: true, MedianNs: > 0, MinNs: { } min, MaxNs: { } max } ? ((max - min) / r.MedianNs.Value).ToString("P0", CultureInfo.InvariantCulture).Replace(" ", "", StringComparison.Ordinal) : "—";

    private static string Bytes(StepResult? r)
    {
        if (r is not { Success: true, AllocatedBytes: { } bytes }) return "—";
        return bytes switch
        {
            < 1024 => $"{bytes} B",
            < 1024 * 1024 => (bytes / 1024.0).ToString("F1", CultureInfo.InvariantCulture) + " KiB",
            _ => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB",
        };
    }

    private static string LoadRange(IEnumerable<StepResult> results)
    {
        var loads = results.Select(r => r.LoadAverage1).OfType<double>().ToList();
        return loads.Count == 0 ? "n/a" : $"{loads.Min().ToString("F2", CultureInfo.InvariantCulture)}–{loads.Max().ToString("F2", CultureInfo.InvariantCulture)}";
    }

    private static string Sources(IEnumerable<StepResult> results)
    {
        var sources = results.Select(r => $"`{r.LibrarySource}` (HAS_APOLLO {(r.HasApollo == "true" ? "yes" : "no")})").Distinct().ToList();
        return sources.Count == 0 ? "n/a" : string.Join(", ", sources);
    }
}
