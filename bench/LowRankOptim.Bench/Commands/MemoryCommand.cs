using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `memory`: the memory planner. Exact bytes of weights, gradients and optimizer state for named LLaMA
/// configurations (or a user's shapes) and each optimizer, computed from shapes without allocating; the
/// largest rank that fits a budget; `--verify` allocates the states of the configurations that fit here and
/// checks prediction = allocation.
/// </summary>
public static class MemoryCommand
{
    /// <summary>The ranks of the GaLore paper's pretraining experiments.</summary>
    public static int PaperRank(LlamaConfig c) => c.Name switch
    {
        "60m" => 128, "130m" => 256, "350m" => 256, "1b" => 512, "7b" => 1024, _ => Math.Max(1, c.Hidden / 4),
    };

    /// <summary>
    /// One planned optimizer: <see cref="OptimBits"/> is its moment storage, <see cref="BlockSize"/> the block size of 8- and 4-bit moments (0: the
    /// format's default); <see cref="StateVsAdamW"/> compares with AdamW's dense moments in the same dtype.
    /// </summary>
    public sealed record Row(string Model, string Optimizer, int OptimBits, int Rank, string DType, long Parameters, long WeightBytes, long GradientBytes, long StateBytes, long TotalBytes, double StateVsAdamW,
        int BlockSize = 0);

    public static Command Create()
    {
        var models = new Option<string>("--model") { Description = $"Comma-separated configurations: {string.Join(", ", LlamaConfig.Named.Keys)}.", DefaultValueFactory = _ => "60m,130m,350m,1b,7b" };
        var shapes = new Option<string?>("--shapes") { Description = "A JSON file [{\"name\": ..., \"shape\": [...]}, ...] of a user's model (names containing .attn. or .mlp. are projected)." };
        var optimizers = new Option<string>("--optimizers") { Description = "Comma-separated optimizers.", DefaultValueFactory = _ => string.Join(",", OptimizerCatalog.All.Select(k => k.CliName())) };
        var rank = new Option<int?>("--rank") { Description = "Rank (default: the GaLore paper's rank of each configuration, else hidden/4)." };
        var dtype = new Option<string>("--dtype") { Description = "Comma-separated parameter dtypes: float32, bfloat16 (the moments' working dtype).", DefaultValueFactory = _ => "float32" };
        var optimBits = new Option<string>("--optim-bits")
        {
            Description = "Comma-separated moment storages (bitsandbytes' optim_bits): 32 dense, 16 bfloat16, 8 or 4 block-wise; every optimizer is planned with each " +
                          "(smmf only with 32: it has no moments to quantize).",
            DefaultValueFactory = _ => "32",
        };
        var blockSize = new Option<int>("--block-size")
        {
            Description = "Entries per quantization block of the 8- and 4-bit storages of --optim-bits (torchao's block_size; 0, the default, is the format's: 256 for 8-bit, " +
                          "128 for 4-bit; bitsandbytes' block-wise optimizers used 2048): a positive multiple of 32 up to 4096. Dense and bfloat16 storages have no blocks.",
            DefaultValueFactory = _ => 0,
        };
        var budget = new Option<string?>("--budget") { Description = "A memory budget (e.g. 24GiB, 512MiB, bytes): report the largest rank whose weights + gradients + state fit." };
        var csv = new Option<string?>("--csv") { Description = "Write the table as CSV to this path." };
        var png = new Option<string?>("--png") { Description = "Write a bar chart of the memory to this PNG path." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a markdown table." };
        var verify = new Option<bool>("--verify") { Description = "Allocate the optimizer states of configurations up to --verify-max-params and check they equal the prediction (exit code 1 otherwise)." };
        var verifyMax = new Option<long>("--verify-max-params") { Description = "Largest model (parameters) --verify allocates.", DefaultValueFactory = _ => 150_000_000 };
        var detail = new Option<bool>("--detail") { Description = "Also print the bytes of every parameter and the optimizer state of every group." };
        var measure = new Option<bool>("--measure")
        {
            Description = "Train each configuration × optimizer for --steps steps, each in its own child process, and report the measured peak RSS beside the planner's predicted " +
                          $"peak (weights + gradients alive + state + activations + workspace + the process's baseline). --optimizers also takes '{LowRankOptim.Bench.Measure.MemoryRecipe.SmallestName}' " +
                          "(DCT-AdamW, 8-bit moments, per-layer updates, bfloat16 weights); a row whose prediction exceeds --budget (default: the memory available now) is refused before it allocates, " +
                          "and with --budget the largest configuration each optimizer can train is reported.",
        };
        var steps = new Option<int>("--steps") { Description = "With --measure: training steps per row.", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch") { Description = "With --measure: sequences per batch.", DefaultValueFactory = _ => 1 };
        var seqLen = new Option<int>("--seq-len") { Description = "With --measure: tokens per sequence.", DefaultValueFactory = _ => 128 };
        var perLayer = new Option<bool>("--per-layer") { Description = "With --measure: release each layer's gradient during backward (the per-layer mode) for the named optimizers." };
        var lr = new Option<double>("--lr") { Description = "With --measure: the learning rate of every row (constant).", DefaultValueFactory = _ => 1e-3 };
        var threads = new Option<int?>("--threads") { Description = "With --measure: torch threads of each child (default: the idle cores)." };
        var command = new Command("memory", "Plan the memory of weights, gradients and optimizer state per optimizer, without allocating; --measure trains and measures the peak.")
        { models, shapes, optimizers, rank, dtype, optimBits, blockSize, budget, csv, png, json, verify, verifyMax, detail, measure, steps, batch, seqLen, perLayer, lr, threads };
        command.SetAction(r =>
        {
            try
            {
                if (r.GetValue(measure) && r.GetValue(blockSize) != 0)
                    throw new UsageException("--block-size is planned and verified (--verify), not measured: --measure trains its recipes with the formats' default blocks.");
                if (r.GetValue(measure)) return MeasureRows(r, models, optimizers, rank, dtype, optimBits, budget, csv, png, json, steps, batch, seqLen, perLayer, lr, threads, shapes, verify);
                var types = List(r.GetValue(dtype)!).Select(ParseDType).Distinct().ToList();
                var bits = List(r.GetValue(optimBits)!).Select(ParseOptimBits).Distinct().ToList();
                var blocks = ParseBlockSize(r.GetValue(blockSize), bits);
                var kinds = r.GetValue(optimizers)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(n => { try { return OptimizerCatalog.Parse(n); } catch (ArgumentException e) { throw new UsageException(e.Message); } }).ToList();
                var targets = r.GetValue(shapes) is string path ? [UserModel(path)] : r.GetValue(models)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(m => FromConfig(ParseModel(m))).ToList();
                if (r.GetValue(rank) is < 1) throw new UsageException($"--rank must be >= 1 (got {r.GetValue(rank)}).");
                long? budgetBytes = r.GetValue(budget) is string b ? ParseBytes(b) : null;
                return Run(targets, kinds, r.GetValue(rank), types, bits, blocks, budgetBytes, r.GetValue(csv), r.GetValue(png), r.GetValue(json), r.GetValue(verify), r.GetValue(verifyMax), r.GetValue(detail));
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"memory: {e.Message}");
                Console.Error.WriteLine("Run 'memory --help' for the options.");
                return 2;
            }
        });
        return command;
    }

    /// <summary>Parses the options of <c>--measure</c> and runs it.</summary>
    private static int MeasureRows(ParseResult r, Option<string> models, Option<string> optimizers, Option<int?> rank, Option<string> dtype, Option<string> optimBits,
        Option<string?> budget, Option<string?> csv, Option<string?> png, Option<bool> json, Option<int> steps, Option<int> batch, Option<int> seqLen,
        Option<bool> perLayer, Option<double> lr, Option<int?> threads, Option<string?> shapes, Option<bool> verify)
    {
        if (r.GetValue(shapes) is not null) throw new UsageException("--measure trains the named configurations; --shapes has no model to build.");
        if (r.GetValue(verify)) throw new UsageException("--measure and --verify are separate runs: choose one.");
        var configs = List(r.GetValue(models)!).Select(ParseModel).ToList();
        var types = List(r.GetValue(dtype)!).Select(ParseDType).Distinct().ToList();
        var bits = List(r.GetValue(optimBits)!).Select(ParseOptimBits).Distinct().ToList();
        var recipes = LowRankOptim.Bench.Measure.MemoryMeasurement.Recipes(List(r.GetValue(optimizers)!), types, bits, r.GetValue(perLayer));
        int Positive(Option<int> o) => r.GetValue(o) >= 1 ? r.GetValue(o) : throw new UsageException($"{o.Name} must be >= 1 (got {r.GetValue(o)}).");
        var sequence = Positive(seqLen);
        foreach (var c in configs.Where(c => sequence > c.MaxSequence))
            throw new UsageException($"--seq-len {sequence} exceeds llama-{c.Name}'s maximum sequence length {c.MaxSequence}.");
        if (r.GetValue(rank) is < 1) throw new UsageException($"--rank must be >= 1 (got {r.GetValue(rank)}).");
        if (!(r.GetValue(lr) is var rate && rate > 0 && double.IsFinite(rate))) throw new UsageException($"--lr must be a finite number > 0 (got {r.GetValue(lr)}).");
        if (r.GetValue(threads) is < 1) throw new UsageException($"--threads must be >= 1 (got {r.GetValue(threads)}).");
        var given = r.GetValue(budget) is not null;
        var limit = r.GetValue(budget) is string b ? ParseBytes(b) : ProcessMemory.Available();
        var options = new LowRankOptim.Bench.Measure.MemoryMeasurement.Options(Positive(steps), Positive(batch), sequence, r.GetValue(rank), rate,
            r.GetValue(threads) ?? NativeEnvironment.AutoThreads(), 0, limit, given);
        return LowRankOptim.Bench.Measure.MemoryMeasurement.Run(configs, recipes, options, r.GetValue(csv), r.GetValue(png), r.GetValue(json));
    }

    private static LlamaConfig ParseModel(string name) => LlamaConfig.Named.TryGetValue(name, out var c) ? c
        : throw new UsageException($"--model '{name}' is unknown; choose from {string.Join(", ", LlamaConfig.Named.Keys)}.");

    private static ScalarType ParseDType(string d) => d switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        _ => throw new UsageException($"--dtype '{d}' must be float32 or bfloat16."),
    };

    /// <summary>A model to plan: its parameter shapes and the rank to use by default.</summary>
    public sealed record Target(string Name, IReadOnlyList<(string Name, long[] Shape)> Shapes, int DefaultRank, LlamaConfig? Config);

    /// <summary>A LLaMA configuration as a target, at the GaLore paper's rank for its size.</summary>
    internal static Target FromConfig(LlamaConfig c) => new($"llama-{c.Name}", c.ParameterShapes().ToList(), PaperRank(c), c);

    private static Target UserModel(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"--shapes {path}: no such file.");
        var items = JsonSerializer.Deserialize<List<ShapeItem>>(File.ReadAllText(path), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
            ?? throw new UsageException($"--shapes {path}: expected a JSON array of {{name, shape}}.");
        var list = items.Select(i => (i.Name ?? throw new UsageException($"--shapes {path}: an entry has no name."), i.Shape ?? throw new UsageException($"--shapes {path}: '{i.Name}' has no shape."))).ToList();
        var minDim = list.Where(p => p.Item2.Length == 2).Select(p => p.Item2.Min()).DefaultIfEmpty(4).Max();
        return new Target(Path.GetFileNameWithoutExtension(path), list, (int)Math.Max(1, minDim / 4), null);
    }

    private sealed record ShapeItem(string? Name, long[]? Shape);

    /// <summary>
    /// The plan of one target and optimizer at one rank, its moments stored in <paramref name="optimBits"/> bits; 8- and 4-bit moments
    /// in blocks of <paramref name="blockSize"/> entries (0: the format's default; ignored for 32 and 16 bits, which have no blocks).
    /// </summary>
    public static MemoryPlan Plan(Target target, OptimizerKind kind, int rank, ScalarType dtype, int optimBits = 32, int blockSize = 0)
    {
        return MemoryPlanner.Plan(target.Shapes, dtype, OptimizerCatalog.OptionsOf(kind, 1e-3, Settings(rank, optimBits, blockSize), target.Config));
    }

    /// <summary>The settings the planner and --verify use: rank, T = 200, α = 0.25, the storage (the block size only where it has blocks).</summary>
    internal static LowRankSettings Settings(int rank, int optimBits, int blockSize) =>
        new(rank, 200, 0.25, optimBits, BlockSize: BlockSizeOf(optimBits, blockSize));

    /// <summary>The block size that applies to <paramref name="optimBits"/>-bit moments: --block-size for 8 and 4 bits, 0 (none) for 32 and 16.</summary>
    private static int BlockSizeOf(int optimBits, int blockSize) => optimBits is 8 or 4 ? blockSize : 0;

    /// <summary>" (blocks of N)" after a storage's bits, or nothing for the format's default blocks or no blocks.</summary>
    private static string BlocksLabel(int blockSize) => blockSize == 0 ? "" : $" (blocks of {blockSize})";

    /// <summary>The largest rank (1 … largest matrix side) whose total fits <paramref name="budget"/>, or 0 if none does.</summary>
    public static int LargestRankWithin(Target target, OptimizerKind kind, ScalarType dtype, long budget, int optimBits = 32, int blockSize = 0)
    {
        int lo = 0, hi = (int)target.Shapes.Where(p => p.Shape.Length == 2).Select(p => p.Shape.Min()).DefaultIfEmpty(1).Max();
        while (lo < hi)
        {
            var mid = (lo + hi + 1) / 2;
            if (Plan(target, kind, mid, dtype, optimBits, blockSize).TotalBytes <= budget) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>--block-size: 0, or a block size <see cref="MomentStorage.Validate"/> accepts, with at least one 8- or 4-bit storage to apply to.</summary>
    internal static int ParseBlockSize(int blockSize, IReadOnlyList<int> bits)
    {
        if (blockSize == 0) return 0;
        if (!bits.Any(b => b is 8 or 4))
            throw new UsageException($"--block-size {blockSize} needs --optim-bits 8 or 4: {string.Join(", ", bits)}-bit moments have no blocks.");
        try { MomentStorage.FromOptimBits(8, blockSize: blockSize).Validate("--block-size"); }
        catch (ArgumentException e) { throw new UsageException(e.Message.Split(" (Parameter")[0]); }
        return blockSize;
    }

    private static List<string> List(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    private static int ParseOptimBits(string s)
    {
        if (int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var bits))
            try { return MomentStorage.FromOptimBits(bits).OptimBits; }
            catch (ArgumentOutOfRangeException) { }
        throw new UsageException($"--optim-bits '{s}' must be 32 (dense), 16 (bfloat16), 8 or 4 (block-wise).");
    }

    /// <summary>The optimizers and storages to plan: every pair, except the storages an optimizer cannot use (noted once on stderr).</summary>
    private static List<(OptimizerKind Kind, int Bits)> Pairs(List<OptimizerKind> kinds, List<int> bits)
    {
        foreach (var k in kinds.Where(k => bits.Any(b => !OptimizerCatalog.SupportsOptimBits(k, b))))
            Console.Error.WriteLine($"note: {k.CliName()} has no moments to store in {string.Join("/", bits.Where(b => !OptimizerCatalog.SupportsOptimBits(k, b)))} bits; planned with 32 only.");
        var pairs = kinds.SelectMany(k => bits.Where(b => OptimizerCatalog.SupportsOptimBits(k, b)).Select(b => (k, b))).ToList();
        // An optimizer none of whose storages applies (smmf with --optim-bits 8) is still planned, dense.
        pairs.AddRange(kinds.Where(k => !pairs.Any(p => p.k == k)).Select(k => (k, 32)));
        return [.. pairs.OrderBy(p => kinds.IndexOf(p.Item1)).ThenByDescending(p => p.Item2)];
    }

    /// <summary>An optimizer's label in the chart and the detail: its name, with the storage when compressed.</summary>
    private static string Label(string optimizer, int bits) => bits == 32 ? optimizer : $"{optimizer} {bits}-bit";

    private static int Run(List<Target> targets, List<OptimizerKind> kinds, int? rankOption, List<ScalarType> dtypes, List<int> bits, int blockSize, long? budget, string? csvPath, string? pngPath,
        bool json, bool verify, long verifyMax, bool detail)
    {
        var rows = new List<Row>();
        var details = new List<object>();
        var pairs = Pairs(kinds, bits);
        foreach (var t in targets)
        {
            var rank = rankOption ?? t.DefaultRank;
            foreach (var dtype in dtypes)
            {
                // The reference of every row: AdamW with dense moments in the same dtype.
                var adamw = Plan(t, OptimizerKind.AdamW, rank, dtype).StateBytes;
                foreach (var (kind, b) in pairs)
                {
                    var plan = Plan(t, kind, rank, dtype, b, blockSize);
                    if (detail) details.Add(Detail(t.Name, kind, b, dtype, plan, json));
                    rows.Add(new Row(t.Name, kind.CliName(), b, kind == OptimizerKind.AdamW ? 0 : rank, dtype.ToString(), t.Shapes.Sum(p => p.Shape.Aggregate(1L, (a, c) => a * c)),
                        plan.WeightBytes, plan.GradientBytes, plan.StateBytes, plan.TotalBytes, adamw == 0 ? 0 : plan.StateBytes / (double)adamw,
                        BlockSizeOf(b, blockSize)));
                }
            }
        }
        var fits = budget is long bb
            ? targets.SelectMany(t => dtypes.SelectMany(d => pairs.Where(p => p.Kind != OptimizerKind.AdamW)
                .Select(p => (Model: t.Name, Optimizer: Label(p.Kind.CliName(), p.Bits), DType: d.ToString(), Rank: LargestRankWithin(t, p.Kind, d, bb, p.Bits, blockSize))))).ToList()
            : null;

        if (csvPath is not null)
        {
            var c = CultureInfo.InvariantCulture;
            File.WriteAllLines(csvPath, new[] { "model,optimizer,optim_bits,rank,dtype,parameters,weight_bytes,gradient_bytes,state_bytes,total_bytes,state_vs_adamw,block_size" }
                .Concat(rows.Select(x => string.Create(c, $"{x.Model},{x.Optimizer},{x.OptimBits},{x.Rank},{x.DType},{x.Parameters},{x.WeightBytes},{x.GradientBytes},{x.StateBytes},{x.TotalBytes},{x.StateVsAdamW:R},{x.BlockSize}"))));
        }
        if (pngPath is not null) WriteChart(pngPath, rows);
        if (json)
            Console.WriteLine(JsonSerializer.Serialize(new { machine = MachineInfo.Describe(), rows, budget, largest_rank_within_budget = fits?.Select(f => new { model = f.Model, optimizer = f.Optimizer, dtype = f.DType, rank = f.Rank }), details = detail ? details : null },
                new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        else
        {
            Console.WriteLine("| model | optimizer | optim bits | rank | dtype | parameters | weights | gradients | optimizer state | total | state vs AdamW |");
            Console.WriteLine("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
            foreach (var x in rows)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {x.Model} | {x.Optimizer} | {x.OptimBits}{BlocksLabel(x.BlockSize)} | {(x.Rank == 0 ? "—" : x.Rank)} | {x.DType} | {x.Parameters / 1e6:F1} M | {Reports.Bytes(x.WeightBytes)} | {Reports.Bytes(x.GradientBytes)} | {Reports.Bytes(x.StateBytes)} | {Reports.Bytes(x.TotalBytes)} | {x.StateVsAdamW:P1} |"));
            if (fits is not null)
            {
                Console.WriteLine();
                Console.WriteLine($"Largest rank within {Reports.Bytes(budget!.Value)} (weights + gradients + optimizer state):");
                foreach (var f in fits) Console.WriteLine($"  {f.Model} {f.Optimizer}{(dtypes.Count > 1 ? $" ({f.DType})" : "")}: {(f.Rank == 0 ? "does not fit at any rank" : $"rank {f.Rank}")}");
            }
        }
        return verify ? Verify(targets, pairs, rankOption, verifyMax, blockSize) : 0;
    }

    /// <summary>
    /// Per-parameter and per-group bytes of one plan: printed as markdown now (unless JSON is asked), and
    /// returned for the JSON output.
    /// </summary>
    private static object Detail(string model, OptimizerKind kind, int bits, ScalarType dtype, MemoryPlan plan, bool json)
    {
        if (!json)
        {
            Console.WriteLine($"### {model}, {Label(kind.CliName(), bits)}, {dtype}: per parameter");
            Console.WriteLine("| parameter | shape | group | projected | weight (B) | gradient (B) | optimizer state (B) |");
            Console.WriteLine("|---|---|---:|---|---:|---:|---:|");
            foreach (var p in plan.Parameters)
                Console.WriteLine($"| {p.Name} | {string.Join("×", p.Shape)} | {p.Group} | {(p.Projected ? "yes" : "no")} | {p.WeightBytes:N0} | {p.GradientBytes:N0} | {p.StateBytes:N0} |");
            Console.WriteLine($"Optimizer state per group: {string.Join(", ", plan.StateBytesByGroup.OrderBy(g => g.Key).Select(g => $"group {g.Key} {g.Value:N0} B"))}; total {plan.StateBytes:N0} B.");
            Console.WriteLine();
        }
        return new
        {
            model, optimizer = kind.CliName(), optim_bits = bits, dtype = dtype.ToString(),
            parameters = plan.Parameters.Select(p => new { name = p.Name, shape = p.Shape, group = p.Group, projected = p.Projected, weight_bytes = p.WeightBytes, gradient_bytes = p.GradientBytes, state_bytes = p.StateBytes }),
            groups = plan.StateBytesByGroup.OrderBy(g => g.Key).Select(g => new { group = g.Key, state_bytes = g.Value }),
        };
    }

    /// <summary>Allocates each configuration that fits, takes one step so every basis exists, and compares bytes per parameter.</summary>
    private static int Verify(List<Target> targets, List<(OptimizerKind Kind, int Bits)> pairs, int? rankOption, long verifyMax, int blockSize)
    {
        var failures = 0;
        foreach (var t in targets)
        {
            var count = t.Shapes.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b));
            if (t.Config is null || count > verifyMax)
            {
                Console.Error.WriteLine($"verify: {t.Name} skipped ({(t.Config is null ? "user shapes have no model to build" : $"{count / 1e6:F0} M parameters > --verify-max-params {verifyMax / 1e6:F0} M")})");
                continue;
            }
            var rank = rankOption ?? t.DefaultRank;
            foreach (var (kind, bits) in pairs.Where(p => p.Kind != OptimizerKind.AdamW || p.Bits != 32))
            {
                using var scope = NewDisposeScope();
                using var model = new LlamaModel(t.Config, seed: 0);
                using var optimizer = (LowRankOptimizer)OptimizerCatalog.Create(kind, model, 1e-3, Settings(rank, bits, blockSize));
                foreach (var p in model.parameters()) p.grad = randn_like(p).mul_(1e-3);
                optimizer.step();
                var predicted = Plan(t, kind, rank, ScalarType.Float32, bits, blockSize);
                var nameOf = model.named_parameters().ToDictionary(p => p.parameter.Handle, p => p.name);
                var byName = predicted.Parameters.ToDictionary(p => p.Name);
                var mismatches = optimizer.States.Where(s => byName[nameOf[s.Parameter.Handle]].StateBytes != s.StateBytes).ToList();
                var ok = mismatches.Count == 0 && predicted.StateBytes == optimizer.StateBytes;
                Console.Error.WriteLine($"verify: {t.Name} {Label(kind.CliName(), bits)}{BlocksLabel(BlockSizeOf(bits, blockSize))} rank {rank}: predicted {predicted.StateBytes:N0} B, allocated {optimizer.StateBytes:N0} B — {(ok ? "equal" : $"MISMATCH in {mismatches.Count} parameters")}");
                if (!ok) failures++;
            }
        }
        return failures == 0 ? 0 : 1;
    }

    private static void WriteChart(string path, List<Row> rows)
    {
        var plot = new ScottPlot.Plot();
        var models = rows.Select(r => r.Model).Distinct().ToList();
        // One bar per optimizer, storage and dtype (the chart's series).
        string Series(Row r) => Label(r.Optimizer, r.OptimBits) + (rows.Select(x => x.DType).Distinct().Count() > 1 ? $" {r.DType}" : "");
        var optimizers = rows.Select(Series).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        for (var o = 0; o < optimizers.Count; o++)
        {
            var bars = models.Select((m, i) =>
            {
                var row = rows.First(r => r.Model == m && Series(r) == optimizers[o]);
                return new ScottPlot.Bar { Position = i * (optimizers.Count + 1) + o, Value = row.TotalBytes / (double)(1L << 30), FillColor = palette.GetColor(o) };
            }).ToList();
            plot.Add.Bars(bars).LegendText = optimizers[o];
        }
        plot.Axes.Bottom.SetTicks(models.Select((_, i) => i * (optimizers.Count + 1) + (optimizers.Count - 1) / 2.0).ToArray(), models.ToArray());
        plot.YLabel("weights + gradients + optimizer state (GiB)");
        plot.Title($"Planned memory ({string.Join(", ", rows.Select(r => r.DType).Distinct())})");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1000, 600);
    }

    /// <summary>Parses "24GiB", "512MiB", "1.5GB" or a number of bytes.</summary>
    public static long ParseBytes(string s)
    {
        var units = new (string Suffix, double Factor)[] { ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1) };
        var text = s.Trim();
        var unit = units.FirstOrDefault(u => text.EndsWith(u.Suffix, StringComparison.OrdinalIgnoreCase));
        var number = unit.Suffix is null ? text : text[..^unit.Suffix.Length];
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !(v > 0))
            throw new UsageException($"--budget '{s}' must be a positive size such as 24GiB, 512MiB or a byte count.");
        return (long)(v * (unit.Suffix is null ? 1 : unit.Factor));
    }
}
