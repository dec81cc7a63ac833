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
        sb.AppendLine("| run | optimizer | lr | steps | final train loss | val loss | val ppl | vs AdamW val | tokens/s | optimizer state | peak gradients | peak RSS |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in runs)
        {
            var rel = baseline is null ? "" : string.Create(CultureInfo.InvariantCulture, $"{(r.ValidationLoss / baseline.ValidationLoss - 1) * 100:+0.00;-0.00}%");
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Name} | {r.Optimizer} | {r.LearningRate:G3} | {r.Steps} | {r.FinalTrainLoss:F4} | {r.ValidationLoss:F4} | {r.Perplexity:F2} | {rel} | {r.TokensPerSecond:F0} | {Bytes(r.OptimizerStateBytes)} | {(r.PeakGradientBytes > 0 ? Bytes(r.PeakGradientBytes) : "—")} | {Bytes(r.PeakRssBytes)} |"));
        }
        return sb.ToString();
    }

    public static void WriteCsv(string path, IReadOnlyList<RunResult> runs)
    {
        var c = CultureInfo.InvariantCulture;
        File.WriteAllLines(path, new[] { "run,optimizer,lr,steps,final_train_loss,val_loss,val_ppl,tokens_per_s,optimizer_state_bytes,peak_gradient_bytes,peak_rss_bytes" }
            .Concat(runs.Select(r => string.Create(c, $"{r.Name},{r.Optimizer},{r.LearningRate:R},{r.Steps},{r.FinalTrainLoss:R},{r.ValidationLoss:R},{r.Perplexity:R},{r.TokensPerSecond:F1},{r.OptimizerStateBytes},{r.PeakGradientBytes},{r.PeakRssBytes}"))));
    }

    public static string Json(IReadOnlyList<RunResult> runs, object settings) => JsonSerializer.Serialize(new
    {
        settings,
        runs = runs.Select(r => new
        {
            run = r.Name, optimizer = r.Optimizer, lr = r.LearningRate, steps = r.Steps,
            final_train_loss = r.FinalTrainLoss, val_loss = r.ValidationLoss, val_ppl = r.Perplexity,
            tokens_per_s = r.TokensPerSecond, optimizer_state_bytes = r.OptimizerStateBytes, peak_gradient_bytes = r.PeakGradientBytes, peak_rss_bytes = r.PeakRssBytes,
        }),
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Training-loss curves (smoothed over 1% of the steps) with validation points.</summary>
    public static void WritePlot(string path, IReadOnlyList<RunResult> runs)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category20(); // distinct colors for up to 20 runs
        for (var i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            var window = Math.Max(1, r.TrainCurve.Count / 100);
            var xs = r.TrainCurve.Select(p => (double)p.Step).ToArray();
            var ys = Smooth(r.TrainCurve.Select(p => p.Loss).ToArray(), window);
            var line = plot.Add.ScatterLine(xs, ys);
            line.Color = palette.GetColor(i);
            line.LegendText = $"{r.Name} (train)";
            if (r.ValidationCurve.Count > 0)
            {
                var v = plot.Add.ScatterPoints(r.ValidationCurve.Select(p => (double)p.Step).ToArray(), r.ValidationCurve.Select(p => p.Loss).ToArray());
                v.Color = line.Color;
                v.MarkerSize = 6;
                v.LegendText = $"{r.Name} (val)";
            }
        }
        plot.XLabel("step");
        plot.YLabel("loss (nats/token)");
        plot.Title("Pretraining loss");
        plot.ShowLegend(ScottPlot.Edge.Right);
        plot.SavePng(path, 1200, 650);
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
