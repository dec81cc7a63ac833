using FluentAssertions;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Kernels;

/// <summary>
/// The CPU kernels' worker threads: every part runs once, errors reach the caller, nested and concurrent calls
/// finish. Serial: a kernel call from a test running alongside holds the workers, and this call then runs
/// all its parts on its own thread (by design), which the first test would see as one thread.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class KernelThreadsTests
{
    [Fact]
    public void EveryPartRunsExactlyOnceAcrossTheThreads()
    {
        var runs = new int[1000];
        var threads = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        KernelThreads.For(runs.Length, i =>
        {
            Interlocked.Increment(ref runs[i]);
            threads[Environment.CurrentManagedThreadId] = true;
            Thread.SpinWait(2000);
        });
        runs.Should().OnlyContain(r => r == 1);
        if (Environment.ProcessorCount > 1) threads.Count.Should().BeGreaterThan(1, "the worker threads take parts too");
    }

    [Theory]
    [InlineData(1, 1, 2)]
    [InlineData(32768, 32768, 2)]
    [InlineData(32769, 32768, 2)]
    [InlineData(2_097_152, 32768, 2)]
    [InlineData(1_000_003, 128, 2)]
    [InlineData(1_000_003, 128, 64)]
    [InlineData(5_000, 1, 1)]
    public void GuidedRangesCoverTheCountOnUnitBoundsLongFirst(long count, long unit, int threads)
    {
        var bounds = KernelThreads.GuidedBounds(count, unit, threads);
        bounds[0].Should().Be(0);
        bounds[^1].Should().Be(count);
        var sizes = bounds.Zip(bounds.Skip(1), (start, end) => end - start).ToArray();
        sizes.Should().OnlyContain(size => size > 0);
        bounds[1..^1].Where(bound => bound % unit != 0).Should().BeEmpty("inner bounds are whole units");
        sizes[..^1].Should().BeInDescendingOrder("each range takes a share of what is left");
        var units = (count + unit - 1) / unit;
        bounds[1].Should().Be(Math.Min(count, Math.Max(1, units / (2 * threads)) * unit), "the first range is 1/(2·threads) of the units");
    }

    [Fact]
    public void ForRangesRunsEveryElementOnce()
    {
        var runs = new int[1_000_003];
        KernelThreads.ForRanges(runs.Length, 1000, (start, end) =>
        {
            for (var i = start; i < end; i++) Interlocked.Increment(ref runs[i]);
        });
        runs.Should().OnlyContain(r => r == 1);
    }

    [Fact]
    public void AnExceptionInAPartIsRethrownAndTheNextCallWorks()
    {
        var act = () => KernelThreads.For(64, i => { if (i == 17) throw new InvalidOperationException("part 17"); });
        act.Should().Throw<InvalidOperationException>().WithMessage("part 17");
        long sum = 0;
        KernelThreads.For(64, i => Interlocked.Add(ref sum, i));
        sum.Should().Be(64 * 63 / 2);
    }

    [Fact]
    public async Task NestedAndConcurrentCallsRunEveryPart()
    {
        long total = 0;
        var callers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            KernelThreads.For(8, i => KernelThreads.For(16, j => Interlocked.Increment(ref total))))).ToArray();
        await Task.WhenAll(callers);
        total.Should().Be(4 * 8 * 16);
    }
}
