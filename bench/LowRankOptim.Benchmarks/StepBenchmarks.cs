using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Benchmarks;

/// <summary>
/// One steady-state optimizer step (<c>step()</c>) of a float32 CPU weight of the given shape, with a fixed
/// gradient. The global setup builds the weight, the gradient and the optimizer and takes the first step,
/// which does the one subspace refresh; every measured step after it is a step without a refresh.
/// </summary>
public class StepBenchmarks
{
    private Parameter? _weight;
    private Tensor? _gradient;
    private optim.Optimizer? _optimizer;

    /// <summary>rows×cols of the weight.</summary>
    [ParamsSource(nameof(ShapeValues))]
    public WeightShape Shape { get; set; } = null!;

    /// <summary>The method and rank.</summary>
    [ParamsSource(nameof(CaseValues))]
    public StepCase Case { get; set; } = null!;

    /// <summary>The selected shapes.</summary>
    public static IEnumerable<WeightShape> ShapeValues() => Selection.Shapes;

    /// <summary>The selected cases.</summary>
    public static IEnumerable<StepCase> CaseValues() => Selection.Cases();

    /// <summary>Builds the weight, gradient and optimizer, and takes the first (refreshing) step.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var (m, n) = (Shape.Rows, Shape.Cols);
        var clock = Stopwatch.StartNew();
        using (var generator = new Generator(1234))
        using (no_grad())
        {
            _weight = new Parameter(randn([m, n], generator: generator).mul_(0.02f));
            _gradient = randn([m, n], generator: generator).mul_(1e-3f);
        }
        _optimizer = Case.Method.Create(_weight, Case.Rank ?? 0);
        // LOWRANKOPTIM_BENCH_SCREEN=off: the step without the gradient screen (SkipUnusableGradients, a later release's
        // safety check: one extra read of the gradient); set by reflection so the benchmark compiles against releases without it.
        if (Environment.GetEnvironmentVariable("LOWRANKOPTIM_BENCH_SCREEN") == "off")
            _optimizer.GetType().GetProperty("SkipUnusableGradients")?.SetValue(_optimizer, false);
        var created = clock.Elapsed;
        Step();
        Console.WriteLine($"// setup {Shape} {Case}: tensors and optimizer {created.TotalSeconds:F1} s, first step (the refresh) " +
                          $"{(clock.Elapsed - created).TotalSeconds:F1} s; torch threads {get_num_threads()}");
    }

    /// <summary>One optimizer step on the fixed gradient.</summary>
    [Benchmark]
    public void Step()
    {
        _weight!.grad = _gradient;
        _optimizer!.step();
    }

    /// <summary>Frees the optimizer state and the tensors before the next case.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _optimizer?.Dispose();
        _weight?.Dispose();
        _gradient?.Dispose();
        (_optimizer, _weight, _gradient) = (null, null, null);
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }
}
