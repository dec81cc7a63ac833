using TorchSharp;

namespace LowRankOptim.Tests.Support;

/// <summary>libtorch's intra-op thread count, pinned for a test body (serial tests only: the setting is process-wide).</summary>
public static class TorchThreads
{
    /// <summary>Runs <paramref name="body"/> with one libtorch intra-op thread (MKL's rounding depends on the count), then restores it.</summary>
    public static T OnOne<T>(Func<T> body)
    {
        var saved = torch.get_num_threads();
        torch.set_num_threads(1);
        try { return body(); }
        finally { torch.set_num_threads(saved); }
    }

    /// <inheritdoc cref="OnOne{T}(Func{T})"/>
    public static void OnOne(Action body) => OnOne(() => { body(); return 0; });
}
