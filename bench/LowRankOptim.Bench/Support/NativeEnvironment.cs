using System.Runtime.InteropServices;

namespace LowRankOptim.Bench.Support;

/// <summary>
/// Defaults that keep a training loop usable on a machine shared with other work (issue 13, point 3): libtorch's
/// OpenMP threads wait passively, and the thread count leaves the cores other processes use.
/// </summary>
public static partial class NativeEnvironment
{
    /// <summary>True when the bench itself set OMP_WAIT_POLICY (the user had not).</summary>
    public static bool WaitPolicySetByBench { get; private set; }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>
    /// Sets OMP_WAIT_POLICY=PASSIVE unless the user set it. It must run before libtorch (and with it libgomp, which
    /// reads the variable when it loads) is loaded, and it must reach the C library's environment:
    /// <see cref="Environment.SetEnvironmentVariable(string, string)"/> changes only .NET's copy on Linux and macOS.
    /// </summary>
    public static void PreferPassiveOpenMpWaiting()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 }) return;
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0);
        Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE"); // .NET's copy (Windows: the process's), and child processes
        WaitPolicySetByBench = true;
    }

    /// <summary>
    /// The torch thread count for "auto": the cores minus those other processes kept busy over a short sample
    /// (/proc/stat), at least 1; all cores where the load cannot be read.
    /// </summary>
    public static int AutoThreads(TimeSpan? sample = null)
    {
        var cores = Environment.ProcessorCount;
        var start = CpuLoad.Sample();
        if (start is null) return cores;
        Thread.Sleep(sample ?? TimeSpan.FromMilliseconds(500));
        var busy = CpuLoad.Sample()!.OthersShareSince(start) * cores;
        return Math.Clamp(cores - (int)Math.Round(busy), 1, cores);
    }

    /// <summary>One line for a recorded measurement.</summary>
    public static string Describe() =>
        $"OMP_WAIT_POLICY={Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "(unset)"}{(WaitPolicySetByBench ? " (set by the bench)" : "")}";
}
