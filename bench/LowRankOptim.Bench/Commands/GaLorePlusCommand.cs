using System.CommandLine;
using System.Diagnostics;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `galore-plus`: one subspace refresh on the attention weights of LLaMA-60M/130M/1B (d×d, h heads of 64),
/// GaLore's exact SVD against randomized subspace iteration on the whole matrix and GaLore+'s cross-head
/// refreshes (readings (a) and (b)), alternating the methods round by round and reporting medians.
/// </summary>
public static class GaLorePlusCommand
{
    public static Command Create()
    {
        var models = new Option<string>("--models") { Description = "Comma-separated LLaMA configurations (LlamaConfig names).", DefaultValueFactory = _ => "60m,130m,1b" };
        var rank = new Option<int?>("--rank") { Description = "r for every model (default: the paper's 128/256/512; GaLore+ clamps it to d_h)." };
        var rounds = new Option<int>("--rounds") { Description = "Rounds; each times every method once, in turn.", DefaultValueFactory = _ => 5 };
        var command = new Command("galore-plus", "Time one refresh of GaLore (exact SVD) against GaLore+ (randomized, cross-head) on LLaMA attention shapes.")
        {
            models, rank, rounds,
        };
        command.SetAction(r => Run(r.GetValue(models)!, r.GetValue(rank), r.GetValue(rounds)));
        return command;
    }

    private static int PaperRank(LlamaConfig c) => c.Hidden switch { <= 512 => 128, <= 1024 => 256, _ => 512 };

    private static int Run(string modelsText, int? rankOption, int rounds)
    {
        var names = modelsText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var unknown = names.Where(n => !LlamaConfig.Named.ContainsKey(n)).ToList();
        if (names.Length == 0 || unknown.Count > 0 || rounds < 1 || rankOption is < 1)
        {
            Console.Error.WriteLine($"--models must name configurations among {string.Join(", ", LlamaConfig.Named.Keys)} (unknown: {string.Join(", ", unknown)}); " +
                                    $"--rounds and --rank must be >= 1 (got {rounds}, {rankOption}).");
            return 2;
        }
        using (var warm = NewDisposeScope()) { var a = randn(64, 64); linalg.svd(a, fullMatrices: false); linalg.qr(a); }
        var start = CpuLoad.Sample();
        Console.WriteLine($"One refresh of a float32 attention gradient; {MachineInfo.Describe()}; median of {rounds} rounds (methods alternate within each round, one untimed warm-up each).");
        Console.WriteLine();
        Console.WriteLine("| model | weight | heads × d_h | method | r (basis) | refresh median (ms) | min–max (ms) | vs exact SVD |");
        Console.WriteLine("|---|---|---:|---|---:|---:|---:|---:|");
        foreach (var name in names)
        {
            var c = LlamaConfig.Named[name];
            var r = rankOption ?? PaperRank(c);
            using var scope = NewDisposeScope();
            using var gen = new Generator(42);
            var gradient = randn([c.Hidden, c.Hidden], generator: gen);
            var shape = new MatrixShape(c.Hidden, c.Hidden);
            var q = AttentionHeads.QueryKeyValue(c.Heads);
            var o = AttentionHeads.Output(c.Heads);
            var methods = new (string Weight, string Method, IProjectionConfig Config)[]
            {
                ("q/k/v/o", "GaLore, exact SVD", new SvdProjection(r, 200, 1.0)),
                ("q/k/v/o", "randomized SVD, whole matrix (p=8, q=2)", new RandomizedSvdProjection(r, 200, 1.0)),
                ("q_proj", "GaLore+ cross-head (a), shared long side", new GaLorePlusProjection(r, 200, 1.0, Heads: q)),
                ("o_proj", "GaLore+ cross-head (a), shared long side", new GaLorePlusProjection(r, 200, 1.0, Heads: o)),
                ("q_proj", "GaLore+ cross-head (b), per-head short side", new GaLorePlusProjection(r, 200, 1.0, Heads: q, Reading: CrossHeadReading.PerHeadShortSide)),
            };
            var subspaces = methods.Select(m => m.Config.Create(shape, ScalarType.Float32, CPU)).ToArray();
            var times = methods.Select(_ => new List<double>()).ToArray();
            var step = 1L;
            for (var round = -1; round < rounds; round++) // round −1 is the untimed warm-up
                for (var i = 0; i < methods.Length; i++)
                {
                    using var inner = NewDisposeScope();
                    var watch = Stopwatch.StartNew();
                    subspaces[i].Refresh(gradient, new SubspaceContext(0, step++, 1e-3, 1e-3));
                    var ms = watch.Elapsed.TotalMilliseconds;
                    if (round >= 0) times[i].Add(ms);
                }
            var medians = times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray();
            for (var i = 0; i < methods.Length; i++)
            {
                var basisRank = methods[i].Config switch
                {
                    GaLorePlusProjection p => p.LayoutRank(shape),
                    _ => Math.Min(r, c.Hidden),
                };
                Console.WriteLine($"| llama-{name} | {c.Hidden}×{c.Hidden} {methods[i].Weight} | {c.Heads} × {c.HeadDim} | {methods[i].Method} | {basisRank} | " +
                                  $"{medians[i]:F2} | {times[i].Min():F2}–{times[i].Max():F2} | {medians[0] / medians[i]:F1}× |");
            }
            foreach (var s in subspaces) s.Dispose();
        }
        if (start is not null) Console.WriteLine($"\nOther processes used {CpuLoad.Sample()!.OthersShareSince(start):P0} of the CPU time during the run.");
        return 0;
    }
}
