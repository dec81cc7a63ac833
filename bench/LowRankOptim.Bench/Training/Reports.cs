using System.Globalization;
using System.Text;
using System.Text.Json;

namespace LowRankOptim.Bench.Training;

/// <summary>Summary table (markdown, CSV, JSON) and loss-curve PNG of a comparison.</summary>
public static class Reports
{
    public static string Markdown(IReadOnlyList<RunResult> runs, RunResult? baseline)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| run | optimizer | optim bits | lr | steps | final train loss | val loss | val ppl | vs AdamW val | tokens/s | optimizer state | peak gradients |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in runs)
        {
            var rel = baseline is null ? "" : string.Create(CultureInfo.InvariantCulture, $"{(r.ValidationLoss / baseline.ValidationLoss - 1) * 100:+0.00;-0.00}%");
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Name} | {r.Optimizer} | {r.OptimBits} | {r.LearningRate:G3} | {r.Steps} | {r.FinalTrainLoss:F4} | {r.ValidationLoss:F4} | {r.Perplexity:F2} | {rel} | {r.TokensPerSecond:F0} | {Bytes(r.OptimizerStateBytes)} | {(r.PeakGradientBytes > 0 ? Bytes(r.PeakGradientBytes) : "—")} |"));
        }
        return sb.ToString();
    }

    public static void WriteCsv(string path, IReadOnlyList<RunResult> runs)
    {
        var c = CultureInfo.InvariantCulture;
        File.WriteAllLines(path, new[] { "run,optimizer,optim_bits,lr,steps,final_train_loss,val_loss,val_ppl,tokens_per_s,optimizer_state_bytes,peak_gradient_bytes" }
            .Concat(runs.Select(r => string.Create(c, $"{r.Name},{r.Optimizer},{r.OptimBits},{r.LearningRate:R},{r.Steps},{r.FinalTrainLoss:R},{r.ValidationLoss:R},{r.Perplexity:R},{r.TokensPerSecond:F1},{r.OptimizerStateBytes},{r.PeakGradientBytes}"))));
    }

    public static string Json(IReadOnlyList<RunResult> runs, object settings) => JsonSerializer.Serialize(new
    {
        settings,
        runs = runs.Select(r => new
        {
            run = r.Name, optimizer = r.Optimizer, optim_bits = r.OptimBits, lr = r.LearningRate, steps = r.Steps,
            final_train_loss = r.FinalTrainLoss, val_loss = r.ValidationLoss, val_ppl = r.Perplexity,
            tokens_per_s = r.TokensPerSecond, optimizer_state_bytes = r.OptimizerStateBytes, peak_gradient_bytes = r.PeakGradientBytes,
        }),
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>
    /// Two panels, where the runs differ: training loss (a moving mean over 3 % of the steps) from a tenth of the run on,
    /// and validation loss from the second evaluation on, zoomed on the final values. Ten distinct colours (then the
    /// same colours dashed); the legend, beside the validation panel, gives each run's final validation loss and its
    /// difference to AdamW's, best first.
    /// </summary>
    public static void WritePlot(string path, IReadOnlyList<RunResult> runs, int width = 1600, int height = 700)
    {
        var baseline = runs.FirstOrDefault(r => r.Optimizer == "adamw");
        var order = runs.Select((r, i) => (Run: r, Index: i)).ToList();
        var palette = new ScottPlot.Palettes.Category10();
        ScottPlot.Color ColorOf(int i) => palette.GetColor(i % 10);
        ScottPlot.LinePattern PatternOf(int i) => i < 10 ? ScottPlot.LinePattern.Solid : ScottPlot.LinePattern.Dashed;

        var train = new ScottPlot.Plot();
        var lows = new List<double>();
        var highs = new List<double>();
        foreach (var (r, i) in order)
        {
            if (r.TrainCurve.Count == 0) continue;
            var window = Math.Max(1, r.TrainCurve.Count / 33);
            var ys = Smooth(r.TrainCurve.Select(p => p.Loss).ToArray(), window);
            var from = r.TrainCurve.Count / 10;
            var xs = r.TrainCurve.Skip(from).Select(p => (double)p.Step).ToArray();
            var shown = ys.Skip(from).ToArray();
            var line = train.Add.ScatterLine(xs, shown);
            line.Color = ColorOf(i);
            line.LinePattern = PatternOf(i);
            line.LineWidth = 2;
            lows.Add(shown.Min());
            highs.Add(shown.Length > 0 ? shown[Math.Min(shown.Length - 1, shown.Length / 10)] : shown.Max());
        }
        if (lows.Count > 0) FitY(train, lows.Min(), highs.Max());
        train.Title("Training loss (mean over 3 % of the steps), from 10 % on");
        train.XLabel("step");
        train.YLabel("loss (nats/token)");

        var validation = new ScottPlot.Plot();
        var points = new List<double>();
        var finals = new List<double>();
        foreach (var (r, i) in order.OrderBy(o => o.Run.ValidationLoss))
        {
            var curve = r.ValidationCurve.Count > 1 ? r.ValidationCurve.Skip(1).ToList() : r.ValidationCurve.ToList();
            if (curve.Count == 0) continue;
            var line = validation.Add.Scatter(curve.Select(p => (double)p.Step).ToArray(), curve.Select(p => p.Loss).ToArray());
            line.Color = ColorOf(i);
            line.LinePattern = PatternOf(i);
            line.LineWidth = 2;
            line.MarkerSize = 7;
            var rel = baseline is null || ReferenceEquals(r, baseline) ? "" : string.Create(CultureInfo.InvariantCulture, $" ({(r.ValidationLoss / baseline.ValidationLoss - 1) * 100:+0.0;-0.0} %)");
            line.LegendText = string.Create(CultureInfo.InvariantCulture, $"{r.Name}: {r.ValidationLoss:F4}{rel}");
            points.AddRange(curve.Select(p => p.Loss));
            finals.Add(curve[^1].Loss);
        }
        // Zoom on the final values: from the lowest point to a little above the worst final value; earlier,
        // higher points leave the panel at the top (the training panel shows the whole descent).
        if (points.Count > 0) FitY(validation, points.Min(), finals.Max() + 0.5 * (finals.Max() - points.Min()) + 1e-3);
        var lastStep = runs.SelectMany(r => r.ValidationCurve).Select(p => (double)p.Step).DefaultIfEmpty(1).Max();
        validation.Axes.SetLimitsX(lastStep * 0.4, lastStep * 1.02);
        validation.Title("Validation loss, zoomed on the final values (from 40 % of the steps)");
        validation.XLabel("step");
        validation.YLabel("loss (nats/token)");
        validation.ShowLegend(ScottPlot.Edge.Right);
        validation.Legend.FontSize = 13;

        // Each panel is rendered on its own, then the two images are placed side by side.
        var left = (int)(width * 0.42);
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(width, height));
        surface.Canvas.Clear(SkiaSharp.SKColors.White);
        using (var a = SkiaSharp.SKBitmap.Decode(train.GetImage(left, height).GetImageBytes()))
            surface.Canvas.DrawBitmap(a, 0, 0);
        using (var b = SkiaSharp.SKBitmap.Decode(validation.GetImage(width - left, height).GetImageBytes()))
            surface.Canvas.DrawBitmap(b, left, 0);
        using var image = surface.Snapshot();
        using var data = image.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        data.SaveTo(file);
    }

    /// <summary>Y limits around [low, high] with a margin, so small differences fill the panel.</summary>
    private static void FitY(ScottPlot.Plot plot, double low, double high)
    {
        var margin = Math.Max(1e-3, (high - low) * 0.08);
        plot.Axes.SetLimitsY(low - margin, high + margin);
    }

    private static double[] Smooth(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (var i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };
}
