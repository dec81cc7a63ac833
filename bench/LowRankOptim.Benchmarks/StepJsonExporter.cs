using System.Reflection;
using System.Text.Json;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;

namespace LowRankOptim.Benchmarks;

/// <summary>One measured case as <c>compare.sh</c>'s merge reads it (times in nanoseconds per step).</summary>
public sealed record StepResult(
    string Method, string Shape, int? Rank, bool Success, double? MedianNs, double? MeanNs, double? StdDevNs, double? MinNs, double? MaxNs,
    int Iterations, long? AllocatedBytes, string LibrarySource, string HasApollo, double? LoadAverage1, string Finished);

/// <summary>
/// Writes <c>*-steps.json</c> beside BenchmarkDotNet's reports: one <see cref="StepResult"/> per case, read
/// from the in-process parameter objects (no parsing of BenchmarkDotNet's display strings).
/// </summary>
public sealed class StepJsonExporter : ExporterBase
{
    /// <summary>The instance.</summary>
    public static readonly StepJsonExporter Instance = new();

    /// <inheritdoc/>
    protected override string FileExtension => "json";

    /// <inheritdoc/>
    protected override string FileNameSuffix => "-steps";

    /// <inheritdoc/>
    public override void ExportToLog(Summary summary, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(summary);
        ArgumentNullException.ThrowIfNull(logger);
        logger.WriteLine(JsonSerializer.Serialize(Results(summary), Options));
    }

    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Reads a file this exporter wrote.</summary>
    public static List<StepResult> Read(string path) => JsonSerializer.Deserialize<List<StepResult>>(File.ReadAllText(path), Options) ?? [];

    private static List<StepResult> Results(Summary summary)
    {
        var metadata = typeof(StepJsonExporter).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().ToDictionary(a => a.Key, a => a.Value ?? "");
        var load = LoadAverage1();
        return summary.Reports.Select(report =>
        {
            var parameters = report.BenchmarkCase.Parameters;
            var stepCase = (StepCase)parameters["Case"];
            var statistics = report.ResultStatistics;
            return new StepResult(stepCase.Method.Id, parameters["Shape"].ToString()!, stepCase.Rank, report.Success && statistics is not null,
                statistics?.Median, statistics?.Mean, statistics?.StandardDeviation, statistics?.Min, statistics?.Max, statistics?.N ?? 0,
                report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase),
                metadata.GetValueOrDefault("LowRankOptimSourceRoot", ""), metadata.GetValueOrDefault("LowRankOptimHasApollo", ""),
                load, DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture));
        }).ToList();
    }

    /// <summary>The 1-minute load average (Linux), or null.</summary>
    public static double? LoadAverage1()
    {
        try
        {
            var text = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
