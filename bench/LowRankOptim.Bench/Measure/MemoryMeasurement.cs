using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Measure;

/// <summary>
/// <c>memory --measure</c>: trains each (configuration, recipe) row for a few steps in its own child process and
/// reports the measured peak RSS beside the planner's predicted peak, as a table, CSV, JSON and a chart. A row the
/// planner predicts beyond the budget is refused by its child before the model is built.
/// </summary>
public static class MemoryMeasurement
{
    /// <summary>The options of a measurement, shared by every row.</summary>
    public sealed record Options(int Steps, int Batch, int Sequence, int? Rank, double LearningRate, int Threads, long Seed, long Budget, bool BudgetGiven);

    /// <summary>The recipes named by <c>--optimizers</c>: "smallest", or an optimizer of the comparison for every dtype and storage given.</summary>
    public static List<MemoryRecipe> Recipes(IEnumerable<string> names, IReadOnlyList<ScalarType> dtypes, IReadOnlyList<int> bits, bool perLayer)
    {
        var recipes = new List<MemoryRecipe>();
        foreach (var name in names)
        {
            if (name == MemoryRecipe.SmallestName) { recipes.Add(MemoryRecipe.Smallest); continue; }
            OptimizerKind kind;
            try { kind = OptimizerCatalog.Parse(name); }
            catch (ArgumentException e) { throw new UsageException($"{e.Message[..^1]} or {MemoryRecipe.SmallestName}."); }
            foreach (var d in dtypes)
                foreach (var b in bits.Where(b => OptimizerCatalog.SupportsOptimBits(kind, b)))
                    recipes.Add(new MemoryRecipe(kind, d, b, perLayer));
        }
        return recipes.Distinct().ToList();
    }

    /// <summary>Runs every row, prints the report and writes the files; the exit code is 0 unless a child failed.</summary>
    public static int Run(List<LlamaConfig> models, List<MemoryRecipe> recipes, Options o, string? csvPath, string? pngPath, bool json)
    {
        var results = new List<MeasureResult>();
        var failed = 0;
        foreach (var config in models)
            foreach (var recipe in recipes)
            {
                var rank = o.Rank ?? MemoryCommand.PaperRank(config);
                var spec = new MeasureSpec(config.Name, recipe.Kind, recipe.DType, recipe.OptimBits, recipe.PerLayer, recipe.IsSmallest,
                    rank, o.Steps, o.Batch, o.Sequence, o.LearningRate, o.Threads, o.Seed, o.Budget);
                Console.Error.WriteLine($"llama-{config.Name}, {recipe.Label}: {o.Steps} steps of {o.Batch}×{o.Sequence} tokens in a child process");
                var result = RunChild(spec, out var error);
                if (result is null) { failed++; Console.Error.WriteLine($"  failed: {error}"); continue; }
                if (result.Refusal is { } why) Console.Error.WriteLine($"  refused: {why}");
                results.Add(result);
            }
        var largest = LargestWithin(recipes, o, results);
        if (csvPath is not null) File.WriteAllLines(csvPath, Csv(results));
        if (pngPath is not null) Chart(pngPath, results);
        if (json)
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                machine = MachineInfo.Describe(), options = o, rows = results.Select(Row),
                largest_within_budget = largest.Select(l => new { recipe = l.Recipe.Label, model = l.Model }),
            }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        else Print(results, largest, o);
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Starts this program's hidden <c>memory-child</c> command on a spec file and reads its result.</summary>
    private static MeasureResult? RunChild(MeasureSpec spec, out string? error)
    {
        var folder = Directory.CreateTempSubdirectory("lowrankoptim-measure-");
        try
        {
            var specPath = Path.Combine(folder.FullName, "spec.json");
            var resultPath = Path.Combine(folder.FullName, "result.json");
            File.WriteAllText(specPath, JsonSerializer.Serialize(spec, MeasuredRun.Json));
            var (file, prefix) = ThisProgram();
            var start = new ProcessStartInfo(file) { UseShellExecute = false };
            foreach (var a in prefix.Concat(["memory-child", specPath, resultPath])) start.ArgumentList.Add(a);
            using var child = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
            child.WaitForExit();
            error = null;
            if (File.Exists(resultPath)) return JsonSerializer.Deserialize<MeasureResult>(File.ReadAllText(resultPath), MeasuredRun.Json);
            error = child.ExitCode == 137 ? "killed (exit 137: the kernel's out-of-memory killer?)" : $"the child exited with code {child.ExitCode} and no result";
            return null;
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>How to start this program again: its apphost, or the dotnet host with its assembly.</summary>
    private static (string File, string[] Prefix) ThisProgram()
    {
        var assembly = typeof(MemoryMeasurement).Assembly.Location;
        var apphost = Path.ChangeExtension(assembly, null);
        if (File.Exists(apphost)) return (apphost, []);
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h
            : Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        return (host, [assembly]);
    }

    /// <summary>
    /// For each recipe, the largest named configuration whose predicted peak fits the budget, with the largest
    /// baseline measured in this run (or 1 GiB when no row was measured).
    /// </summary>
    private static List<(MemoryRecipe Recipe, string Model)> LargestWithin(List<MemoryRecipe> recipes, Options o, List<MeasureResult> results)
    {
        if (!o.BudgetGiven) return [];
        var baseline = results.Count > 0 ? results.Max(r => r.BaselineBytes) : 1L << 30;
        return recipes.Select(r => (r, LlamaConfig.Named.Values.Where(c => c.Name != "tiny")
                .Where(c => PeakMemoryModel.Predict(c, r, o.Rank ?? MemoryCommand.PaperRank(c), o.Batch, o.Sequence).Total(baseline) <= o.Budget)
                .Select(c => c.Name).LastOrDefault() ?? "none"))
            .ToList();
    }

    private static object Row(MeasureResult r) => new
    {
        model = $"llama-{r.Spec.Model}", recipe = r.Spec.Recipe.Label, optimizer = r.Spec.Kind.CliName(), dtype = r.Spec.DType.ToString(), optim_bits = r.Spec.OptimBits,
        per_layer = r.Spec.PerLayer, rank = r.Spec.Rank, steps = r.Steps.Count, measured_peak_bytes = r.PeakResidentBytes, predicted_peak_bytes = r.PredictedPeakBytes,
        predicted_over_measured = r.Ratio, baseline_bytes = r.BaselineBytes, weight_bytes = r.Prediction.Weights, gradient_bytes = r.Prediction.Gradients,
        state_bytes = r.Prediction.State, activation_bytes = r.Prediction.Activations, workspace_bytes = r.Prediction.Workspace,
        allocated_state_bytes = r.OptimizerStateBytes, refusal = r.Refusal, build_seconds = r.BuildSeconds,
        step_records = r.Steps,
    };

    private static IEnumerable<string> Csv(List<MeasureResult> results)
    {
        yield return "model,recipe,dtype,optim_bits,per_layer,rank,steps,measured_peak_bytes,predicted_peak_bytes,predicted_over_measured,baseline_bytes,weight_bytes,gradient_bytes,state_bytes,activation_bytes,workspace_bytes,first_loss,last_loss,median_step_seconds,refused";
        foreach (var r in results)
            yield return string.Create(CultureInfo.InvariantCulture,
                $"llama-{r.Spec.Model},{r.Spec.Recipe.Label},{r.Spec.DType},{r.Spec.OptimBits},{r.Spec.PerLayer},{r.Spec.Rank},{r.Steps.Count},{r.PeakResidentBytes},{r.PredictedPeakBytes},{r.Ratio:R},{r.BaselineBytes}," +
                $"{r.Prediction.Weights},{r.Prediction.Gradients},{r.Prediction.State},{r.Prediction.Activations},{r.Prediction.Workspace}," +
                $"{(r.Steps.Count > 0 ? r.Steps[0].Loss : double.NaN):R},{(r.Steps.Count > 0 ? r.Steps[^1].Loss : double.NaN):R},{MedianStepSeconds(r):R},{r.Refusal is not null}");
    }

    private static double MedianStepSeconds(MeasureResult r)
    {
        var times = r.Steps.Select(s => s.ForwardSeconds + s.BackwardSeconds + s.StepSeconds).Order().ToList();
        return times.Count == 0 ? double.NaN : times[times.Count / 2];
    }

    private static void Print(List<MeasureResult> results, List<(MemoryRecipe Recipe, string Model)> largest, Options o)
    {
        Console.WriteLine($"Measured peak RSS (VmHWM of each child process) and the planner's predicted peak; {o.Steps} steps of {o.Batch}×{o.Sequence} tokens; budget {Reports.Bytes(o.Budget)}.");
        Console.WriteLine("libtorch's allocated bytes: not available on the CPU (TorchSharp exposes no CPU allocator statistics).");
        Console.WriteLine();
        Console.WriteLine("| model | recipe | rank | measured peak | predicted peak | predicted / measured | baseline | weights | gradients | optimizer state | activations | workspace | loss first → last | s/step (median) |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in results)
        {
            var p = r.Prediction;
            var measured = r.Refusal is not null ? "refused" : Reports.Bytes(r.PeakResidentBytes ?? 0);
            var loss = r.Steps.Count > 0 ? string.Create(CultureInfo.InvariantCulture, $"{r.Steps[0].Loss:F3} → {r.Steps[^1].Loss:F3}") : "—";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| llama-{r.Spec.Model} | {r.Spec.Recipe.Label} | {(r.Spec.Kind == OptimizerKind.AdamW ? "—" : r.Spec.Rank)} | {measured} | {Reports.Bytes(r.PredictedPeakBytes)} | {(r.Ratio is double x ? x.ToString("F3", CultureInfo.InvariantCulture) : "—")} | " +
                $"{Reports.Bytes(r.BaselineBytes)} | {Reports.Bytes(p.Weights)} | {Reports.Bytes(p.Gradients)} | {Reports.Bytes(p.State)} | {Reports.Bytes(p.Activations)} | {Reports.Bytes(p.Workspace)} | {loss} | {(r.Steps.Count > 0 ? MedianStepSeconds(r).ToString("F1", CultureInfo.InvariantCulture) : "—")} |"));
        }
        if (largest.Count == 0) return;
        Console.WriteLine();
        Console.WriteLine($"Largest configuration each recipe can train within {Reports.Bytes(o.Budget)} (predicted peaks, {o.Batch}×{o.Sequence} tokens):");
        foreach (var (recipe, model) in largest) Console.WriteLine($"  {recipe.Label}: {(model == "none" ? "none of the named configurations" : $"llama-{model}")}");
    }

    private static void Chart(string path, List<MeasureResult> results)
    {
        var plot = new ScottPlot.Plot();
        var rows = results.Where(r => r.PeakResidentBytes is not null).ToList();
        static double GiB(long b) => b / (double)(1L << 30);
        var measured = rows.Select((r, i) => new ScottPlot.Bar { Position = 3 * i, Value = GiB(r.PeakResidentBytes!.Value), FillColor = ScottPlot.Colors.SteelBlue }).ToList();
        var predicted = rows.Select((r, i) => new ScottPlot.Bar { Position = 3 * i + 1, Value = GiB(r.PredictedPeakBytes), FillColor = ScottPlot.Colors.Orange }).ToList();
        plot.Add.Bars(measured).LegendText = "measured peak RSS";
        plot.Add.Bars(predicted).LegendText = "predicted peak";
        plot.Axes.Bottom.SetTicks(rows.Select((_, i) => 3.0 * i + 0.5).ToArray(), rows.Select(r => $"llama-{r.Spec.Model}\n{r.Spec.Recipe.Label}").ToArray());
        plot.YLabel("GiB");
        plot.Title("Peak memory of training: measured vs planned");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1100, 600);
    }
}
