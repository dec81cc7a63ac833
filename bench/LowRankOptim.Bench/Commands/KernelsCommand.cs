using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using LowRankOptim.Bench.Support;
using LowRankOptim.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Commands;

/// <summary>
/// `kernels`: in one process, the fused CPU kernels (Adam moment update + direction in the subspace, the
/// full-space Adam update of moments and weights, SMMF step) against the TorchSharp-ops reference path of the same boundary operation and against TorchSharp's
/// AdamW step over the same number of elements, and a STREAM-like copy and triad measured with the same
/// threading (parallel ranges of whole chunks of <see cref="CpuKernels.ChunkElements"/> on the kernels' worker threads, <see cref="KernelThreads.ForRanges"/>). Each fused
/// kernel's achieved bandwidth (the bytes it must read and write per element × elements / time) is given as a
/// fraction of the triad bandwidth measured in the same interleaved rounds. Every figure is measured.
/// </summary>
public static partial class KernelsCommand
{
    /// <summary>Elements per timed sample: small tensors are stepped several times per sample so a sample lasts long enough to time.</summary>
    private const long ElementsPerSample = 1L << 24;

    /// <summary>The least warm-up time of each group of methods (see <see cref="Measure"/>).</summary>
    private static readonly TimeSpan MinimumWarmup = TimeSpan.FromSeconds(1.5);

    public static Command Create()
    {
        var warmup = new Option<int>("--warmup") { Description = "Untimed rounds before timing.", DefaultValueFactory = _ => 3 };
        var repeats = new Option<int>("--repeats") { Description = "Timed rounds; medians are reported.", DefaultValueFactory = _ => 15 };
        var streamElements = new Option<long>("--stream-elements") { Description = "float32 elements per STREAM array (default 2^25 = 128 MiB, far larger than the caches).", DefaultValueFactory = _ => 1L << 25 };
        var quick = new Option<bool>("--quick") { Description = "One small size per kernel, few rounds, small STREAM arrays (smoke test; not for the record)." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of markdown tables." };
        var command = new Command("kernels", "Fused CPU kernels vs the reference path vs TorchSharp AdamW, and their bandwidth against STREAM copy/triad.")
        {
            warmup, repeats, streamElements, quick, json,
        };
        command.SetAction(r => Run(r.GetValue(warmup), r.GetValue(repeats), r.GetValue(streamElements), r.GetValue(quick), r.GetValue(json)));
        return command;
    }

    /// <summary>One measured method: median milliseconds per call.</summary>
    internal sealed record MethodTime(string Method, double MedianMs, double MinMs, double MaxMs);

    /// <summary>One STREAM test.</summary>
    internal sealed record StreamResult(string Test, long Elements, int BytesPerElement, double MedianMs, double GigabytesPerSecond);

    /// <summary>One kernel case: fused vs reference vs AdamW, plus the triad measured in the same rounds.</summary>
    internal sealed record KernelResult(
        string Step, string Dtype, string Shape, long Elements, double FusedBytesPerElement, int CallsPerSample,
        double FusedMs, double ReferenceMs, double AdamwMs, double TriadMsSameRounds, double ComputeProbeMsSameRounds,
        double SpeedupOverReference, double SpeedupOverAdamw, double FusedGigabytesPerSecond, double TriadGigabytesPerSecondSameRounds,
        double FractionOfTriad, bool MeetsSpeedupTarget, bool MeetsBandwidthTarget);

    internal sealed record Report(
        string Machine, string Command, string Environment, double LoadAverageOneMinuteStart, double LoadAverageOneMinuteEnd, double OthersCpuShare,
        int Warmup, int Repeats, bool Vector512Accelerated, IReadOnlyList<StreamResult> Stream, IReadOnlyList<KernelResult> Kernels);

    private static int Run(int warmup, int repeats, long streamElements, bool quick, bool json)
    {
        if (warmup < 0 || repeats < 1 || streamElements < 1024)
        {
            Console.Error.WriteLine($"--warmup must be >= 0, --repeats >= 1 and --stream-elements >= 1024 (got {warmup}, {repeats}, {streamElements}).");
            return 2;
        }
        if (quick) (warmup, repeats, streamElements) = (1, 3, 1L << 20);
        var log = json ? Console.Error : Console.Out;
        var loadStart = LoadAverage();
        var cpuStart = CpuLoad.Sample();
        log.WriteLine($"kernels: {MachineInfo.Describe()}; load average (1 min) {loadStart:F2}");

        using var stream = new StreamArrays(streamElements);
        var streamResults = new List<StreamResult>();
        void MeasureStream(string when)
        {
            var times = Measure([("copy", stream.Copy), ("triad", stream.Triad)], warmup, repeats);
            streamResults.Add(new($"copy ({when})", streamElements, 8, times[0].MedianMs, 8.0 * streamElements / times[0].MedianMs / 1e6));
            streamResults.Add(new($"triad ({when})", streamElements, 12, times[1].MedianMs, 12.0 * streamElements / times[1].MedianMs / 1e6));
        }
        MeasureStream("start");

        var results = new List<KernelResult>();
        // The direction runs on projected (subspace) moments, r × n; full-space tensors take the in-place update.
        (long Rows, long Cols)[] directionShapes = quick ? [(512, 128)] : [(4096, 128), (4096, 512), (2048, 2048)];
        foreach (var (rows, cols) in directionShapes)
            results.Add(AdamCase(rows, cols, ScalarType.Float32, updateWeights: false, stream, warmup, repeats));
        if (!quick) results.Add(AdamCase(2048, 2048, ScalarType.BFloat16, updateWeights: false, stream, warmup, repeats));
        (long Rows, long Cols)[] updateShapes = quick ? [(512, 128)] : [(2048, 2048), (4096, 4096)];
        foreach (var (rows, cols) in updateShapes)
            results.Add(AdamCase(rows, cols, ScalarType.Float32, updateWeights: true, stream, warmup, repeats));
        if (!quick) results.Add(AdamCase(4096, 4096, ScalarType.BFloat16, updateWeights: true, stream, warmup, repeats));
        // Adam on 8-bit block-wise moments: the full-space update, and the direction at a subspace shape.
        (long Rows, long Cols)[] quantizedShapes = quick ? [(512, 128)] : [(2048, 2048), (4096, 4096)];
        foreach (var (rows, cols) in quantizedShapes)
            results.Add(QuantizedAdamCase(rows, cols, updateWeights: true, stream, warmup, repeats));
        results.Add(QuantizedAdamCase(quick ? 512 : 4096, quick ? 128 : 512, updateWeights: false, stream, warmup, repeats));
        (long Rows, long Cols)[] smmfShapes = quick ? [(512, 128)] : [(4096, 128), (4096, 512), (2048, 2048), (4096, 4096)];
        foreach (var (rows, cols) in smmfShapes)
            results.Add(SmmfCase(rows, cols, stream, warmup, repeats));

        MeasureStream("end");
        var cpuEnd = CpuLoad.Sample();
        var report = new Report(MachineInfo.Describe(), "kernels " + string.Join(' ', Environment.GetCommandLineArgs().Skip(2)), ThreadingEnvironment(),
            loadStart, LoadAverage(), cpuStart is null || cpuEnd is null ? double.NaN : cpuEnd.OthersShareSince(cpuStart),
            warmup, repeats, Vector512.IsHardwareAccelerated, streamResults, results);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions
            {
                WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
            }));
        }
        else
        {
            PrintMarkdown(report);
        }
        return 0;
    }

    // ------------------------------------------------------------------ cases

    private static KernelResult AdamCase(long rows, long cols, ScalarType dtype, bool updateWeights, StreamArrays stream, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        var n = rows * cols;
        using var gen = new Generator(7);
        var g = randn([rows, cols], generator: gen).mul_(1e-3).to(dtype);
        var (mf, vf) = (zeros([rows, cols], dtype), zeros([rows, cols], dtype));
        var (mr, vr) = (zeros([rows, cols], dtype), zeros([rows, cols], dtype));
        var scalars = new AdamScalars(0.9, 0.999, 1e-8, Math.Sqrt(1 - 0.999), StepSize: 1e-3 / (1 - 0.9), DecayFactor: 1 - 1e-3 * 0.01);
        var w0 = randn([rows, cols], generator: gen).mul_(0.02).to(dtype);
        var (wf, wr) = (w0.clone(), w0.clone());
        var parameter = new Parameter(w0.clone());
        parameter.grad = g;
        using var adamw = optim.AdamW([parameter], lr: 1e-3, weight_decay: 0.01);
        var calls = CallsPerSample(n);
        Action fused = updateWeights
            ? () => { for (var i = 0; i < calls; i++) CpuKernels.Instance.AdamUpdate(g, mf, vf, scalars, wf); }
            : () => { for (var i = 0; i < calls; i++) CpuKernels.Instance.AdamDirection(g, mf, vf, scalars).Dispose(); };
        Action reference = updateWeights
            ? () => { for (var i = 0; i < calls; i++) TorchKernels.Instance.AdamUpdate(g, mr, vr, scalars, wr); }
            : () => { for (var i = 0; i < calls; i++) TorchKernels.Instance.AdamDirection(g, mr, vr, scalars).Dispose(); };
        var times = Measure([("fused", fused), ("reference", reference), ("adamw", () => { for (var i = 0; i < calls; i++) adamw.step(); }), ("triad", stream.Triad), ("compute", ComputeProbe.Run)],
            warmup, repeats);
        // Direction: read g, read and write m and v, write d. Update: read g, read and write m, v and w.
        var bytesPerElement = (updateWeights ? 7.0 : 6.0) * (dtype == ScalarType.Float32 ? 4 : 2);
        var step = updateWeights ? "Adam update (full space: moments + weights in place)" : "Adam direction (subspace moments + direction)";
        return Result(step, dtype, rows, cols, n, bytesPerElement, calls, times, stream.Elements);
    }

    private static KernelResult SmmfCase(long rows, long cols, StreamArrays stream, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        var n = rows * cols;
        using var gen = new Generator(11);
        var g = randn([rows, cols], generator: gen).mul_(1e-3);
        SmmfFactors State() => new(rows, cols, zeros(rows), zeros(cols), SignBits.Zeros(n, CPU), zeros(rows), zeros(cols));
        var (fusedState, referenceState) = (State(), State());
        var (df, dr) = (empty([rows, cols]), empty([rows, cols]));
        var scalars = new SmmfScalars(0.9, 1 - Math.Pow(10, -0.8), 1e-8);
        var parameter = new Parameter(randn([rows, cols], generator: gen).mul_(0.02));
        parameter.grad = g;
        using var adamw = optim.AdamW([parameter], lr: 1e-3, weight_decay: 0.01);
        var calls = CallsPerSample(n);
        var times = Measure(
        [
            ("fused", () => { for (var i = 0; i < calls; i++) CpuKernels.Instance.SmmfStep(g, fusedState, scalars, df, updateWeights: false); }),
            ("reference", () => { for (var i = 0; i < calls; i++) TorchKernels.Instance.SmmfStep(g, referenceState, scalars, dr, updateWeights: false); }),
            ("adamw", () => { for (var i = 0; i < calls; i++) adamw.step(); }),
            ("triad", stream.Triad),
            ("compute", ComputeProbe.Run),
        ], warmup, repeats);
        // Read g, write U, read and write the packed signs, read and write the four float32 factor vectors.
        var bytes = 8.0 * n + 2.0 * ((n + 7) / 8) + 2.0 * 4 * 2 * (rows + cols);
        return Result("SMMF step (direction)", ScalarType.Float32, rows, cols, n, bytes / n, calls, times, stream.Elements);
    }

    private static KernelResult Result(string step, ScalarType dtype, long rows, long cols, long n, double bytesPerElement, int calls,
        IReadOnlyList<MethodTime> times, long streamElements)
    {
        var (fused, reference, adamw, triad) = (times[0].MedianMs / calls, times[1].MedianMs / calls, times[2].MedianMs / calls, times[3].MedianMs);
        var compute = times[4].MedianMs;
        var fusedGBps = bytesPerElement * n / fused / 1e6;
        var triadGBps = 12.0 * streamElements / triad / 1e6;
        var fraction = fusedGBps / triadGBps;
        return new KernelResult(step, dtype == ScalarType.Float32 ? "float32" : "bfloat16", $"{rows}×{cols}", n, bytesPerElement, calls,
            fused, reference, adamw, triad, compute, reference / fused, adamw / fused, fusedGBps, triadGBps, fraction,
            reference / fused >= 2.0, fraction >= 0.6);
    }

    /// <summary>Calls per timed sample so that a sample covers about <see cref="ElementsPerSample"/> elements.</summary>
    private static int CallsPerSample(long n) => (int)Math.Max(1, ElementsPerSample / Math.Max(1, n));

    // ------------------------------------------------------------------ timing

    /// <summary>
    /// Runs every method once per round, the order rotating every round so that a slow spell of a shared
    /// machine hits every method alike; <paramref name="warmup"/> untimed rounds first. Median, min and max per method.
    /// </summary>
    private static IReadOnlyList<MethodTime> Measure(IReadOnlyList<(string Name, Action Run)> methods, int warmup, int repeats)
    {
        // Warm-up rounds, and at least MinimumWarmup of them in all: the JIT compiles the kernels' loops
        // unoptimized first and replaces them with optimized code only after a number of calls and a delay.
        var warming = Stopwatch.StartNew();
        for (var w = 0; w < warmup || (warmup > 0 && warming.Elapsed < MinimumWarmup); w++)
            foreach (var (_, run) in methods) run();
        var samples = methods.Select(_ => new double[repeats]).ToArray();
        for (var r = 0; r < repeats; r++)
            for (var o = 0; o < methods.Count; o++)
            {
                var m = (r + o) % methods.Count;
                var clock = Stopwatch.StartNew();
                methods[m].Run();
                samples[m][r] = clock.Elapsed.TotalMilliseconds;
            }
        return methods.Select((method, i) =>
        {
            var sorted = samples[i].Order().ToArray();
            var median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
            return new MethodTime(method.Name, median, sorted[0], sorted[^1]);
        }).ToList();
    }

    /// <summary>
    /// The variables that change how idle worker threads wait: libtorch's OpenMP threads and the .NET thread
    /// pool share the cores, and a pool that spins while the other works slows it down.
    /// </summary>
    private static string ThreadingEnvironment() => string.Join(", ",
        new[] { "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "DOTNET_ThreadPool_UnfairSemaphoreSpinLimit" }
            .Select(v => $"{v}={Environment.GetEnvironmentVariable(v) ?? "(unset)"}"));

    /// <summary>The 1-minute load average (Linux /proc/loadavg), NaN where unavailable.</summary>
    private static double LoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg")
                ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture)
                : double.NaN;
        }
        catch (IOException) { return double.NaN; }
    }

    // ------------------------------------------------------------------ output

    private static void PrintMarkdown(Report report)
    {
        Console.WriteLine();
        Console.WriteLine($"Machine: {report.Machine}");
        Console.WriteLine($"Command: {report.Command}");
        Console.WriteLine($"Environment: {report.Environment}");
        Console.WriteLine($"Load average (1 min): {report.LoadAverageOneMinuteStart:F2} at start, {report.LoadAverageOneMinuteEnd:F2} at end; " +
                          $"other processes used {report.OthersCpuShare:P0} of all CPU time during the run. Vector512 accelerated: {report.Vector512Accelerated}.");
        Console.WriteLine($"Medians of {report.Repeats} interleaved rounds after {report.Warmup} warm-up rounds; parallel ranges of whole {CpuKernels.ChunkElements}-element chunks, long first, on the kernels' worker threads ({Environment.ProcessorCount} cores).");
        Console.WriteLine();
        Console.WriteLine("### STREAM-like bandwidth (float32, same process, same threading)");
        Console.WriteLine();
        Console.WriteLine("| test | elements per array | bytes/element | median (ms) | GB/s |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var s in report.Stream)
            Console.WriteLine($"| {s.Test} | {s.Elements:N0} | {s.BytesPerElement} | {s.MedianMs:F2} | {s.GigabytesPerSecond:F2} |");
        Console.WriteLine();
        Console.WriteLine("### Fused kernels vs reference path vs TorchSharp AdamW (per call)");
        Console.WriteLine();
        Console.WriteLine("| step | dtype | shape | fused (ms) | reference (ms) | AdamW step (ms) | reference / fused | AdamW / fused | bytes/element | fused GB/s | triad GB/s (same rounds) | fused / triad | compute probe (ms, same rounds) | ≥ 2× reference | ≥ 60% triad |");
        Console.WriteLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
        foreach (var k in report.Kernels)
            Console.WriteLine($"| {k.Step} | {k.Dtype} | {k.Shape} | {k.FusedMs:F3} | {k.ReferenceMs:F3} | {k.AdamwMs:F3} | {k.SpeedupOverReference:F2}× | {k.SpeedupOverAdamw:F2}× | " +
                              $"{k.FusedBytesPerElement:F2} | {k.FusedGigabytesPerSecond:F2} | {k.TriadGigabytesPerSecondSameRounds:F2} | {k.FractionOfTriad:P0} | {k.ComputeProbeMsSameRounds:F2} | {(k.MeetsSpeedupTarget ? "yes" : "no")} | {(k.MeetsBandwidthTarget ? "yes" : "no")} |");
        Console.WriteLine();
        Console.WriteLine("Bytes/element: what the fused kernel must read and write (Adam direction: g, m, v read; m, v, direction written; " +
                          "Adam update: g read; m, v, weights read and written; " +
                          "8-bit Adam: g read, m and v codes and absmax read and written, direction written or weights read and written; " +
                          "SMMF: g read, U written, packed signs and factor vectors read and written), without write-allocate traffic, as STREAM counts.");
    }

    // ------------------------------------------------------------------ compute probe

    /// <summary>
    /// Arithmetic only, no memory traffic: 64 parts on the kernels' worker threads, each 64 passes of a
    /// square root and a division over 4 Ki floats on its own stack (L1). Measured in every case's rounds, it
    /// shows when the machine itself computes slower (on the 2-vCPU development VM its time doubles at times,
    /// while the memory-bound triad does not change), which a compute-heavy kernel such as SMMF's feels.
    /// </summary>
    internal static unsafe class ComputeProbe
    {
        private const int Floats = 4096;

        public static void Run() => KernelThreads.For(64, _ =>
        {
            var x = stackalloc float[Floats];
            for (var k = 0; k < Floats; k++) x[k] = 1 + k % 7;
            var eps = Vector256.Create(1e-8f);
            for (var pass = 0; pass < 64; pass++)
                for (var j = 0; j < Floats; j += 8)
                {
                    var v = Vector256.Load(x + j);
                    (v / (Vector256.Sqrt(v * v + eps) + eps)).Store(x + j);
                }
        });
    }

    // ------------------------------------------------------------------ STREAM

    /// <summary>Three 64-byte aligned float32 arrays and the copy (a ← b) and triad (a ← b + s·c) passes over them.</summary>
    private sealed unsafe class StreamArrays : IDisposable
    {
        private readonly float* _a, _b, _c;

        public StreamArrays(long elements)
        {
            Elements = elements;
            _a = Allocate(elements);
            _b = Allocate(elements);
            _c = Allocate(elements);
            // First touch with the same chunking as the passes.
            CpuKernels.ForChunks(elements, (start, end) =>
            {
                for (var i = start; i < end; i++) { _a[i] = 0; _b[i] = 1; _c[i] = 2; }
            });
        }

        public long Elements { get; }

        private static float* Allocate(long elements) => (float*)NativeMemory.AlignedAlloc((nuint)(elements * sizeof(float)), 64);

        public void Copy() => CpuKernels.ForChunks(Elements, (start, end) =>
        {
            var i = start;
            if (Vector512.IsHardwareAccelerated)
                for (; i + 16 <= end; i += 16) Vector512.Store(Vector512.Load(_b + i), _a + i);
            else
                for (; i + 8 <= end; i += 8) Vector256.Store(Vector256.Load(_b + i), _a + i);
            for (; i < end; i++) _a[i] = _b[i];
        });

        public void Triad() => CpuKernels.ForChunks(Elements, (start, end) =>
        {
            const float scalar = 3f;
            var i = start;
            if (Vector512.IsHardwareAccelerated)
            {
                var s = Vector512.Create(scalar);
                for (; i + 16 <= end; i += 16) Vector512.Store(Vector512.Load(_b + i) + s * Vector512.Load(_c + i), _a + i);
            }
            else
            {
                var s = Vector256.Create(scalar);
                for (; i + 8 <= end; i += 8) Vector256.Store(Vector256.Load(_b + i) + s * Vector256.Load(_c + i), _a + i);
            }
            for (; i < end; i++) _a[i] = _b[i] + scalar * _c[i];
        });

        public void Dispose()
        {
            NativeMemory.AlignedFree(_a);
            NativeMemory.AlignedFree(_b);
            NativeMemory.AlignedFree(_c);
        }
    }
}
