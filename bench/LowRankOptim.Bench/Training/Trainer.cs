using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Training;

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

    public static RunResult Run(string name, OptimizerKind kind, double lr, TrainSettings s, TokenDataset data, string runDir, bool resume, Action<TrainingProgress>? progress = null)
    {
        Directory.CreateDirectory(runDir);
        using var model = new LlamaModel(s.Model, s.Seed);
        if (s.Accumulation < 1 || s.Batch % s.Accumulation != 0)
            throw new ArgumentException($"the batch of {s.Batch} sequences cannot be split into {s.Accumulation} equal micro-batches.", nameof(s));
        // The per-layer mode is LowRankOptim's: the AdamW baseline then runs as LowRank.AdamW (equal to TorchSharp's).
        using var optimizer = OptimizerCatalog.Create(kind, model, lr, s.LowRank, lowRankOnly: s.PerLayer);
        var schedule = optim.lr_scheduler.LambdaLR(optimizer, s.LearningRateFactor);

        var train = new List<(int Step, double Loss, double Lr, double Elapsed)>();
        var validation = new List<(int Step, double Loss)>();
        var start = 0;
        var elapsedBefore = 0.0;
        var checkpoint = Path.Combine(runDir, CheckpointFolder);
        if (resume && File.Exists(Path.Combine(checkpoint, "meta.json")))
        {
            var meta = JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(checkpoint, "meta.json")))!;
            if (meta.Optimizer != kind.CliName())
                throw new InvalidOperationException($"{checkpoint} holds a {meta.Optimizer} run, not {kind.CliName()}.");
            start = meta.Step;
            elapsedBefore = meta.ElapsedSeconds;
            model.load(Path.Combine(checkpoint, "model.bin"));
            for (var i = 0; i < start; i++) schedule.step(); // TorchSharp schedulers have no state: replay, then load
            LoadOptimizer(optimizer, Path.Combine(checkpoint, "optimizer.bin"));
            train.AddRange(ReadTrainCsv(Path.Combine(runDir, "train.csv")).Where(r => r.Step <= start));
            validation.AddRange(ReadValidationCsv(Path.Combine(runDir, "validation.csv")).Where(r => r.Step <= start));
        }

        // The mode is execution policy: started after a resume's load, never saved; the loop below is the standard one.
        using var release = s.PerLayer
            ? ((LowRankOptimizer)optimizer).ReleaseGradientsDuringBackward(model, accumulation_steps: s.Accumulation, max_grad_norm: s.ClipNorm > 0 ? s.ClipNorm : null)
            : null;
        long peakGradients = 0;
        ProcessMemory.ResetPeak();
        var tokensPerStep = (double)s.Batch * s.Sequence;
        var clock = Stopwatch.StartNew();
        for (var step = start + 1; step <= s.Steps; step++)
        {
            double loss;
            var currentLr = optimizer.ParamGroups.First().LearningRate;
            using (var scope = NewDisposeScope())
            {
                var batch = data.TrainBatch(s.Seed, step, s.Batch, s.Sequence);
                loss = 0;
                var micro = s.Batch / s.Accumulation;
                for (var i = 0; i < s.Accumulation; i++)
                {
                    using var microScope = NewDisposeScope();
                    var l = model.Loss(s.Accumulation == 1 ? batch : batch.narrow(0, i * micro, micro));
                    (s.Accumulation == 1 ? l : l.div(s.Accumulation)).backward();
                    loss += l.item<float>() / s.Accumulation;
                }
                // The per-layer mode clips itself (max_grad_norm): its gradients are gone from .grad by now.
                if (s.ClipNorm > 0 && !s.PerLayer) nn.utils.clip_grad_norm_(model.parameters(), s.ClipNorm);
                optimizer.step();
                model.zero_grad();
            }
            if (optimizer is LowRankOptimizer lowRank) peakGradients = Math.Max(peakGradients, lowRank.PeakGradientBytes);
            schedule.step();
            var elapsed = elapsedBefore + clock.Elapsed.TotalSeconds;
            train.Add((step, loss, currentLr, elapsed));
            if (step % s.EvalEvery == 0 || step == s.Steps)
            {
                clock.Stop();
                validation.Add((step, Evaluate(model, data, s)));
                clock.Start();
            }
            if (s.CheckpointEvery > 0 && (step % s.CheckpointEvery == 0 || step == s.Steps))
            {
                clock.Stop();
                SaveCheckpoint(checkpoint, model, optimizer, new CheckpointMeta(kind.CliName(), step, elapsedBefore + clock.Elapsed.TotalSeconds));
                WriteCsv(runDir, train, validation);
                clock.Start();
            }
            progress?.Invoke(new TrainingProgress(step, s.Steps, loss, (step - start) * tokensPerStep / clock.Elapsed.TotalSeconds));
        }
        clock.Stop();
        WriteCsv(runDir, train, validation);

        var tail = Math.Max(1, train.Count / 20);
        var trainedSteps = s.Steps - start;
        return new RunResult(
            name, kind.CliName(), lr, s.Steps,
            FinalTrainLoss: train.TakeLast(tail).Average(r => r.Loss),
            ValidationLoss: validation.Count > 0 ? validation[^1].Loss : double.NaN,
            TokensPerSecond: trainedSteps > 0 ? trainedSteps * tokensPerStep / clock.Elapsed.TotalSeconds : 0,
            OptimizerStateBytes: OptimizerCatalog.StateBytes(optimizer, model),
            PeakRssBytes: ProcessMemory.PeakRss(),
            TrainCurve: train.Select(r => (r.Step, r.Loss)).ToList(),
            ValidationCurve: validation,
            PeakGradientBytes: peakGradients);
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

    private static void SaveCheckpoint(string dir, LlamaModel model, optim.Optimizer optimizer, CheckpointMeta meta)
    {
        Directory.CreateDirectory(dir);
        // Write to temporary names, then move: a crash mid-save never leaves a half-written checkpoint.
        model.save(Path.Combine(dir, "model.bin.tmp"));
        ((OptimizerHelper)optimizer).save_state_dict(Path.Combine(dir, "optimizer.bin.tmp"));
        File.WriteAllText(Path.Combine(dir, "meta.json.tmp"), JsonSerializer.Serialize(meta));
        foreach (var f in new[] { "model.bin", "optimizer.bin", "meta.json" })
            File.Move(Path.Combine(dir, f + ".tmp"), Path.Combine(dir, f), overwrite: true);
    }

    private sealed record CheckpointMeta(string Optimizer, int Step, double ElapsedSeconds);

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
