using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Training;
using LowRankOptim.Mpi;
using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `comm`: the data-parallel communication of each optimizer. Measured (under mpiexec): the bytes each rank
/// all-reduces per step on a LLaMA configuration with its real vocabulary (random gradients, no forward pass), at a
/// refresh step and at an ordinary step, amortized over T; the optimizer-state bytes each rank holds (replicated or
/// sharded); the time of a refresh step and of an ordinary step, and of broadcasting every basis from rank 0 (the
/// alternative to every rank estimating the basis). Computed (no MPI needed): the same bytes from the parameter shapes
/// for any configuration (1B, 7B), by the exchange each method declares; the computed and measured bytes must agree.
/// </summary>
public static class CommCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Configuration to measure under mpiexec (empty: none).", DefaultValueFactory = _ => "60m" };
        var computed = new Option<string>("--computed") { Description = "Configurations to compute from their shapes.", DefaultValueFactory = _ => "60m,1b,7b" };
        var optimizers = new Option<string>("--optimizers") { Description = "Comma-separated optimizers.", DefaultValueFactory = _ => "adamw,galore,galore-rsi,galore-plus,dct,osd,apollo,apollo-mini,smmf" };
        var rank = new Option<int?>("--rank") { Description = "Rank (default: the GaLore paper's rank of each configuration)." };
        var gap = new Option<int>("--update-proj-gap") { Description = "T, for the amortization (the measurement itself refreshes at steps 1 and 3).", DefaultValueFactory = _ => 200 };
        var shard = new Option<bool>("--shard-state") { Description = "Measure with sharded optimizer state." };
        var threads = new Option<int>("--threads") { Description = "Torch threads per rank.", DefaultValueFactory = _ => 1 };
        var command = new Command("comm", "Bytes all-reduced per step and optimizer-state bytes per rank in data-parallel training: measured under mpiexec, computed from shapes.")
        { model, computed, optimizers, rank, gap, shard, threads };
        command.SetAction(r =>
        {
            try
            {
                var kinds = r.GetValue(optimizers)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(n => { try { return OptimizerCatalog.Parse(n); } catch (ArgumentException e) { throw new UsageException(e.Message); } }).ToList();
                var configs = (string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(m => LlamaConfig.Named.TryGetValue(m, out var c) ? c : throw new UsageException($"'{m}' is not a configuration ({string.Join(", ", LlamaConfig.Named.Keys)})."))
                    .ToList();
                var t = r.GetValue(gap) >= 1 ? r.GetValue(gap) : throw new UsageException("--update-proj-gap must be >= 1.");
                torch.set_num_threads(Math.Max(1, r.GetValue(threads)));
                var measured = configs(r.GetValue(model)!);
                MpiCommunicator? comm = null;
                if (measured.Count > 0)
                {
                    try { comm = MpiCommunicator.Initialize(TimeSpan.FromMinutes(30)); }
                    catch (InvalidOperationException e) { throw new UsageException($"measuring needs MPI: {e.Message} (or pass --model \"\" to compute only)."); }
                }
                try
                {
                    var print = comm is null || comm.Rank == 0;
                    if (print) Console.WriteLine(Computed(configs(r.GetValue(computed)!), kinds, r.GetValue(rank), t));
                    foreach (var c in measured)
                    {
                        var table = Measure(comm!, c, kinds, r.GetValue(rank), t, r.GetValue(shard));
                        if (print) Console.WriteLine(table);
                    }
                }
                finally
                {
                    comm?.Dispose();
                }
                return 0;
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"comm: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    /// <summary>What one parameter sends per step: at a refresh step and at an ordinary step (float32 gradients).</summary>
    public static (long Refresh, long Ordinary) ParameterBytes(OptimizerKind kind, LowRankOptions options, long[] shape)
    {
        var full = shape.Aggregate(1L, (a, b) => a * b) * 4;
        if (options.Projection!.MatrixViewOf(shape) is not MatrixShape m) return (full, full);
        var projected = options.Projection.ProjectedShape(m).Aggregate(1L, (a, b) => a * b) * 4;
        return kind switch
        {
            // OSD's basis step and APOLLO's apply phase read the whole gradient every step.
            OptimizerKind.Osd or OptimizerKind.Apollo or OptimizerKind.ApolloMini => (full, full),
            _ => (full, projected),
        };
    }

    /// <summary>Bytes all-reduced per step, computed from the shapes (the data-parallel exchange each method declares).</summary>
    public static string Computed(IReadOnlyList<LlamaConfig> configs, IReadOnlyList<OptimizerKind> kinds, int? rank, int t)
    {
        var c = CultureInfo.InvariantCulture;
        var lines = new List<string>
        {
            $"Computed bytes all-reduced per rank and step (float32 gradients; T = {t}; amortized = (refresh + (T − 1) · ordinary) / T):",
            "",
            "| model | optimizer | rank | refresh step | ordinary step | amortized | vs full all-reduce | projected weights only: ordinary vs full |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        };
        foreach (var config in configs)
        {
            var r = rank ?? MemoryCommand.PaperRank(config);
            long fullBytes = config.ParameterShapes().Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b) * 4);
            foreach (var kind in kinds)
            {
                var optionsOf = OptimizerCatalog.OptionsOf(kind, 1e-3, new LowRankSettings(r, t, 0.25), config);
                long refresh = 0, ordinary = 0, projectedFull = 0, projectedOrdinary = 0;
                foreach (var (name, shape) in config.ParameterShapes())
                {
                    var (_, options) = optionsOf(name, shape);
                    var (a, b) = ParameterBytes(kind, options, shape);
                    (refresh, ordinary) = (refresh + a, ordinary + b);
                    if (options.Projection!.MatrixViewOf(shape) is null) continue;
                    (projectedFull, projectedOrdinary) = (projectedFull + a, projectedOrdinary + b);
                }
                var amortized = (refresh + (t - 1.0) * ordinary) / t;
                lines.Add(string.Create(c, $"| llama-{config.Name} | {kind.CliName()} | {r} | {Mib(refresh)} | {Mib(ordinary)} | {Mib((long)amortized)} | {amortized / fullBytes:P1} | {(projectedFull > 0 ? (double)projectedOrdinary / projectedFull : 1):P1} |"));
            }
        }
        return string.Join('\n', lines);
    }

    private static string Mib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F2} MiB");

    /// <summary>Measures every optimizer on <paramref name="config"/> (vocabulary as configured) over 3 steps: refreshes at steps 1 and 3.</summary>
    private static string Measure(ICommunicator comm, LlamaConfig config, IReadOnlyList<OptimizerKind> kinds, int? rank, int t, bool shard)
    {
        var c = CultureInfo.InvariantCulture;
        var r = rank ?? MemoryCommand.PaperRank(config);
        var lines = new List<string>
        {
            $"Measured on llama-{config.Name} (vocabulary {config.VocabSize}), {comm.Size} MPI ranks, {(shard ? "sharded" : "replicated")} state, rank {r}; " +
            $"bytes one rank all-reduced; amortized over T = {t}. Times: {comm.Size} ranks on {Environment.ProcessorCount} cores here, a correctness setting, not a speed measurement.",
            "",
            "| optimizer | refresh step | ordinary step | amortized | computed (refresh / ordinary) | state per rank | refresh step time | ordinary step time | broadcast of the bases |",
            "|---|---:|---:|---:|---|---|---:|---:|---:|",
        };
        foreach (var kind in kinds)
        {
            using var model = new LlamaModel(config, 0);
            var settings = new LowRankSettings(r, 2, 0.25); // refreshes at steps 1 and 3 (DCT: 1 and 2)
            using var opt = (LowRankOptimizer)OptimizerCatalog.Create(kind, model, 1e-3, settings, lowRankOnly: true);
            var dp = opt.Distribute(comm, shard);
            var steps = new List<(long Whole, long AllReduced, double Seconds)>();
            for (var k = 1; k <= 3; k++)
            {
                using var scope = NewDisposeScope();
                using (var gen = new Generator((ulong)(1000 * k + comm.Rank)))
                    foreach (var p in model.parameters()) p.grad = randn(p.shape, generator: gen).mul_(1e-3);
                var before = dp.Traffic.Snapshot();
                Barrier(comm);
                var clock = Stopwatch.StartNew();
                opt.step();
                Barrier(comm);
                var seconds = clock.Elapsed.TotalSeconds;
                opt.zero_grad();
                steps.Add((dp.Traffic.WholeProjectedGradients - before.WholeProjectedGradients, dp.Traffic.AllReduced - before.AllReduced, seconds));
            }
            var refreshStep = steps.MaxBy(s => s.AllReduced); // the first of the largest: step 1
            var ordinaryStep = steps.Last(s => s.AllReduced == steps.Min(x => x.AllReduced)); // methods that always send G: step 3, after the first SVD
            var amortized = (refreshStep.AllReduced + (t - 1.0) * ordinaryStep.AllReduced) / t;
            var optionsOf = OptimizerCatalog.OptionsOf(kind, 1e-3, settings, config);
            var computed = config.ParameterShapes().Select(p => ParameterBytes(kind, optionsOf(p.Name, p.Shape).Options, p.Shape))
                .Aggregate((0L, 0L), (a, b) => (a.Item1 + b.Refresh, a.Item2 + b.Ordinary));
            var perRank = dp.StateBytesPerRank();
            // The alternative to every rank estimating the basis: one rank estimates it and broadcasts it.
            var bases = opt.States.Select(s => s.Subspace).OfType<ISubspace>()
                .SelectMany(s => s.State.Declaration.Entries.OfType<TensorEntry>().Where(e => e.Presence == SlotPresence.WhenSet && e.Name.Contains("basis"))
                    .Select(e => zeros(e.Shape))).ToList();
            Barrier(comm);
            var broadcastClock = Stopwatch.StartNew();
            if (bases.Count > 0) comm.Broadcast(bases, 0);
            Barrier(comm);
            var broadcast = broadcastClock.Elapsed.TotalSeconds;
            var basisBytes = bases.Sum(b => b.numel() * 4);
            bases.ForEach(b => b.Dispose());
            lines.Add(string.Create(c,
                $"| {kind.CliName()} | {Mib(refreshStep.AllReduced)} | {Mib(ordinaryStep.AllReduced)} | {Mib((long)amortized)} | " +
                $"{(computed.Item1 == refreshStep.AllReduced && computed.Item2 == ordinaryStep.AllReduced ? "equal" : $"{Mib(computed.Item1)} / {Mib(computed.Item2)}")} | " +
                $"[{string.Join(", ", perRank.Select(Mib))}] | {refreshStep.Seconds:F2} s | {ordinaryStep.Seconds:F2} s | " +
                $"{(basisBytes > 0 ? $"{broadcast:F3} s ({Mib(basisBytes)})" : "—")} |"));
        }
        return string.Join('\n', lines);
    }

    private static void Barrier(ICommunicator comm)
    {
        using var t = zeros(1);
        comm.AllReduceSum([t]);
    }
}
