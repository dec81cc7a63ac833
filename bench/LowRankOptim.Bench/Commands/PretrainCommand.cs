using System.CommandLine;
using System.Globalization;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using LowRankOptim.Mpi;
using Spectre.Console;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `pretrain`: trains the same LLaMA-style model (same seed, initialization and data order) with AdamW and
/// each low-rank optimizer and prints a comparison table; CSV per run, a loss PNG, summary markdown/CSV/JSON.
/// </summary>
public static class PretrainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = $"Model configuration: {string.Join(", ", LlamaConfig.Named.Keys)}.", DefaultValueFactory = _ => "tiny" };
        var optimizers = new Option<string>("--optimizers") { Description = $"Comma-separated optimizers: {string.Join(", ", OptimizerCatalog.All.Select(k => k.CliName()))}.", DefaultValueFactory = _ => string.Join(",", OptimizerCatalog.All.Select(k => k.CliName())) };
        var steps = new Option<int>("--steps") { Description = "Training steps per run.", DefaultValueFactory = _ => 1000 };
        var batch = new Option<int>("--batch") { Description = "Sequences per batch.", DefaultValueFactory = _ => 16 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence.", DefaultValueFactory = _ => 64 };
        var lr = new Option<string?>("--lr") { Description = "Per-optimizer peak learning rates, e.g. adamw=3e-3,galore=0.01 (defaults per optimizer otherwise)." };
        var rank = new Option<int?>("--rank") { Description = "Rank of the low-rank optimizers (default hidden/4)." };
        var gap = new Option<int>("--update-proj-gap") { Description = "Subspace refresh period T.", DefaultValueFactory = _ => 200 };
        var scale = new Option<double>("--scale") { Description = "GaLore scale α.", DefaultValueFactory = _ => 0.25 };
        var optimBits = new Option<int>("--optim-bits")
        {
            Description = "How every optimizer stores its moments (bitsandbytes' optim_bits): 32 dense, 16 bfloat16, 8 or 4 block-wise. Below 32 the adamw baseline " +
                          "runs as LowRank.AdamW (TorchSharp's cannot store them), smmf (no moments to quantize) is skipped from the default list and refused when named, " +
                          "and run names get a -Nbit suffix.",
            DefaultValueFactory = _ => 32,
        };
        var blockSize = new Option<int>("--block-size")
        {
            Description = "With --optim-bits 8 or 4: entries per quantization block (torchao's block_size; 0, the default, is the format's: 256 for 8-bit, 128 for 4-bit; " +
                          "bitsandbytes' block-wise optimizers used 2048). A positive multiple of 32 up to 4096; run names get a -bN suffix when it is not 0.",
            DefaultValueFactory = _ => 0,
        };
        var stochastic = new Option<bool>("--stochastic-rounding")
        {
            Description = "With --optim-bits 16, 8 or 4: round the stored moments stochastically (seeded, resumable) instead of to nearest; run names get an -sr suffix.",
        };
        var dtype = new Option<string>("--dtype")
        {
            Description = "The dtype the model is built and trained in: float32 or bfloat16 (weights, gradients and the moments of Adam-based optimizers; the loss is float32). " +
                          "With bfloat16 the adamw baseline runs as LowRank.AdamW (bf16 moments, as TorchSharp's) and run names get a -bf16 suffix.",
            DefaultValueFactory = _ => "float32",
        };
        var weightRounding = new Option<string>("--weight-rounding")
        {
            Description = "With --dtype bfloat16: how each step's result is rounded into the bf16 weights, nearest or stochastic (seeded, resumable; " +
                          "updates below half a bf16 ulp are kept in expectation); run names get -bf16sr.",
            DefaultValueFactory = _ => "nearest",
        };
        var warmup = new Option<int?>("--warmup") { Description = "Warm-up steps (default 10% of --steps)." };
        var clip = new Option<double?>("--clip") { Description = "Gradient-norm clipping (0 = off; default 1, and 0 with --distributed)." };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads (default: the cores other processes leave idle over a 0.5 s sample at start, at least 1; divided by the ranks with --distributed)." };
        var memoryLimit = new Option<string?>("--memory-limit") { Description = "Memory the runs may use, e.g. 24GiB (default: the machine's available memory); a model whose planned weights + gradients + optimizer state exceed it is refused." };
        var distributed = new Option<bool>("--distributed") { Description = "Data parallel over MPI: run under 'mpiexec.mpich -n N'; each rank takes 1/N of every global batch (same data order as one process); rank 0 prints and writes (docs/distributed.md)." };
        var shardState = new Option<bool>("--shard-state") { Description = "With --distributed: each rank keeps the update-rule state of its share of the parameters (ZeRO stage 1)." };
        var mpiTimeout = new Option<double>("--mpi-timeout") { Description = "With --distributed: seconds one collective may wait for the other ranks before the rank ends itself.", DefaultValueFactory = _ => 600 };
        var accumulation = new Option<int>("--accumulation") { Description = "Micro-batches per step: each batch is split into this many, their gradients summed (it must divide --batch).", DefaultValueFactory = _ => 1 };
        var perLayer = new Option<bool>("--per-layer") { Description = "Per-layer mode: take and release each layer's gradient during backward (ReleaseGradientsDuringBackward; the AdamW baseline runs as LowRank.AdamW)." };
        var seed = new Option<long>("--seed") { Description = "Seed of the initialization and the data order.", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--output") { Description = "Output folder.", DefaultValueFactory = _ => Path.Combine("runs", "pretrain") };
        var data = new Option<string?>("--data") { Description = "A UTF-8 text file, or a folder of *.txt files (default: the .NET SDK's reference documentation)." };
        var sweep = new Option<bool>("--sweep-lr") { Description = "Run each optimizer over a learning-rate grid (--sweep-factors × its lr) and compare the best of each." };
        var factors = new Option<string>("--sweep-factors") { Description = "Multipliers of the learning-rate grid.", DefaultValueFactory = _ => "0.5,1,2" };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Validation every N steps (default 10% of --steps)." };
        var evalBatches = new Option<int>("--eval-batches") { Description = "Validation batches.", DefaultValueFactory = _ => 16 };
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "Checkpoint every N steps (default 20% of --steps)." };
        var resume = new Option<bool>("--resume") { Description = "Continue each run from its checkpoint in the output folder." };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON instead of a markdown table." };
        var tokenizer = new Option<string>("--tokenizer") { Description = "byte (UTF-8 bytes, vocabulary 256) or bpe (byte-level BPE learned from the training text, Microsoft.ML.Tokenizers).", DefaultValueFactory = _ => "byte" };
        var bpeVocab = new Option<int>("--bpe-vocab") { Description = "Vocabulary size of --tokenizer bpe.", DefaultValueFactory = _ => 1024 };
        var command = new Command("pretrain", "Pretrain a LLaMA-style model with AdamW and the low-rank optimizers and compare them.")
        {
            model, optimizers, steps, batch, seqLen, lr, rank, gap, scale, optimBits, blockSize, stochastic, dtype, weightRounding, warmup, clip, accumulation, perLayer, threads, seed, output, data, sweep, factors,
            evalEvery, evalBatches, checkpointEvery, resume, json, tokenizer, bpeVocab, memoryLimit, distributed, shardState, mpiTimeout,
        };
        command.SetAction(r =>
        {
            MpiCommunicator? comm = null;
            try
            {
                if (r.GetValue(shardState) && !r.GetValue(distributed)) throw new UsageException("--shard-state needs --distributed.");
                if (r.GetValue(distributed))
                {
                    // Global-norm clipping needs the whole averaged gradient, which the projected exchange never forms.
                    if (r.GetValue(clip) is > 0)
                        throw new UsageException("--clip cannot be used with --distributed: clipping by the global norm needs the whole averaged gradient, which the projected all-reduce does not form; use --clip 0 (and --clip 0 for a single-process run to compare with).");
                    var seconds = PositiveReal("--mpi-timeout", r.GetValue(mpiTimeout));
                    try { comm = MpiCommunicator.Initialize(TimeSpan.FromSeconds(seconds)); }
                    catch (InvalidOperationException problem) { throw new UsageException($"--distributed: {problem.Message}"); }
                }
                var config = LlamaConfig.Named.TryGetValue(r.GetValue(model)!, out var c) ? c
                    : throw new UsageException($"--model '{r.GetValue(model)}' is unknown; choose from {string.Join(", ", LlamaConfig.Named.Keys)}.");
                var n = Positive("--steps", r.GetValue(steps));
                var t = Positive("--seq-len", r.GetValue(seqLen));
                if (t > config.MaxSequence) throw new UsageException($"--seq-len {t} exceeds the model's maximum sequence length {config.MaxSequence}.");
                var b = Positive("--batch", r.GetValue(batch));
                var micro = Positive("--accumulation", r.GetValue(accumulation));
                if (b % micro != 0) throw new UsageException($"--accumulation {micro} must divide --batch {b} (each batch is split into equal micro-batches).");
                var (modelDType, stochasticWeights) = DTypeAndRounding(r.GetValue(dtype)!, r.GetValue(weightRounding)!);
                var settings = new TrainSettings(config, n, b, t,
                    WarmupSteps: r.GetValue(warmup) is int w ? NonNegative("--warmup", w) : Math.Max(1, n / 10),
                    MinLrRatio: 0.1, ClipNorm: NonNegative("--clip", r.GetValue(clip) ?? (comm is null ? 1.0 : 0.0)), Seed: r.GetValue(seed),
                    EvalEvery: r.GetValue(evalEvery) is int e ? Positive("--eval-every", e) : Math.Max(1, n / 10),
                    EvalBatches: Positive("--eval-batches", r.GetValue(evalBatches)),
                    CheckpointEvery: r.GetValue(checkpointEvery) is int k ? NonNegative("--checkpoint-every", k) : Math.Max(1, n / 5),
                    LowRank: new LowRankSettings(r.GetValue(rank) is int rk ? Positive("--rank", rk) : Math.Max(1, config.Hidden / 4),
                        Positive("--update-proj-gap", r.GetValue(gap)), PositiveReal("--scale", r.GetValue(scale)), OptimBits(r.GetValue(optimBits)),
                        StochasticRounding(r.GetValue(stochastic), r.GetValue(optimBits)), stochasticWeights,
                        BlockSize: MemoryCommand.ParseBlockSize(r.GetValue(blockSize), [r.GetValue(optimBits)])),
                    Accumulation: micro, PerLayer: r.GetValue(perLayer), DType: modelDType);
                var kinds = WithOptimBits(ParseList(r.GetValue(optimizers)!).Select(Wrap(OptimizerCatalog.Parse)).Distinct().ToList(),
                    settings.LowRank.OptimBits, named: r.GetResult(optimizers) is { Implicit: false });
                var lrs = ParseLearningRates(r.GetValue(lr), kinds);
                var grid = r.GetValue(sweep) ? ParseList(r.GetValue(factors)!).Select(f => PositiveReal("--sweep-factors", ParseDouble("--sweep-factors", f))).ToList() : [1.0];
                var vocab = r.GetValue(bpeVocab);
                Func<string, ITokenizer> makeTokenizer = r.GetValue(tokenizer) switch
                {
                    "byte" => _ => new ByteTokenizer(),
                    "bpe" when vocab > 256 => text => ByteLevelBpe.Train(text, vocab),
                    "bpe" => throw new UsageException($"--bpe-vocab must be > 256 (got {vocab})."),
                    var other => throw new UsageException($"--tokenizer '{other}' must be byte or bpe."),
                };
                if (comm is not null && settings.Batch % comm.Size != 0)
                    throw new UsageException($"--batch {settings.Batch} must be a multiple of the number of ranks ({comm.Size}).");
                var limit = r.GetValue(memoryLimit) is string m ? ParseLimit(m) : ProcessMemory.Available();
                // Refuse before the corpus is read and any model is built (vocabulary: 256 bytes, or --bpe-vocab).
                CheckMemory(settings with { Model = settings.Model with { VocabSize = r.GetValue(tokenizer) == "bpe" ? vocab : 256 } },
                    kinds, lrs, limit, r.GetValue(memoryLimit) is not null);
                var threadCount = r.GetValue(threads) is int n1 ? Positive("--threads", n1) : Math.Max(1, NativeEnvironment.AutoThreads() / (comm?.Size ?? 1));
                TorchSharp.torch.set_num_threads(threadCount);
                var dist = comm is null ? null : new DistributedTraining(comm, r.GetValue(shardState));
                return Run(settings, kinds, lrs, grid, r.GetValue(output)!, r.GetValue(data), makeTokenizer, r.GetValue(resume), r.GetValue(json), dist);
            }
            catch (Exception e) when (e is UsageException or FileNotFoundException or DirectoryNotFoundException)
            {
                if (comm is null || comm.Rank == 0)
                {
                    Console.Error.WriteLine($"pretrain: {e.Message}");
                    Console.Error.WriteLine("Run 'pretrain --help' for the options.");
                }
                return 2;
            }
            finally
            {
                comm?.Dispose();
            }
        });
        return command;
    }

    private static int Run(TrainSettings s, List<OptimizerKind> kinds, Dictionary<OptimizerKind, double> lrs, List<double> grid, string output, string? dataPath,
        Func<string, ITokenizer> makeTokenizer, bool resume, bool json, DistributedTraining? distributed)
    {
        // With --distributed every rank runs the same jobs in the same order; only rank 0 prints and writes.
        var writer = distributed is null || distributed.Communicator.Rank == 0;
        var log = !writer ? TextWriter.Null : json ? Console.Error : Console.Out;
        var text = Corpus.Load(dataPath, out var source);
        var tokenizer = makeTokenizer(text);
        var dataset = new TokenDataset(tokenizer.Encode(text));
        log.WriteLine($"corpus: {source}; {dataset.TrainTokens:N0} training and {dataset.ValidationTokens:N0} validation tokens ({tokenizer.GetType().Name}, vocabulary {tokenizer.VocabSize})");
        log.WriteLine($"model: llama-{s.Model.Name} (hidden {s.Model.Hidden}, intermediate {s.Model.Intermediate}, heads {s.Model.Heads}, layers {s.Model.Layers}, vocab {tokenizer.VocabSize}); " +
                      $"{s.Steps} steps × {s.Batch} × {s.Sequence} tokens; rank {s.LowRank.Rank}, T {s.LowRank.UpdateProjGap}, α {s.LowRank.Scale}" +
                      (s.LowRank.OptimBits == 32 ? "" : $"; moments in {s.LowRank.OptimBits} bits ({MomentStorage.FromOptimBits(s.LowRank.OptimBits, blockSize: s.LowRank.BlockSize)}), adamw as LowRank.AdamW") +
                      (s.DType == TorchSharp.torch.ScalarType.Float32 ? "" : $"; {s.DType} weights rounded {(s.LowRank.StochasticWeights ? "stochastically" : "to nearest")}") +
                      (s.Accumulation > 1 ? $"; {s.Accumulation} micro-batches of {s.Batch / s.Accumulation} per step" : "") +
                      (s.PerLayer ? "; per-layer mode (gradients released during backward)" : ""));
        log.WriteLine(MachineInfo.Describe());
        if (distributed is not null)
            log.WriteLine($"data parallel: {distributed.Communicator.Size} ranks × {s.Batch / distributed.Communicator.Size} sequences per step" +
                          $"{(distributed.ShardState ? ", optimizer state sharded" : "")}; no gradient clipping" +
                          (distributed.Communicator.Size > 1 && Environment.ProcessorCount <= distributed.Communicator.Size * 2 ? " (ranks sharing a few cores: a correctness run, not a speed measurement)" : ""));
        var settings = s with { Model = s.Model with { VocabSize = tokenizer.VocabSize } };
        if (writer) Directory.CreateDirectory(output);

        // Compressed runs get their own names (and so folders): a resume never mixes storages, and the tables tell them apart.
        var bits = (s.LowRank.OptimBits == 32 ? "" : $"-{s.LowRank.OptimBits}bit") + (s.LowRank.BlockSize == 0 ? "" : $"-b{s.LowRank.BlockSize}") + (s.LowRank.StochasticRounding ? "-sr" : "") +
            (s.DType == TorchSharp.torch.ScalarType.Float32 ? "" : s.LowRank.StochasticWeights ? "-bf16sr" : "-bf16");
        var jobs = kinds.SelectMany(k => grid.Select(f => (Kind: k, Lr: lrs[k] * f,
            Name: grid.Count == 1 ? k.CliName() + bits : string.Create(CultureInfo.InvariantCulture, $"{k.CliName()}{bits}-lr{lrs[k] * f:G3}")))).ToList();
        var results = new List<RunResult>();
        // Ctrl-C: the current run saves a checkpoint and stops, the progress display ends (restoring the cursor),
        // and --resume continues later. A second Ctrl-C ends the process at once, cursor restored.
        using var interrupt = new CancellationTokenSource();
        var interactive = writer && distributed is null && !json && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (interactive) Console.Out.Write("\u001b[?25h"); // show the cursor, whatever happens next
            if (interrupt.IsCancellationRequested) return;   // second Ctrl-C: let the process end
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            if (interactive)
            {
                AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        foreach (var job in jobs)
                        {
                            var task = ctx.AddTask(job.Name, maxValue: settings.Steps);
                            results.Add(Trainer.Run(job.Name, job.Kind, job.Lr, settings, dataset, Path.Combine(output, job.Name), resume, p =>
                            {
                                task.Value = p.Step;
                                task.Description = string.Create(CultureInfo.InvariantCulture, $"{job.Name,-24} step {p.Step,5}  loss {p.Loss:F3}  {p.TokensPerSecond,7:F0} tok/s");
                            }, distributed, interrupt.Token));
                        }
                    });
            }
            else
            {
                foreach (var job in jobs)
                {
                    var every = Math.Max(1, settings.Steps / 10);
                    results.Add(Trainer.Run(job.Name, job.Kind, job.Lr, settings, dataset, Path.Combine(output, job.Name), resume, p =>
                    {
                        if (p.Step % every == 0 || p.Step == p.Steps)
                            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{job.Name}: step {p.Step}/{p.Steps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s"));
                    }, distributed, interrupt.Token));
                }
            }
        }
        catch (TrainingInterruptedException e)
        {
            Console.Error.WriteLine($"pretrain: interrupted: {e.Message} Continue with the same command and --resume.");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            if (interactive) AnsiConsole.Cursor.Show(true);
        }
        if (!writer) return 0;

        var best = results.GroupBy(r => r.Optimizer).Select(g => g.MinBy(r => r.ValidationLoss)!).ToList();
        var baseline = best.FirstOrDefault(r => r.Optimizer == OptimizerKind.AdamW.CliName());
        var table = Reports.Markdown(best, baseline);
        var all = grid.Count > 1 ? Reports.Markdown(results, baseline) : null;
        File.WriteAllText(Path.Combine(output, "summary.md"), table + (all is null ? "" : "\nAll runs of the sweep:\n\n" + all));
        Reports.WriteCsv(Path.Combine(output, "summary.csv"), results);
        var summaryJson = Reports.Json(results, new { model = settings.Model, settings.Steps, settings.Batch, settings.Sequence, settings.Seed, settings.LowRank, dtype = settings.DType.ToString(), corpus = source, machine = MachineInfo.Describe() });
        File.WriteAllText(Path.Combine(output, "summary.json"), summaryJson);
        Reports.WritePlot(Path.Combine(output, "loss.png"), best);
        if (grid.Count > 1) Reports.WritePlot(Path.Combine(output, "loss-all.png"), results);
        if (json) Console.WriteLine(summaryJson);
        else
        {
            Console.WriteLine();
            Console.WriteLine(grid.Count > 1 ? "Best learning rate of each optimizer:" : "Results:");
            Console.WriteLine(table);
            if (all is not null) Console.WriteLine("All runs:\n" + all);
            Console.WriteLine($"CSV per run, summary.md/.csv/.json and loss.png (best run of each optimizer) in {Path.GetFullPath(output)}");
        }
        return 0;
    }

    private static long ParseLimit(string text)
    {
        try { return MemoryCommand.ParseBytes(text); }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException) { throw new UsageException($"--memory-limit '{text}' is not a size (e.g. 24GiB, 512MiB, bytes)."); }
    }

    /// <summary>
    /// Refuses a comparison whose largest run cannot fit: the planner's weights + gradients + optimizer state
    /// (in the run's dtype, activations not included, so the real need is higher) against the memory limit.
    /// </summary>
    internal static void CheckMemory(TrainSettings s, List<OptimizerKind> kinds, Dictionary<OptimizerKind, double> lrs, long limit, bool explicitLimit)
    {
        var shapes = s.Model.ParameterShapes().ToList();
        var plans = kinds.Select(k => (Kind: k, Plan: MemoryPlanner.Plan(shapes, s.DType, OptimizerCatalog.OptionsOf(k, lrs[k], s.LowRank, s.Model)))).ToList();
        var largest = plans.MaxBy(p => p.Plan.TotalBytes);
        if (largest.Plan.TotalBytes <= limit) return;
        var c = CultureInfo.InvariantCulture;
        var lines = string.Join("\n", plans.Select(p => string.Create(c,
            $"  {p.Kind.CliName(),-17} weights {Reports.Bytes(p.Plan.WeightBytes),10} + gradients {Reports.Bytes(p.Plan.GradientBytes),10} + optimizer state {Reports.Bytes(p.Plan.StateBytes),10} = {Reports.Bytes(p.Plan.TotalBytes),10}{(p.Plan.TotalBytes > limit ? "  does not fit" : "")}")));
        var parameters = shapes.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b));
        throw new UsageException(string.Create(c,
            $"--model {s.Model.Name} ({parameters / 1e6:F0} M parameters, {s.DType.ToString().ToLowerInvariant()}) does not fit in {Reports.Bytes(limit)} ({(explicitLimit ? "--memory-limit" : "the memory available now")}): the memory planner needs at least\n{lines}\n" +
            $"before activations (batch {s.Batch} × {s.Sequence} tokens). Choose a smaller --model, fewer --optimizers, or see `memory --model {s.Model.Name} --budget <size>` for the rank that fits; --memory-limit overrides the limit."));
    }

    /// <summary>--dtype and --weight-rounding: float32 or bfloat16; stochastic rounding of the weights only for bfloat16 (float32 weights are not rounded).</summary>
    internal static (TorchSharp.torch.ScalarType DType, bool StochasticWeights) DTypeAndRounding(string dtype, string rounding)
    {
        var type = dtype.Trim().ToLowerInvariant() switch
        {
            "float32" or "fp32" => TorchSharp.torch.ScalarType.Float32,
            "bfloat16" or "bf16" => TorchSharp.torch.ScalarType.BFloat16,
            _ => throw new UsageException($"--dtype '{dtype}' must be float32 or bfloat16."),
        };
        var stochastic = rounding.Trim().ToLowerInvariant() switch
        {
            "nearest" => false,
            "stochastic" => true,
            _ => throw new UsageException($"--weight-rounding '{rounding}' must be nearest or stochastic."),
        };
        if (stochastic && type != TorchSharp.torch.ScalarType.BFloat16)
            throw new UsageException("--weight-rounding stochastic needs --dtype bfloat16: float32 weights are not rounded (their updates are not lost).");
        return (type, stochastic);
    }

    /// <summary>--stochastic-rounding: only for compressed moments (dense moments are not rounded).</summary>
    private static bool StochasticRounding(bool stochastic, int bits) =>
        !stochastic || bits != 32 ? stochastic : throw new UsageException("--stochastic-rounding needs --optim-bits 16, 8 or 4: dense moments are not rounded.");

    /// <summary>--optim-bits: one of bitsandbytes' values.</summary>
    private static int OptimBits(int bits)
    {
        try { return MomentStorage.FromOptimBits(bits).OptimBits; }
        catch (ArgumentOutOfRangeException) { throw new UsageException($"--optim-bits {bits} must be 32 (dense), 16 (bfloat16), 8 or 4 (block-wise)."); }
    }

    /// <summary>
    /// The optimizers that can store their moments in <paramref name="bits"/> bits: one the user <paramref name="named"/>
    /// that cannot (SMMF) is refused; from the default list it is skipped with a note.
    /// </summary>
    internal static List<OptimizerKind> WithOptimBits(List<OptimizerKind> kinds, int bits, bool named)
    {
        var unsupported = kinds.Where(k => !OptimizerCatalog.SupportsOptimBits(k, bits)).ToList();
        if (unsupported.Count == 0) return kinds;
        var names = string.Join(", ", unsupported.Select(k => k.CliName()));
        if (named)
            throw new UsageException($"--optim-bits {bits}: {names} cannot store its moments in {bits} bits (SMMF's factored moments are already compressed: there is no dense moment to quantize); " +
                                     "leave it out of --optimizers or use --optim-bits 32.");
        Console.Error.WriteLine($"note: --optim-bits {bits}: skipping {names} (no moments to store in {bits} bits; run it with --optim-bits 32).");
        var supported = kinds.Except(unsupported).ToList();
        return supported.Count > 0 ? supported : throw new UsageException($"--optim-bits {bits}: none of the optimizers can store its moments in {bits} bits.");
    }

    private static Dictionary<OptimizerKind, double> ParseLearningRates(string? spec, List<OptimizerKind> kinds)
    {
        var result = kinds.ToDictionary(k => k, OptimizerCatalog.DefaultLearningRate);
        foreach (var item in ParseList(spec ?? ""))
        {
            var parts = item.Split('=', 2);
            if (parts.Length != 2) throw new UsageException($"--lr item '{item}' must look like optimizer=value.");
            var kind = Wrap(OptimizerCatalog.Parse)(parts[0]);
            result[kind] = PositiveReal("--lr", ParseDouble("--lr", parts[1]));
        }
        return result;
    }

    private static List<string> ParseList(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    private static Func<string, T> Wrap<T>(Func<string, T> parse) => s =>
    {
        try { return parse(s); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    };

    private static double ParseDouble(string option, string s) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException($"{option}: '{s}' is not a number.");

    private static int Positive(string option, int v) => v >= 1 ? v : throw new UsageException($"{option} must be >= 1 (got {v}).");
    private static int NonNegative(string option, int v) => v >= 0 ? v : throw new UsageException($"{option} must be >= 0 (got {v}).");
    private static double NonNegative(string option, double v) => v >= 0 ? v : throw new UsageException($"{option} must be >= 0 (got {v}).");
    private static double PositiveReal(string option, double v) => v > 0 && double.IsFinite(v) ? v : throw new UsageException($"{option} must be a finite number > 0 (got {v}).");
}

/// <summary>A command-line value that breaks a constraint: reported with usage and exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
