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
