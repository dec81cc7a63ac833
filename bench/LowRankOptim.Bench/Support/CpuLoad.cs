using System.Diagnostics;

namespace LowRankOptim.Bench.Support;

/// <summary>
/// How busy the machine's CPUs were with work other than this process between two samples (Linux
/// /proc/stat): on shared machines other tenants' load makes timings noisy, so measurements record it.
/// </summary>
public sealed class CpuLoad
{
    private readonly long _busy, _total;
    private readonly TimeSpan _own;

    private CpuLoad(long busy, long total, TimeSpan own) => (_busy, _total, _own) = (busy, total, own);

    /// <summary>Samples the counters now (null where /proc/stat is unavailable).</summary>
    public static CpuLoad? Sample()
    {
        if (!File.Exists("/proc/stat")) return null;
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
        // user nice system idle iowait irq softirq steal …
        var idle = fields[3] + fields[4];
        var total = fields.Take(8).Sum();
        return new CpuLoad(total - idle, total, Process.GetCurrentProcess().TotalProcessorTime);
    }

    /// <summary>The fraction of all CPU time since <paramref name="start"/> spent by other processes (0–1).</summary>
    public double OthersShareSince(CpuLoad start)
    {
        var ticksPerSecond = 100.0; // USER_HZ on Linux
        var total = _total - start._total;
        if (total <= 0) return 0;
        var others = (_busy - start._busy) - (_own - start._own).TotalSeconds * ticksPerSecond;
        return Math.Clamp(others / total, 0, 1);
    }
}
