using System.Diagnostics;
using System.Text.Json;
using LowRankOptim.Bench.Data;
using LowRankOptim.Bench.Model;
using LowRankOptim.Bench.Support;
using LowRankOptim.Bench.Training;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Measure;

/// <summary>What one child process trains: a named configuration, a recipe, the data and the memory it may use.</summary>
public sealed record MeasureSpec(string Model, OptimizerKind Kind, ScalarType DType, int OptimBits, bool PerLayer, bool IsSmallest,
    int Rank, int Steps, int Batch, int Sequence, double LearningRate, int Threads, long Seed, long Budget)
{
    /// <summary>The recipe.</summary>
    public MemoryRecipe Recipe => new(Kind, DType, OptimBits, PerLayer, IsSmallest);
}

/// <summary>One training step as measured: loss, phase times, resident memory after it.</summary>
public sealed record MeasuredStep(int Step, double Loss, double ForwardSeconds, double BackwardSeconds, double StepSeconds, long ResidentBytes);

/// <summary>
/// The outcome of one child process: its baseline, its peak RSS (VmHWM), the prediction and the steps; or
/// <see cref="Refusal"/> when the planner refused the run before the model was built.
/// </summary>
public sealed record MeasureResult(MeasureSpec Spec, long BaselineBytes, PeakPrediction Prediction, long PredictedPeakBytes, long? PeakResidentBytes,
    long? OptimizerStateBytes, double BuildSeconds, IReadOnlyList<MeasuredStep> Steps, string? Refusal)
{
    /// <summary>Predicted / measured peak, or null for a refused run.</summary>
    public double? Ratio => PeakResidentBytes is long peak && peak > 0 ? PredictedPeakBytes / (double)peak : null;
}

/// <summary>
/// The child side of <c>memory --measure</c>: one process per row, so peaks do not mix. It loads libtorch and the
/// default corpus (byte tokens: ids below 256, so every configuration's vocabulary takes them), measures that baseline,
/// asks the planner for the peak and refuses before allocating when it exceeds the budget; otherwise it builds the
/// model directly in its dtype, trains the steps and reports the process's peak resident set.
/// </summary>
public static class MeasuredRun
{
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    /// <summary>Runs <paramref name="spec"/> in this process; progress lines go to stderr.</summary>
    public static MeasureResult Run(MeasureSpec spec)
    {
        set_num_threads(spec.Threads);
        var config = LlamaConfig.Named[spec.Model];
        var dataset = new TokenDataset(new ByteTokenizer().Encode(Corpus.Load(null, out _)));
        // The baseline is the process once its machinery is warm: a throwaway one-layer model trained eight steps by the
        // same recipe loads libtorch's kernels and thread pools and compiles the training code, none of which scales with the model.
        Train(WarmUp, spec, dataset, steps: 8, sequence: 32, report: false);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        ProcessMemory.ReturnFreedMemory();
        var baseline = ProcessMemory.Resident() ?? 0;
        // The peak is the training's: reading the corpus has a transient of its own (XML parsing) that does not scale with the model.
        if (!ProcessMemory.ResetPeak()) Console.Error.WriteLine("  note: /proc/self/clear_refs is not writable; the peak includes reading the corpus");
        var prediction = PeakMemoryModel.Predict(config, spec.Recipe, spec.Rank, spec.Batch, spec.Sequence);
        var predicted = prediction.Total(baseline);
        if (predicted > spec.Budget)
            return new MeasureResult(spec, baseline, prediction, predicted, null, null, 0, [],
                $"the planner predicts a peak of {Reports.Bytes(predicted)} (baseline {Reports.Bytes(baseline)} + weights {Reports.Bytes(prediction.Weights)} + gradients {Reports.Bytes(prediction.Gradients)} + " +
                $"optimizer state {Reports.Bytes(prediction.State)} + activations {Reports.Bytes(prediction.Activations)} + workspace {Reports.Bytes(prediction.Workspace)}), more than the budget of {Reports.Bytes(spec.Budget)}");

        var (build, steps, state) = Train(config, spec, dataset, spec.Steps, spec.Sequence, report: true);
        return new MeasureResult(spec, baseline, prediction, predicted, ProcessMemory.PeakResident(), state, build, steps, null);
    }

    /// <summary>The warm-up model: one small layer.</summary>
    private static readonly LlamaConfig WarmUp = new("warm-up", 256, 64, 128, 2, 2, 1, 32);

    /// <summary>Builds <paramref name="config"/> in the spec's dtype and trains it with the spec's recipe for <paramref name="steps"/> steps.</summary>
    private static (double BuildSeconds, List<MeasuredStep> Steps, long StateBytes) Train(LlamaConfig config, MeasureSpec spec, TokenDataset dataset, int steps, int sequence, bool report)
    {
        var clock = Stopwatch.StartNew();
        using var model = new LlamaModel(config, spec.Seed, spec.DType);
        // AdamW is LowRank.AdamW (equal to TorchSharp's, tested): TorchSharp's step keeps two float32 temporaries of every
        // parameter until it ends (one dispose scope for the whole step), 2× the weights more at its peak (docs/benchmarks.md).
        using var optimizer = OptimizerCatalog.Create(spec.Kind, model, spec.LearningRate, spec.Recipe.Settings(Math.Min(spec.Rank, config.Hidden)), lowRankOnly: true);
        using var release = spec.PerLayer ? ((LowRankOptimizer)optimizer).ReleaseGradientsDuringBackward(model) : null;
        var build = clock.Elapsed.TotalSeconds;
        if (report) Console.Error.WriteLine($"  built llama-{config.Name} in {spec.DType} in {build:F1} s; resident {Reports.Bytes(ProcessMemory.Resident() ?? 0)}");
        var records = new List<MeasuredStep>();
        for (var step = 1; step <= steps; step++)
        {
            double loss, forward, backward, update;
            using (var scope = NewDisposeScope())
            {
                var batch = dataset.TrainBatch(spec.Seed, step, spec.Batch, sequence);
                clock.Restart();
                var l = model.Loss(batch);
                forward = clock.Elapsed.TotalSeconds;
                clock.Restart();
                l.backward();
                backward = clock.Elapsed.TotalSeconds;
                clock.Restart();
                optimizer.step();
                model.zero_grad();
                update = clock.Elapsed.TotalSeconds;
                loss = l.item<float>();
            }
            // Freed gradients and activations go back to the kernel between steps; glibc keeps them otherwise, and in the
            // standard loop its heaps then grew by 0.5–1.2 GiB per step (llama-350m, llama-1b: docs/benchmarks.md).
            ProcessMemory.ReturnFreedMemory();
            var resident = ProcessMemory.Resident() ?? 0;
            records.Add(new MeasuredStep(step, loss, forward, backward, update, resident));
            if (report)
                Console.Error.WriteLine($"  step {step}/{steps}: loss {loss:F4}; forward {forward:F1} s, backward{(spec.PerLayer ? " with per-layer updates" : "")} {backward:F1} s, step {update:F1} s; resident {Reports.Bytes(resident)}");
        }
        return (build, records, OptimizerCatalog.StateBytes(optimizer, model));
    }

    /// <summary>The hidden command a child runs: <c>memory-child SPEC RESULT</c> (JSON files).</summary>
    public static System.CommandLine.Command CreateChildCommand()
    {
        var spec = new System.CommandLine.Argument<string>("spec");
        var result = new System.CommandLine.Argument<string>("result");
        var command = new System.CommandLine.Command("memory-child", "Internal: one measured run of `memory --measure` (JSON spec in, JSON result out).") { spec, result };
        command.Hidden = true;
        command.SetAction(r =>
        {
            var s = JsonSerializer.Deserialize<MeasureSpec>(File.ReadAllText(r.GetValue(spec)!), Json)!;
            var outcome = Run(s);
            File.WriteAllText(r.GetValue(result)!, JsonSerializer.Serialize(outcome, Json));
            return outcome.Refusal is null ? 0 : 3;
        });
        return command;
    }
}
