using LowRankOptim.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Build;

/// <summary>
/// The test host runs with one libtorch thread on every thread (test.runsettings). Without it a thread that has run a
/// parallel op (its MKL count set by torch.set_num_threads) and a fresh thread (MKL's process default) round the same
/// small GEMM differently, and the bit-for-bit comparisons across threads (xunit's workers, thread ranks) fail.
/// </summary>
[Collection(SerialCollection.Name)] // calls torch.set_num_threads
public sealed class ThreadSettingsTests
{
    private static float[] Product(float[] a, float[] b)
    {
        using var scope = NewDisposeScope();
        return tensor(a).reshape(6, 20).mm(tensor(b).reshape(20, 20)).data<float>().ToArray();
    }

    private static float[] OnNewThread(Func<float[]> body, bool warm)
    {
        float[]? result = null;
        var thread = new Thread(() =>
        {
            if (warm)
                using (var big = ones(1 << 20)) big.add_(1); // a parallel op: libtorch applies its thread count to this thread
            result = body();
        });
        thread.Start();
        thread.Join();
        return result!;
    }

    [Fact]
    public void AFreshThreadAndAThreadThatRanAParallelOpRoundAGemmAlike()
    {
        TorchThreads.OnOne(() => // as the serial tests that pin one thread do
        {
            var random = new Random(5);
            for (var trial = 0; trial < 20; trial++)
            {
                var a = Enumerable.Range(0, 120).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
                var b = Enumerable.Range(0, 400).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
                var fresh = OnNewThread(() => Product(a, b), warm: false);
                var warmed = OnNewThread(() => Product(a, b), warm: true);
                Assert.True(fresh.SequenceEqual(warmed), $"trial {trial}: the GEMM on a fresh thread differs from the one on a thread that ran a parallel op");
            }
        });
    }
}
