using System.Diagnostics;

namespace LowRankOptim.Bench.Support;

/// <summary>Wall-clock timing with warm-up; the median of repeated runs is reported.</summary>
public static class Timing
{
    /// <summary>Runs <paramref name="action"/> <paramref name="warmup"/> times, then <paramref name="repeats"/> timed times; returns the median in milliseconds.</summary>
    public static double MedianMilliseconds(Action action, int warmup = 2, int repeats = 7)
    {
        var times = SortedMilliseconds(action, warmup, repeats);
        return times[repeats / 2];
    }

    /// <summary>The timed runs' durations in milliseconds, sorted ascending, after <paramref name="warmup"/> untimed runs.</summary>
    public static double[] SortedMilliseconds(Action action, int warmup, int repeats)
    {
        for (var i = 0; i < warmup; i++) action();
        var times = new double[repeats];
        for (var i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times;
    }
}
