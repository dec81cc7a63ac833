using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `per-layer`: the standard path and the per-layer mode (<see cref="LowRankOptimizer.ReleaseGradientsDuringBackward"/>)
/// side by side on two copies of one LLaMA model, steps interleaved (the order alternates every step): the peak gradient
/// bytes of each step against the bound full-space gradients + the largest projected layer's full gradient + Σ projected
/// gradients, the wall time per step, the other processes' CPU share while each ran, and how far the two copies end apart.
/// </summary>
public static class PerLayerCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = $"Model configuration: {string.Join(", ", LlamaConfig.Named.Keys)}.", DefaultValueFactory = _ => "60m" };
        var optimizer = new Option<string>("--optimizer") { Description = $"One of {string.Join(", ", OptimizerCatalog.All.Select(k => k.CliName()))} (adamw runs as LowRank.AdamW).", DefaultValueFactory = _ => "galore" };
        var steps = new Option<int>("--steps") { Description = "Steps per path (the first of each is reported but left out of the time ratio).", DefaultValueFactory = _ => 6 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step.", DefaultValueFactory = _ => 4 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence.", DefaultValueFactory = _ => 128 };
        var accumulation = new Option<int>("--accumulation") { Description = "Micro-batches per step (must divide --batch).", DefaultValueFactory = _ => 1 };
        var clip = new Option<double>("--clip") { Description = "Global-norm clipping (0 = off).", DefaultValueFactory = _ => 1.0 };
        var rank = new Option<int?>("--rank") { Description = "Rank (default hidden/4)." };
        var gap = new Option<int>("--update-proj-gap") { Description = "Refresh period T.", DefaultValueFactory = _ => 200 };
        var lr = new Option<double>("--lr") { Description = "Learning rate.", DefaultValueFactory = _ => 1e-3 };
        var threads = new Option<int>("--threads") { Description = "Torch intra-op threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of markdown." };
        var command = new Command("per-layer", "Compare the standard path and the per-layer mode: peak gradient bytes and time per step, interleaved.")
        {
            model, optimizer, steps, batch, seqLen, accumulation, clip, rank, gap, lr, threads, json,
        };
        command.SetAction(r =>
        {
            try
            {
                var config = LlamaConfig.Named.TryGetValue(r.GetValue(model)!, out var c) ? c
                    : throw new UsageException($"--model '{r.GetValue(model)}' is unknown; choose from {string.Join(", ", LlamaConfig.Named.Keys)}.");
                OptimizerKind kind;
                try { kind = OptimizerCatalog.Parse(r.GetValue(optimizer)!); }
                catch (ArgumentException e) { throw new UsageException(e.Message); }
                var (n, b, t, k) = (r.GetValue(steps), r.GetValue(batch), r.GetValue(seqLen), r.GetValue(accumulation));
                if (n < 1 || b < 1 || t < 1 || k < 1) throw new UsageException($"--steps, --batch, --seq-len and --accumulation must be >= 1 (got {n}, {b}, {t}, {k}).");
                if (b % k != 0) throw new UsageException($"--accumulation {k} must divide --batch {b}.");
                if (t > config.MaxSequence) throw new UsageException($"--seq-len {t} exceeds the model's maximum sequence length {config.MaxSequence}.");
                if (r.GetValue(threads) < 1) throw new UsageException("--threads must be >= 1.");
                torch.set_num_threads(r.GetValue(threads));
                var settings = new LowRankSettings(r.GetValue(rank) ?? Math.Max(1, config.Hidden / 4), r.GetValue(gap), 0.25);
                return Run(config, kind, settings, n, b, t, k, r.GetValue(clip), r.GetValue(lr), r.GetValue(json));
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"per-layer: {e.Message}");
                Console.Error.WriteLine("Run 'per-layer --help' for the options.");
                return 2;
            }
        });
        return command;
    }

    private sealed record StepRecord(int Step, string Path, double Seconds, double CpuSeconds, double OthersCpuShare, long PeakGradientBytes);

    private static int Run(LlamaConfig config, OptimizerKind kind, LowRankSettings settings, int steps, int batch, int sequence, int k, double clip, double lr, bool json)
    {
        var log = json ? Console.Error : Console.Out;
        log.WriteLine($"per-layer: llama-{config.Name}, {kind.CliName()} (rank {settings.Rank}, T {settings.UpdateProjGap}), {steps} steps × {batch} × {sequence} tokens, " +
                      $"{k} micro-batch(es), clip {(clip > 0 ? clip.ToString(CultureInfo.InvariantCulture) : "off")}");
        log.WriteLine(MachineInfo.Describe());
        using var standard = new LlamaModel(config, 0);
        using var perLayer = new LlamaModel(config, 0);
        using var optA = (LowRankOptimizer)OptimizerCatalog.Create(kind, standard, lr, settings, lowRankOnly: true);
        using var optB = (LowRankOptimizer)OptimizerCatalog.Create(kind, perLayer, lr, settings, lowRankOnly: true);
        using var release = optB.ReleaseGradientsDuringBackward(perLayer, accumulation_steps: k, max_grad_norm: clip > 0 ? clip : null);

        // The bound: the full-space parameters' gradients + the largest projected layer's full gradient + Σ projected gradients.
        long Bytes(LowRankParameterState s) => s.Parameter.numel() * s.Parameter.element_size();
        var projected = optB.States.Where(s => s.Subspace is not null).ToList();
        var fullSpace = optB.States.Where(s => s.Subspace is null).Sum(Bytes);
        var largest = projected.Count > 0 ? projected.Max(Bytes) : 0;
        var projectedSum = projected.Sum(s => s.Subspace!.ProjectedShape.Aggregate(1L, (a, d) => a * d) * s.Parameter.element_size());
        var bound = fullSpace + largest + projectedSum;
        var all = optB.States.Sum(Bytes);

        var records = new List<StepRecord>();
        StepRecord Step(int step, string path, nn.Module<Tensor, Tensor> model, LowRankOptimizer opt, bool clipHere)
        {
            using var gen = new Generator((ulong)(1000 + step));
            using var block = randint(0, config.VocabSize, [batch, sequence + 1], generator: gen);
            var load = CpuLoad.Sample();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                var micro = batch / k;
                for (var i = 0; i < k; i++)
                {
                    using var microScope = NewDisposeScope();
                    var loss = ((LlamaModel)model).Loss(k == 1 ? block : block.narrow(0, i * micro, micro));
                    (k == 1 ? loss : loss.div(k)).backward();
                }
                if (clipHere) nn.utils.clip_grad_norm_(model.parameters(), clip);
                opt.step();
                opt.zero_grad();
            }
            var seconds = clock.Elapsed.TotalSeconds;
            var cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            var others = load is null ? double.NaN : CpuLoad.Sample()!.OthersShareSince(load);
            return new StepRecord(step, path, seconds, cpuSeconds, others, opt.PeakGradientBytes);
        }

        for (var step = 1; step <= steps; step++)
        {
            // Alternate the order, so that a drift in the machine's load reaches both paths alike.
            var first = step % 2 == 1;
            if (first) records.Add(Step(step, "standard", standard, optA, clip > 0));
            records.Add(Step(step, "per-layer", perLayer, optB, false));
            if (!first) records.Add(Step(step, "standard", standard, optA, clip > 0));
            log.WriteLine(string.Join("  ", records.TakeLast(2).OrderBy(x => x.Path).Select(x =>
                string.Create(CultureInfo.InvariantCulture, $"step {x.Step} {x.Path}: {x.Seconds:F2} s ({x.CpuSeconds:F2} s CPU), peak gradients {x.PeakGradientBytes / 1048576.0:F1} MiB, others' CPU {x.OthersCpuShare:P0}"))));
        }

        double Median(IEnumerable<double> xs)
        {
            var a = xs.OrderBy(x => x).ToArray();
            return a.Length == 0 ? double.NaN : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
        }
        var timed = records.Where(x => x.Step > 1 || steps == 1).ToList();
        var (medA, medB) = (Median(timed.Where(x => x.Path == "standard").Select(x => x.Seconds)), Median(timed.Where(x => x.Path == "per-layer").Select(x => x.Seconds)));
        var (sumA, sumB) = (timed.Where(x => x.Path == "standard").Sum(x => x.Seconds), timed.Where(x => x.Path == "per-layer").Sum(x => x.Seconds));
        // Per step: per-layer / standard of the same step (run back to back), wall and own CPU time; their medians.
        var pairs = timed.GroupBy(x => x.Step).Select(g => (A: g.Single(x => x.Path == "standard"), B: g.Single(x => x.Path == "per-layer"))).ToList();
        var pairWall = Median(pairs.Select(p => p.B.Seconds / p.A.Seconds));
        var pairCpu = Median(pairs.Select(p => p.B.CpuSeconds / p.A.CpuSeconds));
        var peakA = records.Where(x => x.Path == "standard").Max(x => x.PeakGradientBytes);
        var peakB = records.Where(x => x.Path == "per-layer").Max(x => x.PeakGradientBytes);
        // GaLore-style schedules refresh at steps 1, T+1, 2T+1, …: with accumulation those steps keep Σ G_i (docs/per-layer.md).
        var peakBLater = records.Where(x => x.Path == "per-layer" && (x.Step - 1) % settings.UpdateProjGap != 0).Select(x => x.PeakGradientBytes).DefaultIfEmpty(0).Max();
        var others = timed.Select(x => x.OthersCpuShare).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
        var difference = standard.parameters().Zip(perLayer.parameters()).Max(p => (p.First - p.Second).norm().item<float>() / (double)p.First.norm().item<float>());

        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                machine = MachineInfo.Describe(), model = config.Name, optimizer = kind.CliName(), settings.Rank, update_proj_gap = settings.UpdateProjGap,
                steps, batch, sequence, accumulation = k, clip, all_gradient_bytes = all, bound_bytes = bound, full_space_gradient_bytes = fullSpace,
                largest_projected_gradient_bytes = largest, projected_gradient_bytes = projectedSum, peak_standard_bytes = peakA, peak_per_layer_bytes = peakB, peak_per_layer_bytes_without_refresh = peakBLater,
                median_step_s_standard = medA, median_step_s_per_layer = medB, time_ratio_median = medB / medA, time_ratio_total = sumB / sumA,
                time_ratio_median_of_pairs = pairWall, cpu_time_ratio_median_of_pairs = pairCpu,
                others_cpu_share = others, worst_relative_weight_difference = difference,
                records = records.Select(x => new { step = x.Step, path = x.Path, seconds = x.Seconds, cpu_seconds = x.CpuSeconds, others_cpu_share = x.OthersCpuShare, peak_gradient_bytes = x.PeakGradientBytes }),
            }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        static string MiB(long b) => (b / 1048576.0).ToString("F2", CultureInfo.InvariantCulture) + " MiB";
        Console.WriteLine();
        Console.WriteLine("| | bytes |");
        Console.WriteLine("|---|---:|");
        Console.WriteLine($"| every parameter's gradient | {MiB(all)} |");
        Console.WriteLine($"| bound: full-space gradients {MiB(fullSpace)} + largest projected layer {MiB(largest)} + Σ projected {MiB(projectedSum)} | {MiB(bound)} |");
        Console.WriteLine($"| peak gradient bytes, standard path (max over steps) | {MiB(peakA)} |");
        Console.WriteLine($"| peak gradient bytes, per-layer mode (max over steps) | {MiB(peakB)} |");
        Console.WriteLine($"| peak gradient bytes, per-layer mode (max over steps without a refresh) | {(steps > 1 ? MiB(peakBLater) : "—")} |");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"time per step (steps 2–{steps}, median): standard {medA:F3} s, per-layer {medB:F3} s, ratio {medB / medA:F3} (totals {sumB / sumA:F3}; " +
            $"median of the steps' ratios: wall {pairWall:F3}, own CPU {pairCpu:F3}); others' CPU share {others:P0}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worst relative weight difference after {steps} steps: {difference:E2}"));
        return 0;
    }
}
