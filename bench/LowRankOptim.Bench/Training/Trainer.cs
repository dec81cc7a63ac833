using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Training;

/// <summary>Data-parallel execution of a run: the ranks and whether the optimizer state is sharded.</summary>
public sealed record DistributedTraining(ICommunicator Communicator, bool ShardState);

/// <summary>What a run reports as it goes.</summary>
public readonly record struct TrainingProgress(int Step, int Steps, double Loss, double TokensPerSecond);

/// <summary>
/// Trains one model with one optimizer: same initialization (seed), same data order (batches seeded by step),
/// warm-up + cosine schedule through TorchSharp's LambdaLR, gradient clipping, gradient accumulation over
/// micro-batches, the per-layer mode (<see cref="LowRankOptimizer.ReleaseGradientsDuringBackward"/>), periodic
/// validation, checkpoints, resume. Writes train.csv (step, train_loss, lr, elapsed_s) and validation.csv in its folder.
/// </summary>
public static class Trainer
{
    private const string CheckpointFolder = "checkpoint";

    /// <summary>
    /// Runs (or with <paramref name="resume"/> continues) one training run. When <paramref name="cancel"/> fires, the
    /// run saves a checkpoint at the step it reached and throws <see cref="TrainingInterruptedException"/>. With
    /// <paramref name="distributed"/>, every rank calls this with the same arguments: each takes its slice of every
    /// global batch (rank r: sequences r·B/N … (r+1)·B/N − 1 of the same batch the single process draws), the optimizer
    /// averages what its methods declare, and only rank 0 writes files and reports progress.
    /// </summary>
    public static RunResult Run(string name, OptimizerKind kind, double lr, TrainSettings s, TokenDataset data, string runDir, bool resume,
        Action<TrainingProgress>? progress = null, DistributedTraining? distributed = null, CancellationToken cancel = default)
    {
        var comm = distributed?.Communicator;
        var writer = comm is null || comm.Rank == 0;
        if (comm is not null && s.ClipNorm > 0)
            throw new ArgumentException("gradient clipping by the global norm needs the whole averaged gradient, which the data-parallel step does not form: use ClipNorm 0.");
        if (comm is not null && s.Batch % comm.Size != 0)
            throw new ArgumentException($"the batch ({s.Batch}) must be a multiple of the number of ranks ({comm.Size}): each rank takes an equal slice.");
        if (writer) Directory.CreateDirectory(runDir);
        using var model = new LlamaModel(s.Model, s.Seed, s.DType);
        if (s.Accumulation < 1 || s.Batch % s.Accumulation != 0)
            throw new ArgumentException($"the batch of {s.Batch} sequences cannot be split into {s.Accumulation} equal micro-batches.", nameof(s));
        // AdamW is TorchSharp's in one process and LowRankOptimizer's equivalent when distributed; a checkpoint says which wrote it.
        var written = resume && writer ? ReadMeta(Path.Combine(runDir, CheckpointFolder))?.OptimizerType : null;
        if (comm is not null && written is not null && written != nameof(LowRankOptimizer))
            throw new InvalidOperationException($"{runDir} holds a checkpoint of TorchSharp's {written}; a distributed run uses LowRankOptimizer's equivalent and cannot resume it.");
        // A bfloat16 model's AdamW baseline is LowRank.AdamW too: the same bf16 moments as TorchSharp's, and the weight rounding of the other runs.
        using var optimizer = OptimizerCatalog.Create(kind, model, lr, s.LowRank,
            lowRankOnly: s.PerLayer || comm is not null || written == nameof(LowRankOptimizer) || s.DType != ScalarType.Float32);
        var dp = comm is null ? null : ((LowRankOptimizer)optimizer).Distribute(comm, distributed!.ShardState);
        var schedule = optim.lr_scheduler.LambdaLR(optimizer, s.LearningRateFactor);

        var train = new List<(int Step, double Loss, double Lr, double Elapsed)>();
        var validation = new List<(int Step, double Loss)>();
        var start = 0;
        var elapsedBefore = 0.0;
        var checkpoint = Path.Combine(runDir, CheckpointFolder);
        // Rank 0 decides whether to resume (the others may not see its folder) and tells them.
        var resumeFrom = writer && resume && File.Exists(Path.Combine(checkpoint, "meta.json"));
        if (dp is not null) resumeFrom = Agree(comm!, resumeFrom ? 1 : 0) == 1;
        if (resumeFrom)
        {
            CheckpointMeta? meta = writer ? JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(checkpoint, "meta.json")))! : null;
            if (meta is not null && meta.Optimizer != kind.CliName())
                throw new InvalidOperationException($"{checkpoint} holds a {meta.Optimizer} run, not {kind.CliName()}.");
            start = dp is null ? meta!.Step : (int)Agree(comm!, meta?.Step ?? 0);
            elapsedBefore = meta?.ElapsedSeconds ?? 0;
            if (writer) model.load(Path.Combine(checkpoint, "model.bin"));
            if (meta is not null && dp is not null && meta.WorldSize != comm!.Size)
                Console.Error.WriteLine($"note: {checkpoint} was written by {meta.WorldSize} rank(s); resuming on {comm.Size}: the global batch and the gathered optimizer state are the same for any rank count.");
            for (var i = 0; i < start; i++) schedule.step(); // TorchSharp schedulers have no state: replay, then load
            if (dp is not null)
            {
                dp.BroadcastParameters();
                dp.LoadStateDict(Path.Combine(checkpoint, "optimizer.bin"));
            }
            else
            {
                LoadOptimizer(optimizer, Path.Combine(checkpoint, "optimizer.bin"));
            }
            if (writer)
            {
                train.AddRange(ReadTrainCsv(Path.Combine(runDir, "train.csv")).Where(r => r.Step <= start));
                validation.AddRange(ReadValidationCsv(Path.Combine(runDir, "validation.csv")).Where(r => r.Step <= start));
            }
        }

        // The mode is execution policy: started after a resume's load, never saved; the loop below is the standard one.
        using var release = s.PerLayer
            ? ((LowRankOptimizer)optimizer).ReleaseGradientsDuringBackward(model, accumulation_steps: s.Accumulation, max_grad_norm: s.ClipNorm > 0 ? s.ClipNorm : null)
            : null;
        long peakGradients = 0;
        var tokensPerStep = (double)s.Batch * s.Sequence;
        var clock = Stopwatch.StartNew();
        for (var step = start + 1; step <= s.Steps; step++)
        {
            if (cancel.IsCancellationRequested)
            {
                clock.Stop();
                SaveCheckpoint(checkpoint, model, optimizer, new CheckpointMeta(kind.CliName(), step - 1, elapsedBefore + clock.Elapsed.TotalSeconds, comm?.Size ?? 1, optimizer.GetType().Name), dp);
                WriteCsv(runDir, train, validation);
                throw new TrainingInterruptedException($"run {name} stopped after step {step - 1} of {s.Steps}; its checkpoint is in {checkpoint}.");
            }
            double loss;
            var currentLr = optimizer.ParamGroups.First().LearningRate;
            using (var scope = NewDisposeScope())
            {
                var batch = data.TrainBatch(s.Seed, step, s.Batch, s.Sequence);
                if (comm is not null) batch = batch.narrow(0, comm.Rank * (s.Batch / comm.Size), s.Batch / comm.Size);
                loss = 0;
                var accumulation = s.Accumulation;
                var micro = batch.shape[0] / accumulation;
                for (var i = 0; i < accumulation; i++)
                {
                    using var microScope = NewDisposeScope();
                    var l = model.Loss(accumulation == 1 ? batch : batch.narrow(0, i * micro, micro));
                    (accumulation == 1 ? l : l.div(accumulation)).backward();
                    loss += l.item<float>() / accumulation;
                }
                // The per-layer mode clips itself (max_grad_norm): its gradients are gone from .grad by now.
                if (s.ClipNorm > 0 && !s.PerLayer) nn.utils.clip_grad_norm_(model.parameters(), s.ClipNorm);
                optimizer.step();
                model.zero_grad();
                if (comm is not null) loss = Mean(comm, loss); // the global batch's loss: the mean of the ranks' means
            }
            if (optimizer is LowRankOptimizer lowRank) peakGradients = Math.Max(peakGradients, lowRank.PeakGradientBytes);
            schedule.step();
            var elapsed = elapsedBefore + clock.Elapsed.TotalSeconds;
            train.Add((step, loss, currentLr, elapsed));
            if (writer && (step % s.EvalEvery == 0 || step == s.Steps))
            {
                clock.Stop();
                validation.Add((step, Evaluate(model, data, s))); // the weights are the same on every rank
                clock.Start();
            }
            if (s.CheckpointEvery > 0 && (step % s.CheckpointEvery == 0 || step == s.Steps))
            {
                clock.Stop();
                SaveCheckpoint(checkpoint, model, optimizer, new CheckpointMeta(kind.CliName(), step, elapsedBefore + clock.Elapsed.TotalSeconds, comm?.Size ?? 1, optimizer.GetType().Name), dp);
                if (writer) WriteCsv(runDir, train, validation);
                clock.Start();
            }
            if (writer) progress?.Invoke(new TrainingProgress(step, s.Steps, loss, (step - start) * tokensPerStep / clock.Elapsed.TotalSeconds));
        }
        clock.Stop();
        if (writer) WriteCsv(runDir, train, validation);
        var perRank = dp?.StateBytesPerRank();
        if (writer && dp is not null)
            Console.Error.WriteLine($"{name}: {comm!.Size} ranks{(dp.ShardsState ? ", sharded state" : "")}; optimizer-state bytes per rank [{string.Join(", ", perRank!)}]; " +
                                    $"per rank and step: {dp.Traffic.AllReduced / Math.Max(1, dp.Traffic.Steps)} B all-reduced; {dp.Traffic}");

        var tail = Math.Max(1, train.Count / 20);
        var trainedSteps = s.Steps - start;
        return new RunResult(
            name, kind.CliName(), lr, s.Steps,
            FinalTrainLoss: train.TakeLast(tail).Average(r => r.Loss),
            ValidationLoss: validation.Count > 0 ? validation[^1].Loss : double.NaN,
            TokensPerSecond: trainedSteps > 0 ? trainedSteps * tokensPerStep / clock.Elapsed.TotalSeconds : 0,
            OptimizerStateBytes: perRank?.Max() ?? OptimizerCatalog.StateBytes(optimizer, model), // the most one rank holds
            TrainCurve: train.Select(r => (r.Step, r.Loss)).ToList(),
            ValidationCurve: validation,
            PeakGradientBytes: peakGradients,
            OptimBits: s.LowRank.OptimBits);
    }

    /// <summary>Mean validation loss over the fixed validation batches.</summary>
    public static double Evaluate(LlamaModel model, TokenDataset data, TrainSettings s)
    {
        using var _ = no_grad();
        var losses = new List<double>();
        foreach (var batch in data.ValidationBatches(s.EvalBatches, s.Batch, s.Sequence))
        {
            using var scope = NewDisposeScope();
            losses.Add(model.Loss(batch).item<float>());
            batch.Dispose();
        }
        return losses.Count > 0 ? losses.Average() : double.NaN;
    }

    private static void LoadOptimizer(optim.Optimizer optimizer, string path)
    {
        if (optimizer is LowRankOptimizer ours) ours.load_state_dict(path);
        else ((OptimizerHelper)optimizer).load_state_dict(path);
    }

    /// <summary>Data parallel: every rank calls it; rank 0 writes the gathered optimizer state (one file for any rank count) and the rest.</summary>
    private static void SaveCheckpoint(string dir, LlamaModel model, optim.Optimizer optimizer, CheckpointMeta meta, DataParallel? dp)
    {
        var writer = dp is null || dp.Rank == 0;
        if (writer) Directory.CreateDirectory(dir);
        // Write to temporary names, then move: a crash mid-save never leaves a half-written checkpoint.
        if (dp is null) ((OptimizerHelper)optimizer).save_state_dict(Path.Combine(dir, "optimizer.bin.tmp"));
        else dp.SaveStateDict(Path.Combine(dir, "optimizer.bin.tmp"));
        if (!writer) return;
        model.save(Path.Combine(dir, "model.bin.tmp"));
        File.WriteAllText(Path.Combine(dir, "meta.json.tmp"), JsonSerializer.Serialize(meta));
        foreach (var f in new[] { "model.bin", "optimizer.bin", "meta.json" })
            File.Move(Path.Combine(dir, f + ".tmp"), Path.Combine(dir, f), overwrite: true);
    }

    /// <summary>Rank 0's <paramref name="value"/> on every rank.</summary>
    private static long Agree(ICommunicator comm, long value)
    {
        using var t = tensor(new[] { value });
        comm.Broadcast([t], 0);
        return t.item<long>();
    }

    /// <summary>The mean over ranks of <paramref name="value"/>.</summary>
    private static double Mean(ICommunicator comm, double value)
    {
        using var t = tensor(new[] { value });
        comm.AllReduceSum([t]);
        return t.item<double>() / comm.Size;
    }

    /// <summary>What a checkpoint folder's meta.json holds; <paramref name="WorldSize"/> is informational (the files are the same for any rank count).</summary>
    private sealed record CheckpointMeta(string Optimizer, int Step, double ElapsedSeconds, int WorldSize = 1, string? OptimizerType = null);

    private static CheckpointMeta? ReadMeta(string dir) =>
        File.Exists(Path.Combine(dir, "meta.json")) ? JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(dir, "meta.json"))) : null;

    private static void WriteCsv(string dir, List<(int Step, double Loss, double Lr, double Elapsed)> train, List<(int Step, double Loss)> validation)
    {
        var c = CultureInfo.InvariantCulture;
        File.WriteAllLines(Path.Combine(dir, "train.csv"),
            new[] { "step,train_loss,lr,elapsed_s" }.Concat(train.Select(r => string.Create(c, $"{r.Step},{r.Loss:R},{r.Lr:R},{r.Elapsed:F3}"))));
        File.WriteAllLines(Path.Combine(dir, "validation.csv"),
            new[] { "step,val_loss" }.Concat(validation.Select(r => string.Create(c, $"{r.Step},{r.Loss:R}"))));
    }

    private static IEnumerable<(int Step, double Loss, double Lr, double Elapsed)> ReadTrainCsv(string path) =>
        File.Exists(path)
            ? File.ReadLines(path).Skip(1).Select(l => l.Split(',')).Select(f => (int.Parse(f[0], CultureInfo.InvariantCulture),
                double.Parse(f[1], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture)))
            : [];

    private static IEnumerable<(int Step, double Loss)> ReadValidationCsv(string path) =>
        File.Exists(path)
            ? File.ReadLines(path).Skip(1).Select(l => l.Split(',')).Select(f => (int.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1], CultureInfo.InvariantCulture)))
            : [];
}

/// <summary>A run stopped on request (Ctrl-C) after saving a checkpoint; <c>--resume</c> continues it.</summary>
public sealed class TrainingInterruptedException(string message) : Exception(message);
