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

    /// <summary>
    /// Runs the <paramref name="actions"/> in turn, one call each per round (so drift of the machine lands on all of
    /// them), after <paramref name="warmup"/> untimed rounds; returns each action's median in milliseconds.
    /// </summary>
    public static double[] InterleavedMedianMilliseconds(IReadOnlyList<Action> actions, int warmup = 2, int repeats = 15)
    {
        for (var i = 0; i < warmup; i++)
            foreach (var action in actions) action();
        var times = actions.Select(_ => new double[repeats]).ToArray();
        for (var i = 0; i < repeats; i++)
            for (var a = 0; a < actions.Count; a++)
            {
                var sw = Stopwatch.StartNew();
                actions[a]();
                times[a][i] = sw.Elapsed.TotalMilliseconds;
            }
        return times.Select(t => t.Order().ElementAt(repeats / 2)).ToArray();
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
