using System.Diagnostics;
using System.Reflection;
using FluentAssertions;
using LowRankOptim.Mpi;
using LowRankOptim.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Distributed;

/// <summary>A fact that is skipped, with the reason, when MPICH (its library and mpiexec.mpich) is not installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiTests.Unavailable() is string problem) Skip = $"MPI is not available: {problem}";
    }
}

/// <summary>
/// Two real MPI ranks: <c>mpiexec.mpich -n 2 dotnet LowRankOptim.Mpi.TestHost.dll &lt;scenario&gt;</c>
/// (tests/LowRankOptim.Mpi.TestHost). Few, small launches: the per-method equivalence runs in-process
/// (DataParallelEquivalenceTests); these check the MPI transport, checkpoints across processes and the failures.
/// </summary>
public sealed class MpiTests
{
    private static readonly string Host = typeof(MpiTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "MpiTestHost").Value!;

    /// <summary>Why the two-rank tests cannot run here, or null.</summary>
    public static string? Unavailable()
    {
        if (MpiLibrary.Load() is string problem) return problem;
        var launcher = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => File.Exists(Path.Combine(d, "mpiexec.mpich")));
        return launcher ? null : "mpiexec.mpich is not on PATH; install it with 'apt-get install mpich'";
    }

    private static (int ExitCode, string Output, TimeSpan Elapsed) Launch(string scenario, string folder, double timeoutSeconds = 120)
    {
        var start = new ProcessStartInfo("mpiexec.mpich")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-n", "2", "dotnet", Host, scenario, folder, timeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            start.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(150)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpiexec -n 2 … {scenario} did not end within 150 s:\n{stdout.Result}\n{stderr.Result}");
        }
        return (process.ExitCode, stdout.Result + stderr.Result, clock.Elapsed);
    }

    /// <summary>
    /// Over MPI, for GaLore (projected R), GaLore+ with a sparse residual (R and gradient entries), APOLLO (the whole
    /// gradient every step) and AdamW (full space): 20 steps of 2 ranks × b equal 1 process × 2b within tolerance; after
    /// every step both ranks' weights are bit-identical; sharded = replicated bit for bit; the sharded run's gathered
    /// checkpoint (written by rank 0) resumes on 2 ranks bit-exactly, and loads into a single process.
    /// </summary>
    [MpiFact]
    public void TwoMpiRanksTrainLikeOneProcessAndTheirCheckpointLoadsOnOne()
    {
        var folder = Directory.CreateTempSubdirectory("lowrankoptim-mpi-");
        try
        {
            var (code, output, _) = Launch("train", folder.FullName);
            output.Should().NotContain("FAIL");
            code.Should().Be(0, output);
            output.Split('\n').Count(l => l.StartsWith("OK ")).Should().Be(4, output);

            using var scope = NewDisposeScope();
            var model = TestProblems.Mlp(3);
            using var opt = LowRank.GaLore(LowRank.SplitParameters(model), lr: 0.01, rank: 3, update_proj_gap: 3, scale: 0.5, weight_decay: 0.1);
            opt.load_state_dict(Path.Combine(folder.FullName, "galore.ckpt"));
            opt.States.Should().AllSatisfy(s => s.Step.Should().Be(10));
            opt.States.Where(s => s.Subspace is not null).Should().AllSatisfy(s => s.Refreshes.Should().Be(4));
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>Rank 1 builds a different shape: both ranks stop at the start with a message naming the difference.</summary>
    [MpiFact]
    public void AConfigurationMismatchStopsEveryRankAtTheStart()
    {
        var folder = Directory.CreateTempSubdirectory("lowrankoptim-mpi-");
        try
        {
            var (code, output, _) = Launch("mismatch", folder.FullName);
            code.Should().Be(4, output);
            var messages = Enumerable.Range(0, 2).Select(r => File.ReadAllText(Path.Combine(folder.FullName, $"mismatch-rank{r}.txt"))).ToArray();
            messages.Should().AllSatisfy(m => m.Should().Contain("rank 1 differs where rank 0 has 'parameter 0: shape [20, 12] Float32"));
            messages[1].Should().Contain("This rank (1) has 'parameter 0: shape [21, 12] Float32");
            messages[0].Should().Contain("See the message of rank 1");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>Rank 1 never calls the first collective: rank 0's watchdog ends the run after the 3-second timeout, with the reason.</summary>
    [MpiFact]
    public void AStuckRankEndsTheRunAfterTheTimeout()
    {
        var (code, output, elapsed) = Launch("stuck", Path.GetTempPath(), timeoutSeconds: 3);
        code.Should().NotBe(0, output);
        output.Should().Contain("rank 0 of 2").And.Contain("did not complete within 3 s");
        elapsed.Should().BeLessThan(TimeSpan.FromSeconds(60));
    }

    /// <summary>Rank 1 dies before the first collective: mpiexec ends rank 0 instead of leaving it waiting.</summary>
    [MpiFact]
    public void ADeadRankEndsTheRun()
    {
        var (code, output, elapsed) = Launch("dead", Path.GetTempPath(), timeoutSeconds: 100);
        code.Should().NotBe(0, output);
        output.Should().NotContain("FAIL");
        elapsed.Should().BeLessThan(TimeSpan.FromSeconds(60), "mpiexec, not the 100 s watchdog, ends the run");
    }
}
