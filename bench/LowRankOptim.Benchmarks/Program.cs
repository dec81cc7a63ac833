using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using LowRankOptim.Benchmarks;
using Perfolizer.Horology;
using Perfolizer.Mathematics.OutlierDetection;

// Usage (README.md beside this file):
//   LowRankOptim.Benchmarks [--shapes 4096x4096,4096x11008] [--ranks 128,512] [--methods GaLore,TorchAdamW]
//                           [--iterations 5] [--warmup 40] [BenchmarkDotNet options, e.g. --artifacts DIR]
//   LowRankOptim.Benchmarks --list-methods
//   LowRankOptim.Benchmarks merge --before DIR --after DIR --out FILE [--preamble FILE]
if (args.Length > 0 && args[0] == "merge") return Merge.Run(args[1..]);

var iterations = 5;
var warmup = 40; // the fused CPU kernels run unoptimized JIT code for their first ~30 calls (docs/kernels.md)
var passThrough = new List<string>();
try
{
    for (var i = 0; i < args.Length; i++)
    {
        string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
        switch (args[i])
        {
            case "--shapes":
                Selection.Shapes = Selection.Split(Value()).Select(WeightShape.Parse).ToList();
                break;
            case "--ranks":
                Selection.Ranks = Selection.Split(Value()).Select(r => int.TryParse(r, out var v) && v > 0 ? v : throw new ArgumentException($"rank '{r}' is not a positive integer")).ToList();
                break;
            case "--methods":
                var ids = Selection.Split(Value());
                foreach (var id in ids.Where(id => StepMethods.Find(id) is null))
                    Console.Error.WriteLine($"// method '{id}' is not in this build (see --list-methods); skipped");
                Selection.Methods = ids.Select(StepMethods.Find).OfType<StepMethod>().ToList();
                break;
            case "--iterations":
                iterations = int.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture);
                break;
            case "--warmup":
                warmup = int.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture);
                break;
            case "--list-methods":
                foreach (var m in StepMethods.All) Console.WriteLine($"{m.Id}\t{(m.Ranked ? "ranked" : "rank-free")}\t{m.Description}");
                return 0;
            default:
                passThrough.Add(args[i]);
                break;
        }
    }
    if (iterations < 1 || warmup < 0) throw new ArgumentException("--iterations must be >= 1 and --warmup >= 0");
}
catch (Exception e) when (e is ArgumentException or FormatException)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

int torchThreads;
try
{
    // Load libtorch now, so that a native-loading failure is one clear message and not one failed case each.
    torchThreads = TorchSharp.torch.get_num_threads();
}
catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException)
{
    Console.Error.WriteLine($"TorchSharp's native libraries did not load from {AppContext.BaseDirectory}: {e.GetBaseException().Message}");
    Console.Error.WriteLine("Run this build's own output in-process (GLIBCXX_3.4.32 fix: docs/native-loading.md).");
    return 3;
}
var metadata = typeof(StepBenchmarks).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().ToDictionary(a => a.Key, a => a.Value);
Console.WriteLine($"// LowRankOptim.Benchmarks: library source {metadata.GetValueOrDefault("LowRankOptimSourceRoot")}, torch threads {torchThreads}, " +
                  $"HAS_APOLLO {(metadata.GetValueOrDefault("LowRankOptimHasApollo") is "true" ? "yes" : "no")}, " +
                  $"OMP_WAIT_POLICY={Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "(unset: set PASSIVE on machines with few cores)"}");
if (!Selection.Cases().Any())
{
    // E.g. compare.sh asking a build without HAS_APOLLO for Apollo: nothing to measure, not an error.
    Console.WriteLine("// no case selected in this build (unknown --methods, or a method this library lacks); nothing to run");
    return 0;
}

// In-process only: the benchmark runs from this build's output folder, which carries the patched
// libLibTorchSharp.so. Few, long iterations: one step is one invocation (tens to hundreds of ms).
var job = Job.Default
    .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(30), logOutput: true))
    .WithLaunchCount(1)
    .WithWarmupCount(warmup)
    .WithIterationCount(iterations)
    .WithInvocationCount(1)
    .WithUnrollFactor(1)
    .WithEvaluateOverhead(false)
    .WithOutlierMode(OutlierMode.DontRemove) // 5 long steps: the median is the robust statistic; min/max stay real
    .WithId("Step");
var config = ManualConfig.CreateMinimumViable()
    .AddJob(job)
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddColumn(StatisticColumn.Median, StatisticColumn.Min, StatisticColumn.Max)
    .AddExporter(MarkdownExporter.GitHub, StepJsonExporter.Instance)
    .HideColumns(Column.Method, Column.Error)
    .WithSummaryStyle(SummaryStyle.Default.WithTimeUnit(TimeUnit.Millisecond).WithMaxParameterColumnWidth(40));
if (!passThrough.Contains("--filter") && !passThrough.Contains("-f")) passThrough.AddRange(["--filter", "*"]);

var summaries = BenchmarkSwitcher.FromTypes([typeof(StepBenchmarks)]).Run([.. passThrough], config).ToList();
var failed = summaries.Count == 0 || summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
return failed ? 1 : 0;
