using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace LowRankOptim.Kernels;

/// <summary>
/// Runs the independent parts of one CPU kernel call (bands, chunks) on the calling thread and
/// <see cref="Environment.ProcessorCount"/> − 1 dedicated background threads, which take the parts in turn.
/// </summary>
/// <remarks>
/// Not the .NET thread pool: a kernel call lasts milliseconds, and while a pool thread is blocked elsewhere
/// <c>Parallel.For</c> runs the whole call on the calling thread (the pool adds threads only after about half
/// a second of starvation). Measured on the 2-vCPU development VM: SMMF's step on a 4096×4096 tensor used
/// 1.05 cores and took 6.3 ms in a test host whose pool was busy, 1.9 cores and 3.3 ms with spare pool
/// threads; benchmark processes landed on either side at random. Which thread runs which part never changes
/// a result: the parts write disjoint memory and are merged afterwards in a fixed order.
/// One call at a time: a call made while another runs (from another thread, or from inside a part) runs
/// all its parts on its own thread.
/// </remarks>
internal static class KernelThreads
{
    private static readonly object Gate = new();
    private static readonly SemaphoreSlim Start = new(0);
    private static readonly Lazy<int> Workers = new(StartWorkers);
    private static CountdownEvent? _finished;
    private static Job? _job;

    [ThreadStatic]
    private static bool _running;

    /// <summary>Runs <paramref name="body"/>(i) for every i in [0, <paramref name="count"/>) and returns when all have run.</summary>
    /// <exception cref="Exception">The first exception a part threw, rethrown on the calling thread after every part has stopped.</exception>
    public static void For(long count, Action<long> body)
    {
        if (count <= 0) return;
        if (count == 1 || _running || Workers.Value == 0 || !Monitor.TryEnter(Gate))
        {
            for (long i = 0; i < count; i++) body(i);
            return;
        }
        try
        {
            var job = new Job(count, body);
            _job = job;
            _finished!.Reset(Workers.Value);
            Start.Release(Workers.Value);
            job.Run();
            SpinUntilFinished();
            _finished.Wait();
            _job = null;
            if (job.Error is not null) ExceptionDispatchInfo.Throw(job.Error);
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, <paramref name="count"/>) in the ranges of <see cref="GuidedBounds"/>
    /// (multiples of <paramref name="unit"/>, long first and short last) and returns when all have run.
    /// </summary>
    public static void ForRanges(long count, long unit, Action<long, long> body)
    {
        if (count <= 0) return;
        if (count <= unit) { body(0, count); return; }
        var bounds = GuidedBounds(count, unit, Workers.Value + 1);
        For(bounds.Length - 1, k => body(bounds[k], bounds[k + 1]));
    }

    /// <summary>
    /// The bounds of guided ranges over [0, <paramref name="count"/>): each range takes 1/(2·<paramref name="threads"/>) of
    /// the units of <paramref name="unit"/> elements still left, at least one (the last range ends at <paramref name="count"/>).
    /// Long first ranges keep each thread on one long run of memory, which the hardware prefetchers follow (a new range
    /// restarts their streams); short last ranges let the threads finish together.
    /// </summary>
    internal static long[] GuidedBounds(long count, long unit, int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(unit);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        var units = (count + unit - 1) / unit;
        var bounds = new List<long> { 0 };
        for (long done = 0; done < units;)
        {
            done += Math.Max(1, (units - done) / (2 * threads));
            bounds.Add(Math.Min(count, done * unit));
        }
        return [.. bounds];
    }

    /// <summary>
    /// Spins up to <see cref="FinishSpin"/> while the workers finish their last parts: they usually end within microseconds
    /// of the caller's, and waking a blocked caller takes tens of microseconds on a VM, against calls of about a millisecond.
    /// </summary>
    private static void SpinUntilFinished()
    {
        var started = Stopwatch.GetTimestamp();
        while (!_finished!.IsSet && Stopwatch.GetElapsedTime(started) < FinishSpin) Thread.SpinWait(20);
    }

    /// <summary>The longest <see cref="SpinUntilFinished"/> spins before the caller blocks.</summary>
    private static readonly TimeSpan FinishSpin = TimeSpan.FromMicroseconds(100);

    private static int StartWorkers()
    {
        var count = Math.Max(0, Environment.ProcessorCount - 1);
        _finished = new CountdownEvent(count);
        for (var k = 0; k < count; k++)
            new Thread(Work) { IsBackground = true, Name = $"LowRankOptim kernel worker {k + 1}" }.Start();
        return count;
    }

    private static void Work()
    {
        while (true)
        {
            Start.Wait();
            _job!.Run();
            _finished!.Signal();
        }
    }

    /// <summary>One call: the parts are handed out by an atomic counter; the first exception stops the rest.</summary>
    private sealed class Job(long count, Action<long> body)
    {
        private long _next = -1;
        public Exception? Error;

        public void Run()
        {
            _running = true;
            try
            {
                for (var i = Interlocked.Increment(ref _next); i < count; i = Interlocked.Increment(ref _next))
                {
                    try
                    {
                        body(i);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref Error, e, null);
                        Interlocked.Exchange(ref _next, count);
                    }
                }
            }
            finally
            {
                _running = false;
            }
        }
    }
}
