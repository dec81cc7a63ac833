using System.CommandLine;
using System.Text.Json;
using LowRankOptim.Bench.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `steps`: one optimizer step on a single m×n float32 parameter, timed side by side for TorchSharp's
/// AdamW and each LowRankOptim optimizer (GaLore's amortized step = step + refresh / T); full-space AdamW's fused kernel
/// alone and its step with the gradient screen off and on are timed interleaved, round by round.
/// </summary>
public static class StepsCommand
{
    public static Command Create()
    {
        var rows = new Option<int>("--rows") { Description = "Parameter rows m.", DefaultValueFactory = _ => 1024 };
        var cols = new Option<int>("--cols") { Description = "Parameter columns n.", DefaultValueFactory = _ => 1024 };
        var rank = new Option<int>("--rank") { Description = "GaLore rank r.", DefaultValueFactory = _ => 128 };
        var gap = new Option<int>("--update-proj-gap") { Description = "GaLore refresh period T.", DefaultValueFactory = _ => 200 };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a markdown table." };
        var command = new Command("steps", "Time one optimizer step per method on one parameter, side by side.") { rows, cols, rank, gap, json };
        command.SetAction(r => Run(r.GetValue(rows), r.GetValue(cols), r.GetValue(rank), r.GetValue(gap), r.GetValue(json)));
        return command;
    }

    private static int Run(int rows, int cols, int rank, int gap, bool json)
    {
        if (rows < 1 || cols < 1 || rank < 1 || gap < 1)
        {
            Console.Error.WriteLine($"--rows, --cols, --rank and --update-proj-gap must be >= 1 (got {rows}, {cols}, {rank}, {gap}).");
            return 2;
        }
        var results = new List<(string Method, double StepMs, double RefreshMs, double AmortizedMs)>();
        using (var scope = NewDisposeScope())
        {
            var gradient = randn(rows, cols);
            double Time(optim.Optimizer opt, Parameter p) => Timing.MedianMilliseconds(() =>
            {
                p.grad = gradient;
                opt.step();
            });

            var pa = new Parameter(randn(rows, cols));
            using (var adamw = optim.AdamW([pa], lr: 1e-3))
            {
                var step = Time(adamw, pa);
                results.Add(("TorchSharp AdamW", step, 0, step));
            }

            // Full-space AdamW, interleaved: the fused kernel alone, then the whole step with the gradient screen off and on
            // (what the engine and the screen add around the kernel).
            var kernel = LowRankOptim.Kernels.KernelSelection.Select<LowRankOptim.Kernels.IAdamUpdateKernel>(
                null, CPU, LowRankOptim.Kernels.KernelStorage.Dense(ScalarType.Float32), (long)rows * cols);
            var (m, v, w) = (zeros(rows, cols), zeros(rows, cols), randn(rows, cols));
            var scalars = new LowRankOptim.Kernels.AdamScalars(0.9, 0.999, 1e-8, 0.99, 1e-3, 0.99);
            var (off, on) = (new Parameter(randn(rows, cols)), new Parameter(randn(rows, cols)));
            using (var screenOff = LowRank.AdamW([off], lr: 1e-3))
            using (var screenOn = LowRank.AdamW([on], lr: 1e-3))
            {
                screenOff.SkipUnusableGradients = false;
                // 40 warm-up rounds: the kernel's loop runs unoptimized JIT code for its first ~30 calls (docs/kernels.md).
                var medians = Timing.InterleavedMedianMilliseconds([
                    () => kernel.AdamUpdate(gradient, m, v, scalars, w),
                    () => { off.grad = gradient; screenOff.step(); },
                    () => { on.grad = gradient; screenOn.step(); },
                ], warmup: 40);
                results.Add(($"fused AdamUpdate kernel alone ({kernel.Backend})", medians[0], 0, medians[0]));
                results.Add(("LowRank.AdamW, gradient screen off", medians[1], 0, medians[1]));
                results.Add(("LowRank.AdamW, gradient screen on (default)", medians[2], 0, medians[2]));
            }

            // GaLore: a step without refresh (T huge after the first), and the refresh (T = 1) separately.
            var pg = new Parameter(randn(rows, cols));
            using (var galore = LowRank.GaLore([pg], lr: 1e-3, rank: rank, update_proj_gap: int.MaxValue))
            {
                pg.grad = gradient;
                galore.step();
                var step = Time(galore, pg);
                var pr = new Parameter(randn(rows, cols));
                using var refreshing = LowRank.GaLore([pr], lr: 1e-3, rank: rank, update_proj_gap: 1);
                refreshing.Diagnostics.Enabled = false;
                var refresh = Time(refreshing, pr) - step;
                results.Add(($"GaLore SVD (r={rank}, T={gap}), diagnostics off", step, refresh, step + refresh / gap));
                // The subspace diagnostics (on by default) work at refreshes only: their cost is the refresh's increase.
                refreshing.Diagnostics.Enabled = true;
                var observed = Time(refreshing, pr) - step;
                results.Add(($"GaLore SVD (r={rank}, T={gap}), diagnostics on", step, observed, step + observed / gap));
                refreshing.Diagnostics.SuggestRanks = true;
                var suggesting = Time(refreshing, pr) - step;
                results.Add(($"GaLore SVD (r={rank}, T={gap}), diagnostics + rank suggestions", step, suggesting, step + suggesting / gap));
            }
        }
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                machine = MachineInfo.Describe(), rows, cols, rank, update_proj_gap = gap,
                results = results.Select(r => new { method = r.Method, step_ms = r.StepMs, refresh_ms = r.RefreshMs, amortized_ms = r.AmortizedMs }),
            }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"{rows}×{cols} float32 — {MachineInfo.Describe()}");
        Console.WriteLine();
        Console.WriteLine("| method | step (ms) | refresh (ms) | amortized step (ms) | vs AdamW |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        var baseline = results[0].AmortizedMs;
        foreach (var r in results)
            Console.WriteLine($"| {r.Method} | {r.StepMs:F2} | {r.RefreshMs:F1} | {r.AmortizedMs:F2} | {r.AmortizedMs / baseline:F2}× |");
        return 0;
    }
}
