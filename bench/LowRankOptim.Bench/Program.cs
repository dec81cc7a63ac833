using System.CommandLine;
using LowRankOptim.Bench.Commands;
using LowRankOptim.Bench.Support;

// First, before anything loads libtorch: its OpenMP threads wait passively (docs/pretraining.md, "Threads").
NativeEnvironment.PreferPassiveOpenMpWaiting();

// The bench program: pretraining comparisons, the memory planner and micro-benchmarks, one subcommand each.
var root = new RootCommand("LowRankOptim benchmarks: pretraining comparison, memory planner, refresh and step timings.");
foreach (var command in new[] { PretrainCommand.Create(), CommCommand.Create(), PerLayerCommand.Create(), MemoryCommand.Create(), LowRankOptim.Bench.Measure.MeasuredRun.CreateChildCommand(), StepsCommand.Create(), RefreshCommand.Create(), SmmfCommand.Create(), GaLorePlusCommand.Create(), KernelsCommand.Create(), DctProjectionCommand.Create() })
    root.Subcommands.Add(command);
return root.Parse(args).Invoke();
